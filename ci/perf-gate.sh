#!/usr/bin/env bash
# The performance gate, as .github/workflows/perf.yml runs it (docs/tracking.md explains both routes).
#
#   ci/perf-gate.sh pr BASE HEAD [SWEEP ARGS]   a pull request: the A/B gate times BASE and HEAD on this runner
#   ci/perf-gate.sh main [SWEEP ARGS]           a merge: run the sweep at HEAD, append it to the history, judge it
#
# SWEEP ARGS go to `run_bench.py ab` (default --preset ab) or `run_bench.py run` (default --preset quick).
# Exit: 0 pass; 1 a regression (slower, or an exact count that moved); 3 undecided within the budget, or timings
# not judged (busy machine, another processor); 2 bad input.
# Environment: PY (default .venv/bin/python), HISTORY (default reports/history.csv: the runner keeps it between
# jobs, e.g. in a cache), OUT (default reports/runs/perf), BUDGET (the A/B gate's minutes, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
HISTORY=${HISTORY:-reports/history.csv}
OUT=${OUT:-reports/runs/perf}
usage="usage: ci/perf-gate.sh pr BASE HEAD [SWEEP ARGS] | ci/perf-gate.sh main [SWEEP ARGS]"
mode=${1:?$usage}
shift
case "$mode" in
  pr)
    base=${1:?$usage}
    head=${2:?$usage}
    shift 2
    [ $# -gt 0 ] || set -- --preset ab
    # Paired short fresh processes of both commits, in seeded random order, until each point is slower, faster
    # or the same (99% t-interval of the pairs' log ratios) or the budget is spent.
    exec "$PY" run_bench.py ab "$base" "$head" "$@" --budget "${BUDGET:-10}" --out "$OUT/ab"
    ;;
  main)
    [ $# -gt 0 ] || set -- --preset quick
    commit=$(git rev-parse --short HEAD)
    "$PY" run_bench.py run "$@" --out "$OUT/$commit" --history "$HISTORY"
    exec "$PY" run_bench.py history regressions --file "$HISTORY" --html "$OUT/site"
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
