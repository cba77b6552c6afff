"""A tiny real sweep made by the harness itself (bench.run.sweep.run_sweep), cached on disk, and the edits tests
make to copies of it.

    run_dir = cached_real_run(root)              # built once per source tree (a file lock: one builder at a time)
    copy = copy_run(run_dir, tmp_path / "x")     # results.csv and meta.json, to change and report on
    rewrite_rows(copy, lambda rows: ...)         # a planted effect on real rows: edit values, never build a row
    rewrite_rows(copy, lambda rows: [scale_step_times(r, 2.0) for r in rows])
    with_load(copy, 0.4)                         # as if timed on a quiet machine (or a busy one)

The sweep (SWEEP): the two smallest registered language models on the planted task, on the CPU, every method at
two ranks (GiVA r1 meets VeRA and LoRA at 8r, GiVA r8 LoRA at r and VeRA at 8r) and two seeds, one torch thread,
the points in this process: 24 measured rows, about 35 s of CPU. A second sweep (FAILING) adds a point that really
fails (a checkpoint folder whose config names no architecture) and one skipped for want of memory (llama-70b in
fp32); its two rows are appended to the first run's results.csv. conftest.py serves the run as the session fixture
`real_run_dir`.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import glob
import hashlib
import json
import os
import shutil

import numpy as np

from bench.columns import IDENTITY
from bench.results.read import META_FILE, RESULTS_FILE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# GIVA_REAL_RUN_SEEDS=2,3 makes the same sweep with other seeds: a test of the report or of compare must pass
# whatever numbers the run gives (on another machine, or with other seeds), so it asserts what the code promises.
SEEDS = [int(s) for s in os.environ.get("GIVA_REAL_RUN_SEEDS", "0,1").split(",")]
SWEEP = dict(models=["llama-2m", "gpt2-tiny"], tasks=["planted"], methods=["lora", "vera", "giva"],
             method_options={"lora": {"ranks": [2, 8]}, "vera": {"ranks": [8, 64]}, "giva": {"ranks": [1, 8]}},
             seeds=SEEDS, batch_sizes=[2], seq_lens=[16], warmup_steps=2, train={"steps": 12, "eval_every": 6},
             task_options={"k": 4, "eval_batches": 2}, device="cpu", isolate=False, threads=1)
BROKEN_MODEL = "broken-model"  # a folder beside the run whose config.json names no architecture: its point fails
# its models: that folder and llama-70b, which no test machine holds in fp32 (788 GiB with workspace)
FAILING = dict(SWEEP, methods=["giva"], method_options={}, ranks=[4], seeds=SEEDS[:1])
COMMAND = ["tests/real_run.py"]  # meta.json's command
DONE = "done"  # written last: the cached run is whole


def make_real_run(root: str) -> str:
    """The two sweeps under root (root/run, root/failing); returns root/run with the failing sweep's rows appended."""
    import torch

    from bench.config.presets import make_sweep_config
    from bench.run.sweep import run_sweep

    broken = os.path.join(root, BROKEN_MODEL)
    os.makedirs(broken, exist_ok=True)
    with open(os.path.join(broken, "config.json"), "w") as f:
        json.dump({"model_type": "no-such-architecture"}, f)
    run_dir, failing_dir = os.path.join(root, "run"), os.path.join(root, "failing")
    threads = torch.get_num_threads()
    try:  # a point sets its own thread count (1) in this process
        run_sweep(make_sweep_config(None, SWEEP), run_dir, COMMAND, log=lambda *_: None)
        failing = make_sweep_config(None, {**FAILING, "models": [broken, "llama-70b"]})
        run_sweep(failing, failing_dir, COMMAND, log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    with open(os.path.join(failing_dir, RESULTS_FILE)) as f:
        header, *lines = f.readlines()
    with open(os.path.join(run_dir, RESULTS_FILE)) as f:
        assert f.readline() == header, "the two sweeps wrote different headers"
    with open(os.path.join(run_dir, RESULTS_FILE), "a") as f:
        f.writelines(lines)
    return run_dir


def source_hash() -> str:
    """Of what the run depends on: bench/, giva/, this file, torch's and transformers' versions, the seeds."""
    import torch
    import transformers

    digest = hashlib.sha256(f"{torch.__version__} {transformers.__version__} {SEEDS}".encode())
    paths = [os.path.abspath(__file__)] + sorted(
        glob.glob(os.path.join(REPO, "bench", "**", "*.py"), recursive=True)
        + glob.glob(os.path.join(REPO, "giva", "**", "*.py"), recursive=True))
    for path in paths:
        digest.update(os.path.relpath(path, REPO).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def cached_real_run(cache_root: str) -> str:
    """The real run under cache_root/<source hash>, built there first if need be. A file lock keeps two processes
    (pytest-xdist workers, two test sessions) from building it twice; a build that died midway (no `done` file) is
    removed and made again."""
    root = os.path.join(cache_root, source_hash())
    os.makedirs(cache_root, exist_ok=True)
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not os.path.exists(os.path.join(root, DONE)):
            shutil.rmtree(root, ignore_errors=True)
            make_real_run(root)
            open(os.path.join(root, DONE), "w").close()
    return os.path.join(root, "run")


# --- edits of a copy ------------------------------------------------------------


def copy_run(run_dir: str, dest) -> str:
    """A copy of results.csv and meta.json only (no earlier report), to change and report on."""
    dest = str(dest)
    os.makedirs(dest, exist_ok=True)
    for name in (RESULTS_FILE, META_FILE):
        shutil.copy(os.path.join(run_dir, name), dest)
    return dest


def rewrite_rows(run_dir: str, change) -> None:
    """Rewrite results.csv through change(rows) -> rows (header kept)."""
    path = os.path.join(run_dir, RESULTS_FILE)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    rows = change(rows)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def scale_step_times(row: dict, factor: float) -> dict:
    """The row with every step time `factor` times the measured one (its summaries with it)."""
    times = [float(t) * factor for t in row["step_times_ms"].split(";")]
    columns = {c: float(row[c]) * factor for c in ("step_time_ms_p50", "step_time_ms_p90", "step_time_ms_mean",
                                                    "step_time_ms_min")}
    return {**row, **columns, "step_times_ms": ";".join(f"{t:.4f}" for t in times),
            "tokens_per_s": float(row["tokens_per_s"]) / factor}


def steady_step_times(row: dict, keep: float = 0.05) -> dict:
    """The row with each step time pulled toward the median, keeping `keep` of its distance: the real times' order
    and shape, at a spread no busy machine can widen (a planted quiet, so that a planted factor decides a verdict)."""
    times = [float(t) for t in row["step_times_ms"].split(";")]
    median = float(np.median(times))
    steady = [median + keep * (t - median) for t in times]
    return {**row, "step_time_ms_p50": float(np.median(steady)), "step_time_ms_p90": float(np.quantile(steady, 0.9)),
            "step_time_ms_mean": float(np.mean(steady)), "step_time_ms_min": min(steady),
            "step_times_ms": ";".join(f"{t:.4f}" for t in steady)}


def failed_retry(ok: dict, failed: dict, error: str) -> dict:
    """A real failed row as a later retry of the ok row's point: the failed row's empty measurements and status, the
    ok row's identity (bench.columns IDENTITY and point_id), this error."""
    return {**failed, **{c: ok[c] for c in ("point_id", *IDENTITY)}, "error": error}


def with_load(run_dir: str, load_avg: float, cpu_count: int = 2) -> str:
    """The run as if timed at this 1-minute load average on a machine of cpu_count cores (the real run's own load is
    whatever the machine had while it ran)."""
    rewrite_rows(run_dir, lambda rows: [{**r, "load_avg_1m_start": str(load_avg), "load_avg_1m_end": str(load_avg)}
                                        for r in rows])
    with edited_meta(run_dir) as meta:
        meta["load"] = {"cpu_count": cpu_count, "load_avg_1m_max": load_avg, "busy": load_avg > cpu_count}
    return run_dir


@contextlib.contextmanager
def edited_meta(run_dir: str):
    """meta.json as a dict to change in the with-block; written back after it."""
    path = os.path.join(run_dir, META_FILE)
    with open(path) as f:
        meta = json.load(f)
    yield meta
    with open(path, "w") as f:
        json.dump(meta, f)
