#!/usr/bin/env bash
# Plant each of four bugs in a scratch copy of this tree (src/, tests/), run the test file that
# must catch it, and print what failed; the checkout is never modified. README "Failure paths".
#   bash scripts/planted_bugs.sh            # about 2 minutes on 2 cores
set -u
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
declare -A FILE=( [a]=src/vlrouter/api/app.py [b]=src/vlrouter/backends/fallback.py [c]=src/vlrouter/backends/local.py [d]=src/vlrouter/router/utility.py )
declare -A TESTS=( [a]="tests/api/test_failure_paths.py" [b]="tests/backends/test_breaker_e2e.py" [c]="tests/backends/test_local_cancel.py" [d]="tests/telemetry/test_ips.py" )
for k in a b c d; do
  w=$(mktemp -d "${TMPDIR:-/tmp}/vlrouter-plant-$k.XXXX")
  (cd "$src" && tar --exclude=__pycache__ --exclude='*.egg-info' -cf - src tests pyproject.toml) | tar -xf - -C "$w"
  case $k in
    a) python3 - "$w/${FILE[a]}" <<'P'
import sys; p=sys.argv[1]; s=open(p).read()
a='    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_body_bytes)\n'
assert a in s; s=s.replace(a,''); s=s.replace('    app.add_middleware(RequestIdMiddleware)\n','    app.add_middleware(RequestIdMiddleware)\n'+a); open(p,'w').write(s)
P
    ;;
    b) python3 - "$w/${FILE[b]}" <<'P'
import sys,re; p=sys.argv[1]; s=open(p).read()
assert 'if not self.breakers[name].allow():' in s
s=s.replace('if not self.breakers[name].allow():','if False:'); open(p,'w').write(s)
P
    ;;
    c) python3 - "$w/${FILE[c]}" <<'P'
import sys; p=sys.argv[1]; s=open(p).read()
a='            cancel.set()  # client went away, timeout or done: stop generating'
assert a in s; s=s.replace(a,'            pass'); open(p,'w').write(s)
P
    ;;
    d) python3 - "$w/${FILE[d]}" <<'P'
import sys; p=sys.argv[1]; s=open(p).read()
a='        return np.minimum(1.0 / np.clip(self.propensity, 1e-6, 1.0), clip)'
assert a in s; s=s.replace(a,'        return np.ones(len(self.quality))'); open(p,'w').write(s)
P
    ;;
  esac
  (cd "$w" && PYTHONPATH="$w/src" timeout 900 "$src/.venv/bin/python" -m pytest -q -p no:cacheprovider ${TESTS[$k]} 2>&1 | grep -E "^(FAILED|ERROR)|passed|failed" | sed "s/^/[$k] /")
  rm -rf "$w"
done
