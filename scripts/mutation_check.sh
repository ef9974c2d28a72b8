#!/usr/bin/env bash
# Mutation check: mutmut 3 mutates the modules where a silent bug costs most, one module at a time,
# and runs that module's own fast test files against each mutant; prints the kill rate per module.
#
#   bash scripts/mutation_check.sh                      # every module below (about an hour on 2 cores)
#   bash scripts/mutation_check.sh fallback utility     # only these
#   MUTATION_TIMEOUT_S=600 MUTATION_CHILDREN=2 bash scripts/mutation_check.sh pipeline
#   bash scripts/mutation_check.sh --report risk utility # the table again from the last runs' files
#   MUTATION_ONLY='vlrouter.api.pipeline.xǁRelayǁ*' bash scripts/mutation_check.sh pipeline  # these mutants only
#     (mutmut's names, fnmatch patterns; e.g. a capped run's survivors and the functions it did not reach)
#
# Not in CI: too slow for it. Each module runs in its own scratch copy of src/ and tests/ (mutmut
# writes its mutants/ there; this checkout is never modified), under a wall-clock cap per module
# (MUTATION_TIMEOUT_S, default 600; a capped module reports what it reached). The test files are the
# ones that exercise the module without the tiny VLM or a training run, so that one mutant costs
# seconds; mutmut runs only the tests that reach the mutated function. Output, per module, under
# reports/mutation/ (git-ignored): <module>.json (counts) and <module>-survivors.txt (each surviving
# mutant's diff), reports/mutation/summary.json, and a table on stdout. "no tests" are mutants of code
# the chosen files never run. The kill rate is (killed + crashed) / (killed + crashed + survived):
# a mutant that makes a test time out or its process crash was noticed too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_setup.sh
MUTMUT_SPEC="mutmut==3.8.1"  # the pin of pyproject.toml's "mutation" extra
.venv/bin/python -c "import mutmut" 2>/dev/null || .venv/bin/python -m pip install -q "$MUTMUT_SPEC"

declare -A MUTATE=(
  [fallback]="src/vlrouter/backends/fallback.py"
  [pipeline]="src/vlrouter/api/pipeline.py"
  [decision_log]="src/vlrouter/telemetry/decision_log.py src/vlrouter/telemetry/store_sqlite.py"
  [utility]="src/vlrouter/router/utility.py src/vlrouter/router/scenario.py"
  [calibration]="src/vlrouter/router/calibration.py"
  [risk]="src/vlrouter/router/risk.py"
)
declare -A TESTS=(
  [fallback]="tests/backends/test_base.py tests/backends/test_retry.py tests/backends/test_breaker_e2e.py
              tests/backends/test_dispatch_admission.py tests/api/test_backpressure.py tests/api/test_failure_paths.py"
  [pipeline]="tests/api/test_pipeline_paths.py tests/telemetry/test_tracing.py tests/api/test_failure_paths.py
              tests/api/test_backpressure.py tests/api/test_rate_limits.py
              tests/backends/test_breaker_e2e.py tests/backends/test_dispatch_admission.py"
  [decision_log]="tests/telemetry/test_decision_log_unit.py tests/telemetry/test_log_stores.py tests/telemetry/test_ips.py"
  [utility]="tests/router/test_scenario.py tests/router/test_scenario_errors.py tests/router/test_utility.py
             tests/router/test_rules.py tests/router/test_planner.py tests/telemetry/test_ips.py"
  [calibration]="tests/router/test_calibration.py tests/router/test_calibration_edges.py"
  [risk]="tests/router/test_risk.py tests/router/test_risk_units.py"
)
ORDER=(fallback pipeline decision_log utility calibration risk)
report_only=0
if [ "${1:-}" = "--report" ]; then report_only=1; shift; fi  # the table again from reports/mutation/
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=("${ORDER[@]}")
for m in "${modules[@]}"; do
  [ -n "${MUTATE[$m]:-}" ] || { echo "unknown module $m (one of: ${ORDER[*]})" >&2; exit 2; }
done

out="$PWD/reports/mutation"
mkdir -p "$out"
venv="$PWD/.venv"
for m in "${modules[@]}"; do
  [ "$report_only" = 0 ] || break
  work=$(mktemp -d "${TMPDIR:-/tmp}/vlrouter-mutation-$m.XXXXXX")
  tar --exclude=__pycache__ --exclude='*.egg-info' -cf - src tests pyproject.toml | tar -xf - -C "$work"
  "$venv/bin/python" - "$work/pyproject.toml" "${MUTATE[$m]}" "${TESTS[$m]}" <<'EOF'
import json, sys
path, mutate, tests = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
with open(path, "a") as f:
    f.write("\n[tool.mutmut]\nsource_paths = [\"src\"]\n")
    f.write(f"only_mutate = {json.dumps(mutate)}\n")
    f.write(f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n")
    f.write('pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n')
EOF
  echo "==> $m: mutating ${MUTATE[$m]}"
  started=$SECONDS
  rc=0
  # one OpenMP/MKL thread: mutmut forks a child per mutant, and a child forked after torch's thread
  # pool has started can hang in it
  (cd "$work" && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 timeout "${MUTATION_TIMEOUT_S:-600}" "$venv/bin/mutmut" run --max-children "${MUTATION_CHILDREN:-2}" ${MUTATION_ONLY:-} \
     > "$out/$m.log" 2>&1) || rc=$?
  (cd "$work" && "$venv/bin/mutmut" export-cicd-stats >/dev/null 2>&1 || true)
  (cd "$work" && "$venv/bin/mutmut" results --all true 2>/dev/null | grep -E ': (survived|no tests)$' \
     | while read -r name _; do "$venv/bin/mutmut" show "${name%:}" 2>/dev/null; echo; done) \
     > "$out/$m-survivors.txt" || true
  "$venv/bin/python" - "$work/mutants/mutmut-cicd-stats.json" "$out/$m.json" "$m" "$rc" "$((SECONDS - started))" <<'EOF'
import json, sys
src, dst, module, rc, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
try:
    stats = json.load(open(src))
except (OSError, ValueError):
    stats = {}
stats.update(module=module, seconds=seconds, capped=rc == 124, mutmut_exit=rc)
json.dump(stats, open(dst, "w"), indent=2)
EOF
  rm -rf "$work"
done

"$venv/bin/python" - "$out" "${modules[@]}" <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, "scripts")
from mutation_survivors import sort_survivors
out, modules = Path(sys.argv[1]), sys.argv[2:]
print(f"\n{'module':<14}{'mutants':>8}{'killed':>8}{'crashed':>8}{'survived':>9}{'wording':>8}{'no tests':>9}"
      f"{'kill rate':>10}{'in code':>8}  time")
summary = {}
for m in modules:
    s = json.loads((out / f"{m}.json").read_text())
    # a timeout or a crashed test process (segfault) also means the tests noticed the mutant
    crashed = s.get("timeout", 0) + s.get("segfault", 0) + s.get("suspicious", 0)
    killed, survived = s.get("killed", 0), s.get("survived", 0)
    kinds = sort_survivors((out / f"{m}-survivors.txt").read_text())
    wording = len(kinds.get("text", [])) + len(kinds.get("log", []))  # strings and log-call arguments only
    noticed = killed + crashed
    rate = noticed / (noticed + survived) if noticed + survived else None
    code_rate = noticed / (noticed + survived - wording) if noticed + survived - wording else None
    note = " (capped)" if s["capped"] else ""
    print(f"{m:<14}{s.get('total', 0):>8}{killed:>8}{crashed:>8}{survived:>9}{wording:>8}{s.get('no_tests', 0):>9}"
          f"{'-' if rate is None else f'{rate:.0%}':>10}{'-' if code_rate is None else f'{code_rate:.0%}':>8}"
          f"  {s['seconds']} s{note}")
    summary[m] = {**s, "wording_survivors": wording, "kill_rate": None if rate is None else round(rate, 4),
                  "kill_rate_in_code": None if code_rate is None else round(code_rate, 4)}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"\nwording: survivors that change only string literals or a log call's arguments "
      f"(scripts/mutation_survivors.py);\n'in code': the kill rate without them. Survivors: "
      f"{out}/<module>-survivors.txt; counts: {out}/summary.json")
EOF
