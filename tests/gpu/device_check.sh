#!/usr/bin/env bash
# The CUDA checks of issue 37 in one run on a GPU machine, from the repository root:
#
#     OUT=/some/folder bash tests/gpu/device_check.sh
#
# Parts, in order, each under its own time limit and each run whatever the one before did:
#   env     nvidia-smi, python and package versions; the wheels in .whl the machine lacks (or has older) go to
#           $SCRATCH/site (PYTHONPATH)
#   fast    tests/bench/run/test_gpu.py without the quick preset (bf16 points, the pool's pinning, NVML, Ray)
#   sweep   run_bench.py run --config tests/gpu/h200.toml (llama-1b first, then llama-7b; resumable)
#   quick   tests/bench/run/test_gpu.py's quick-preset tests (make test-gpu's run directory: GIVA_GPU_RUN_DIR)
#   compare tests/gpu/compare_estimate.py: the sweep against tests/gpu/h200-estimate.csv and against PEFT
# The whole run keeps within BUDGET_S seconds (default 450); PARTS="sweep compare" runs some parts only, and
# RESUME_FROM=FOLDER (an earlier run's sweep-results.csv and sweep-meta.json, carried) resumes the sweep from there,
# running the points it lacks and those that failed.
# $OUT gets few files: device_check.log (everything printed), sweep-results.csv, sweep-meta.json,
# quick-results.csv, compare.txt and logs.tar.gz (the point logs, both runs' meta.json, pytest's junit xml).
set -u
OUT=${OUT:?set OUT to the folder that collects the results}
BUDGET_S=${BUDGET_S:-450}
PARTS=${PARTS:-env fast sweep quick compare}
PY=${GPU_PY:-python3}
SCRATCH=${SCRATCH:-${TMPDIR:-/tmp}}  # what the run writes besides $OUT: the wheels' site and giva-gpu
SWEEP_DIR=${SWEEP_DIR:-$SCRATCH/giva-gpu/sweep}
QUICK_DIR=$SCRATCH/giva-gpu/quick-gpu
JUNIT_DIR=$SCRATCH/giva-gpu/junit
export PYTHONUNBUFFERED=1
START=$(date +%s)
mkdir -p "$OUT" "$JUNIT_DIR" "$(dirname "$SWEEP_DIR")"
exec > >(tee -a "$OUT/device_check.log") 2>&1
TEE_PID=$!

left() { echo $((START + BUDGET_S - $(date +%s))); }

# part NAME LIMIT_S COMMAND...: the command under min(LIMIT_S, the budget left less RESERVE_S), its exit status
# and wall time logged; a part that is not in PARTS, or has no time left, is skipped.
RESERVE_S=25  # for the parts after the sweep: compare and packing up
part() {
    local name=$1 limit=$2 budget
    shift 2
    case " $PARTS " in *" $name "*) ;; *) echo "== $name: not in PARTS, skipped"; return 0 ;; esac
    budget=$(( $(left) - RESERVE_S ))
    [ "$name" = compare ] && budget=$(( $(left) - 5 ))
    [ "$budget" -lt "$limit" ] && limit=$budget
    if [ "$limit" -le 5 ]; then echo "== $name: no time left, skipped"; return 0; fi
    echo "== $name: start at +$(( $(date +%s) - START )) s, limit $limit s: $*"
    local t0=$(date +%s)
    timeout -k 10 "$limit" bash -c '"$@"' "$name" "$@"  # its whole process group ends at the limit
    local rc=$?
    echo "== $name: exit $rc$( [ $rc -eq 124 ] && echo ' (time limit)') after $(( $(date +%s) - t0 )) s"
    return 0
}

environment() {
    nvidia-smi || echo "nvidia-smi failed"
    nvidia-smi --query-gpu=name,uuid,memory.total,memory.used,driver_version,clocks.sm,clocks.max.sm --format=csv || true
    echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset} nproc=$(nproc) $(uname -srm)"
    if ls .whl/*.whl >/dev/null 2>&1; then
        # a carried wheel is installed only where the machine lacks its package or has an older version
        local wanted
        wanted=$("$PY" - .whl/*.whl <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
from packaging.version import Version
for wheel in sys.argv[1:]:
    name, wheel_version = wheel.rsplit("/", 1)[-1].split("-")[:2]
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or Version(have) < Version(wheel_version):
        print(wheel)
    print(f"{name}: have {have}, carried {wheel_version}", file=sys.stderr)
EOF
        )
        if [ -n "$wanted" ]; then
            echo "installing into $SCRATCH/site: $wanted"
            # shellcheck disable=SC2086
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SCRATCH/site" $wanted \
                || echo "pip install of the carried wheels failed"
        fi
    fi
    "$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "transformers", "peft", "accelerate", "pandas", "numpy", "scipy", "pynvml", "ruptures", "pytest",
             "xdist", "ray", "submitit", "datasets", "gguf"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')} {module.__file__}")
    except Exception as e:
        print(f"{name}: not importable ({type(e).__name__}: {e})")
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(), "devices", torch.cuda.device_count())
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    print(props.name, props.total_memory, "bytes, uuid", props.uuid, "bf16", torch.cuda.is_bf16_supported())
    from bench.measure.memory import _nvml_handle
    handle = _nvml_handle(torch.device("cuda:0"))
    if handle is None:
        print("NVML: no handle for cuda:0 (nvml_peak_used_bytes stays empty)")
    else:
        import pynvml
        print("NVML: cuda:0 is GPU", pynvml.nvmlDeviceGetIndex(handle), pynvml.nvmlDeviceGetMemoryInfo(handle))
EOF
}

pytest_gpu() {  # pytest_gpu NAME -k EXPRESSION: tests/bench/run/test_gpu.py, verbose, skips explained, a junit xml per part
    local name=$1
    shift
    "$PY" -m pytest tests/bench/run/test_gpu.py -v -rs -p no:cacheprovider --junitxml="$JUNIT_DIR/$name.xml" "$@"
}
export -f environment pytest_gpu
export PY JUNIT_DIR PYTHONPATH="$SCRATCH/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export GIVA_GPU_RUN_DIR=$QUICK_DIR  # the quick preset's run directory, kept (make test-gpu's reports/runs/quick-gpu)
QUICK_TESTS="quick_preset or tracked_tensor_peak"
rm -rf "$QUICK_DIR"
if [ -n "${RESUME_FROM:-}" ] && [ -f "$RESUME_FROM/sweep-results.csv" ] && [ -f "$RESUME_FROM/sweep-meta.json" ]; then
    mkdir -p "$SWEEP_DIR"
    cp "$RESUME_FROM/sweep-results.csv" "$SWEEP_DIR/results.csv"
    cp "$RESUME_FROM/sweep-meta.json" "$SWEEP_DIR/meta.json"
    echo "resuming the sweep from $RESUME_FROM: $(($(wc -l < "$SWEEP_DIR/results.csv") - 1)) rows"
fi

part env 90 environment
part fast 150 pytest_gpu fast -k "not ($QUICK_TESTS)"
part sweep 250 "$PY" run_bench.py run --config tests/gpu/h200.toml --no-report --retry-failed \
    --out "$SWEEP_DIR"
[ -f "$SWEEP_DIR/results.csv" ] && cp "$SWEEP_DIR/results.csv" "$OUT/sweep-results.csv"
[ -f "$SWEEP_DIR/meta.json" ] && cp "$SWEEP_DIR/meta.json" "$OUT/sweep-meta.json"
part quick 240 pytest_gpu quick -k "$QUICK_TESTS"
[ -f "$QUICK_DIR/results.csv" ] && cp "$QUICK_DIR/results.csv" "$OUT/quick-results.csv"
if [ -f "$SWEEP_DIR/results.csv" ]; then
    part compare 30 bash -c "set -o pipefail; '$PY' tests/gpu/compare_estimate.py '$SWEEP_DIR' | tee '$OUT/compare.txt'"
else
    echo "== compare: the sweep wrote no results.csv, skipped"
fi
tar -czf "$OUT/logs.tar.gz" --exclude='*.png' -C "$SCRATCH" giva-gpu || echo "tar of the logs failed"
echo "== done at +$(( $(date +%s) - START )) s; $OUT holds: $(ls "$OUT" | tr '\n' ' ')"
exec >&- 2>&-
wait "$TEE_PID"  # the log is whole before the command returns
