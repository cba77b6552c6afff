"""Per-point dispatch cost of each executor, in ms, with a no-op in place of the point:

    local      the fresh process every point starts with (python -c "import bench.run.point"), which all executors pay
    forked     a real llama-2m point in a fresh process, and the same point forked from a fork server that has made
               the imports (bench/run/executors/forkserver.py; warm: its first point apart)
    ray        a no-op task's round trip on a local 2-CPU cluster (warm worker; the first, cold one apart)
    submitit   a no-op job of submitit's local mode, submitted and its result read (real subprocess jobs)

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/executor_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def noop(x):
    return x


def timed_ms(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def point_ms(repeats: int) -> dict[str, list[float]]:
    """A llama-2m LoRA profile point (2 timed steps), in a fresh process and forked from a warm fork server."""
    from dataclasses import asdict

    from bench.config.grid import expand_grid
    from bench.config.presets import make_sweep_config
    from bench.run.executors.worker import run_point_forked, run_point_payload, stop_fork_servers

    config = make_sweep_config(None, dict(models=["llama-2m"], tasks=["profile"], methods=["lora"], ranks=[2],
                                          batch_sizes=[2], seq_lens=[16], warmup_steps=1, timed_steps=2, threads=1))
    point = asdict(expand_grid(config)[0])
    out = {"local: a llama-2m point in a fresh process": timed_ms(lambda: run_point_payload(point, 600), repeats)}
    try:
        run_point_forked(point, 600)  # the server starts and makes its imports
        out["local: the same point forked from a warm server"] = timed_ms(lambda: run_point_forked(point, 600),
                                                                         repeats)
    finally:
        stop_fork_servers()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    results["local: fresh point process (import bench.run.point)"] = timed_ms(
        lambda: subprocess.run([sys.executable, "-c", "import bench.run.point"], cwd=REPO, check=True), args.repeats)
    results.update(point_ms(args.repeats))

    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    init_ms = (time.perf_counter() - start) * 1000
    task = ray.remote(noop).options(num_cpus=1, max_retries=0)
    results["ray: first task (starts a worker)"] = timed_ms(lambda: ray.get(task.remote(1)), 1)
    results["ray: task round trip, warm"] = timed_ms(lambda: ray.get(task.remote(1)), args.repeats)
    ray.shutdown()

    import submitit

    with tempfile.TemporaryDirectory() as folder:
        executor = submitit.AutoExecutor(folder=folder, cluster="local")
        executor.update_parameters(timeout_min=5)

        def submit_and_wait():
            job = executor.submit(noop, 1)
            while not job.paths.result_pickle.exists():
                time.sleep(0.01)
            assert job.result() == 1

        results["submitit local: job submitted to result read"] = timed_ms(submit_and_wait, args.repeats)

    print(f"{os.cpu_count()} cores, {os.uname().nodename}; ray.init of a local cluster: {init_ms:.0f} ms\n")
    print("| dispatch | median ms | min | max | n |\n|---|---:|---:|---:|---:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.0f} | {min(values):.0f} | {max(values):.0f} | {len(values)} |")


if __name__ == "__main__":
    main()
