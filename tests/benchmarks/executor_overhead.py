"""Per-point dispatch cost of each executor, in ms, with a no-op in place of the point:

    local      the fresh process every point starts with (python -c "import bench.point"), which all executors pay
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    results["local: fresh point process (import bench.point)"] = timed_ms(
        lambda: subprocess.run([sys.executable, "-c", "import bench.point"], cwd=REPO, check=True), args.repeats)

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
