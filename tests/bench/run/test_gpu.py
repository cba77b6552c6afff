"""The CUDA paths, where a CUDA device is present (`make test-gpu`; skipped elsewhere): the quick preset on the GPU
through the pool executor (CUDA events, per-phase CUDA peaks, NVML found by UUID, the tracked tensor peak against
torch.cuda.max_memory_allocated), bf16 points, NVML with CUDA_VISIBLE_DEVICES at a non-zero index, the pool's one
worker per GPU, and Ray's num_gpus.

GIVA_GPU_RUN_DIR keeps the quick preset's run directory (make test-gpu: reports/runs/quick-gpu) for its report.
"""

import os
import subprocess
import sys

import pytest
import torch
from cli_runs import REPO
from waiting import HANG_GUARD_S

from bench.config.grid import expand_grid
from bench.config.presets import make_sweep_config
from bench.results.read import load_run
from bench.run.executors.pool import PoolExecutor, PoolSettings, visible_gpus
from bench.run.sweep import run_sweep

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")]
METHODS = ["lora", "vera", "giva"]


def python(code: str, **env) -> str:
    """stdout of a fresh Python process (its own CUDA context) running code, with these environment variables."""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def cublas_workspace_bytes() -> int:
    """The bytes cuBLAS and cuBLASLt keep allocated after their first fp32 and bf16 matmuls (their workspaces, per
    stream): counted in torch.cuda.max_memory_allocated, and no tensor's."""
    code = """
import torch
x, w, b = (torch.randn(*shape, device="cuda", requires_grad=True) for shape in ((256, 256), (256, 256), (256,)))
torch.cuda.synchronize()
before = torch.cuda.memory_allocated()
for dtype in (torch.float32, torch.bfloat16):
    xd, wd, bd = x.to(dtype), w.to(dtype), b.to(dtype)
    (xd @ wd).sum().backward()
    torch.nn.functional.linear(xd, wd, bd).sum().backward()
    del xd, wd, bd
x.grad = w.grad = b.grad = None
torch.cuda.synchronize()
print(torch.cuda.memory_allocated() - before)
"""
    return int(python(code))


def assert_tracked_peak_matches(row: dict, workspace: int) -> None:
    """The tensors MemTracker saw at the step's peak are torch's max allocated, less the cuBLAS workspaces, within
    5% (the rest: the allocator's 512-byte rounding)."""
    allocated = row["cuda_max_allocated_bytes"] - workspace
    ratio = row["tensor_peak_bytes"] / allocated
    assert 0.95 <= ratio <= 1.05, (f"{row['method']} r{row['rank']} {row['dtype']}: tracked {row['tensor_peak_bytes']} "
                                   f"B vs max allocated {row['cuda_max_allocated_bytes']} B less workspace "
                                   f"{workspace} B: ratio {ratio:.3f}")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> list[dict]:
    """The quick preset's rows on CUDA, one pool worker per GPU (run_bench.py, as users run it)."""
    run_dir = os.environ.get("GIVA_GPU_RUN_DIR") or str(tmp_path_factory.mktemp("quick-gpu") / "run")
    result = subprocess.run([sys.executable, "run_bench.py", "run", "--preset", "quick", "--device", "cuda",
                             "--executor", "pool", "--out", run_dir], cwd=REPO, capture_output=True, text=True,
                            timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stderr[-3000:]
    return load_run(run_dir).rows.to_dict("records")  # numbers as floats


@pytest.fixture(scope="module")
def quick_rows(quick_run) -> list[dict]:
    """The quick preset's measured points (its size ladder's are traced by `estimate`: no clocks, no CUDA peaks)."""
    return [r for r in quick_run if not r["estimated"]]


def test_the_quick_preset_s_size_ladder_is_traced_with_fake_cuda_tensors(quick_run):
    traced = [r for r in quick_run if r["estimated"]]
    assert traced and {r["status"] for r in traced} == {"ok"}, [r["error"] for r in traced]
    assert {r["model"] for r in traced} == {"llama-1b", "llama-7b"} and {r["executor"] for r in traced} == {"estimate"}
    assert min(r["tensor_peak_bytes"] for r in traced) > 0


def test_the_quick_preset_runs_on_cuda_with_cuda_timings_and_peaks(quick_rows):
    assert quick_rows and {r["status"] for r in quick_rows} == {"ok"}, [r["error"] for r in quick_rows]
    for row in quick_rows:
        assert row["device"] == "cuda:0" and row["executor"] == "pool"
        assert row["peak_mem_source"] == "cuda_max_allocated"
        steps = [float(t) for t in row["step_times_ms"].split(";")]
        assert len(steps) == row["timed_steps"] and min(steps) > 0  # CUDA events
        # NVML read the GPU the point ran on (found by UUID): it saw at least what this process reserved
        assert row["nvml_peak_used_bytes"] >= row["cuda_max_reserved_bytes"] >= row["cuda_max_allocated_bytes"] > 0
        assert row["eval_score"] > row["eval_score_before"]


@pytest.mark.parametrize("method", METHODS)
def test_the_tracked_tensor_peak_is_cuda_max_allocated_within_5_percent(quick_rows, cublas_workspace_bytes, method):
    rows = [r for r in quick_rows if r["method"] == method]
    assert rows
    for row in rows:
        assert_tracked_peak_matches(row, cublas_workspace_bytes)


def test_bf16_points_run_on_cuda_with_half_the_parameter_bytes(tmp_path, cublas_workspace_bytes):
    def sweep(dtype):
        config = make_sweep_config(None, dict(models=["llama-12m"], tasks=["profile"], methods=METHODS, ranks=[8],
                                              batch_sizes=[4], seq_lens=[128], warmup_steps=2, timed_steps=5,
                                              device="cuda", dtype=dtype))
        rows = run_sweep(config, str(tmp_path / dtype), ["test"], log=print)
        assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
        return {r["method"]: r for r in rows}

    fp32, bf16 = sweep("float32"), sweep("bfloat16")
    for method in METHODS:
        assert bf16[method]["dtype"] == "bfloat16"
        assert bf16[method]["tensor_params_bytes"] < 0.6 * fp32[method]["tensor_params_bytes"], method
        assert_tracked_peak_matches(bf16[method], cublas_workspace_bytes)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs (CUDA_VISIBLE_DEVICES=1)")
def test_nvml_reads_the_gpu_a_point_sees_with_cuda_visible_devices_at_a_non_zero_index(tmp_path):
    """NVML numbers the physical GPUs and ignores CUDA_VISIBLE_DEVICES: a point pinned to GPU 1 sees it as cuda:0,
    and its NVML reading must be GPU 1's."""
    code = ("import pynvml, torch; from bench.measure.memory import _nvml_handle; "
            "print(pynvml.nvmlDeviceGetIndex(_nvml_handle(torch.device('cuda:0'))))")
    assert python(code, CUDA_VISIBLE_DEVICES="1").strip() == "1"
    result = subprocess.run([sys.executable, "run_bench.py", "run", "--models", "llama-12m", "--tasks", "profile",
                             "--methods", "lora", "--ranks", "8", "--device", "cuda", "--out", str(tmp_path / "run")],
                            cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = load_run(str(tmp_path / "run")).rows.to_dict("records")
    assert row["nvml_peak_used_bytes"] >= row["cuda_max_reserved_bytes"] > 0


def test_the_pool_pins_one_worker_per_gpu(tmp_path):
    """Each pool slot's process sees one GPU, its own; together the slots cover every GPU."""
    gpus = torch.cuda.device_count()
    config = make_sweep_config(None, dict(models=["llama-2m"], tasks=["profile"], methods=["lora"],
                                          ranks=list(range(1, 2 * gpus + 1)), device="cuda"))
    executor = PoolExecutor(PoolSettings(), config, str(tmp_path))
    visible = visible_gpus(gpus)  # 0 .. gpus-1, or this process's own CUDA_VISIBLE_DEVICES
    assert executor.slot_envs == [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in visible]

    def worker(point: dict, timeout_s: int, env: dict) -> dict:
        seen = python("import time, torch; print(torch.cuda.device_count(), torch.cuda.get_device_properties(0).uuid);"
                      " time.sleep(2)", **env).split()
        return {"slot": env["CUDA_VISIBLE_DEVICES"], "gpus": int(seen[0]), "uuid": seen[1]}

    physical = {gpu: str(torch.cuda.get_device_properties(i).uuid) for i, gpu in enumerate(visible)}
    seen = list(executor.run(expand_grid(config), worker))
    assert len(seen) == 2 * gpus
    assert all(s["gpus"] == 1 and s["uuid"] == physical[s["slot"]] for s in seen), seen
    assert {s["uuid"] for s in seen} == set(physical.values())


def test_ray_gives_each_cuda_point_one_gpu(tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    config = make_sweep_config(None, dict(models=["llama-2m"], tasks=["profile"], methods=["lora", "vera"], ranks=[4],
                                          batch_sizes=[2], seq_lens=[32], warmup_steps=1, timed_steps=3,
                                          device="cuda", executor={"kind": "ray"}))
    rows = run_sweep(config, str(tmp_path / "run"), ["test"], log=print)
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
    assert {r["device"] for r in rows} == {"cuda:0"} and {r["executor"] for r in rows} == {"ray"}
