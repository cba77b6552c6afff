"""GiVA's init in LoRA training steps of the same batch, by phase, for this checkout's giva/ and another commit's
(default: 8fd542e, the last before the gradient was taken as factors), over the size ladder and MiniLM.

    .venv/bin/python tests/benchmarks/giva_init_speed.py [--models llama-12m,...,llama-1b,minilm] \\
        [--threads 1,2] [--rounds 3] [--base 8fd542e] [--in-process]

The model and batch are the profile task's (4 x 128 tokens on the ladder, as the `sizes` preset; 16 x 64 on
MiniLM), fp32, GiVA r8 and LoRA r8, after one untimed forward and backward pass (bench/run/point.py's warm_up,
as the harness runs it). By default every init is the first of a fresh process (this script with --worker), as in
a harness point: each round runs both commits in turn, the order alternating between rounds, and each process then
times LoRA steps (the harness's training step, one warmup, median of 3). --in-process runs both commits' inits in one process instead, alternating, with LoRA
steps between rounds: not first inits, but the steadiest ratio on a busy machine. The table gives medians over
rounds of init / step by wall clock and by CPU time (process time, which on a shared machine depends far less on
the load than wall clock does, at one thread), the init's growth of the peak RSS, and the load average (1 min)
before and after. Then, once per model in one process (1 thread), the smallest principal-angle cosine over layers
between both commits' bases (A and B), same batch and seed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LADDER = ["llama-12m", "llama-50m", "llama-140m", "llama-430m", "llama-1b", "minilm"]
BATCH = {"minilm": (16, 64)}  # (batch size, sequence length); the ladder: (4, 128)


def extract_base(commit: str, folder: str) -> None:
    """The giva package of `commit` as folder/giva_base, to be imported beside this checkout's (load_base)."""
    archive = subprocess.run(["git", "archive", commit, "giva"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    os.rename(os.path.join(folder, "giva"), os.path.join(folder, "giva_base"))


def load_packages(variants: list[str], base_folder: str) -> dict:
    """{"base": the base commit's giva, "now": this checkout's}, for the variants asked."""
    import giva

    sys.path.insert(0, base_folder)
    return {v: importlib.import_module("giva_base") if v == "base" else giva for v in variants}


def setup(model_name: str):
    """The profile task's model and first batch, as a harness point makes them (seed 0, fp32, CPU)."""
    from bench.run.point import warm_up
    from bench.tasks import setup_task

    batch_size, seq_len = BATCH.get(model_name, (4, 128))
    task = setup_task("profile", model_name, batch_size=batch_size, seq_len=seq_len, seed=0)
    batch = next(task.train_batches)
    warm_up(task.model, batch, task.loss_fn)
    return task, batch


def apply_giva(package, task, batch):
    import torch

    torch.manual_seed(0)
    config = package.GivaConfig(r=8, seed=0, trainable_modules=task.trainable_modules)
    return package.apply_adapter(task.model, config, data=[batch], loss_fn=task.loss_fn)


def lora_step_s(task, batch) -> tuple[float, float]:
    """Median wall and CPU seconds of 3 LoRA r8 training steps after one warmup step; the model is left as it was."""
    import giva
    from bench.config.train import TrainSettings
    from bench.run.train import make_optimizer, training_step

    model = giva.apply_adapter(task.model, giva.LoraConfig(r=8, alpha=16, trainable_modules=task.trainable_modules))
    training = model.training
    model.train()
    optimizer = make_optimizer(model, task.trainable_modules, TrainSettings(steps=100), "lora")
    walls, cpus = [], []
    for _ in range(4):
        wall, cpu = time.perf_counter(), time.process_time()
        training_step(model, batch, task.loss_fn, optimizer, 1.0)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    giva.unload_adapter(model)
    model.train(training)
    return statistics.median(walls[1:]), statistics.median(cpus[1:])


def measure(variants: list[str], model_name: str, threads: int, rounds: int, base_folder: str) -> dict:
    """In this process: rounds of one GiVA init per variant (order alternating), then LoRA steps; by variant, one
    dict per round (seconds by phase, wall and CPU, the step's, the init's growth of the peak RSS)."""
    import torch

    torch.set_num_threads(threads)
    packages = load_packages(variants, base_folder)
    task, batch = setup(model_name)
    results = {v: [] for v in variants}
    for round_ in range(rounds):
        for variant in variants if round_ % 2 == 0 else variants[::-1]:
            package = packages[variant]
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            wall, cpu = time.perf_counter(), time.process_time()
            model = apply_giva(package, task, batch)
            init_s, init_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
            rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
            stats = package.adapter_stats(model)
            package.unload_adapter(model)
            results[variant].append(dict(init_s=init_s, init_cpu_s=init_cpu_s, grad_s=stats["init_grad_s"],
                                         svd_s=stats["init_svd_s"], init_rss_growth_bytes=rss_growth))
        step_s, step_cpu_s = lora_step_s(task, batch)
        for variant in variants:
            results[variant][-1].update(step_s=step_s, step_cpu_s=step_cpu_s)
    return results


def bases_agreement(model_name: str, base_folder: str) -> tuple[float, float]:
    """Smallest principal-angle cosine over layers between both commits' bases (A, B), one model in one process."""
    import torch

    torch.set_num_threads(1)
    packages = load_packages(["base", "now"], base_folder)
    task, batch = setup(model_name)
    bases = []
    for package in packages.values():
        model = apply_giva(package, task, batch)
        bases.append({name: (layer.giva_A.T, layer.giva_B) for name, layer in model.giva_adapter.layers.items()})
        package.unload_adapter(model)

    def min_cosine(X, Y):  # column spaces, orthonormalised first
        return torch.linalg.svdvals(torch.linalg.qr(X).Q.T @ torch.linalg.qr(Y).Q).min().item()

    return tuple(min(min_cosine(bases[0][n][i], bases[1][n][i]) for n in bases[1]) for i in (0, 1))


def run_worker(job: dict):
    """The job (plain JSON) in a fresh process, with OMP_NUM_THREADS set to its thread count; its result."""
    env = {**os.environ, "OMP_NUM_THREADS": str(job.get("threads", 1))}
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                          env=env, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"worker {job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_rows(model_name: str, threads: int, load: str, results: dict) -> None:
    for variant, runs in results.items():
        def median(key):
            return statistics.median(run[key] for run in runs)

        ratio = statistics.median(run["init_s"] / run["step_s"] for run in runs)
        cpu_ratio = statistics.median(run["init_cpu_s"] / run["step_cpu_s"] for run in runs)
        print(f"| {model_name} | {threads} | {load} | {variant} | {median('init_s'):.3f} | "
              f"{median('grad_s'):.3f} / {median('svd_s'):.3f} | {median('step_s'):.3f} | {ratio:.2f} | "
              f"{cpu_ratio:.2f} | {median('init_rss_growth_bytes') / 2**20:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(LADDER))
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default="8fd542e", help="commit to compare with")
    parser.add_argument("--in-process", action="store_true", help="both commits' inits in one process, alternating")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a job as JSON (run_worker)
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    if args.worker:
        job = json.loads(args.worker)
        if job["kind"] == "bases":
            print(json.dumps(bases_agreement(job["model"], job["folder"])))
        else:
            print(json.dumps(measure(job["variants"], job["model"], job["threads"], job["rounds"], job["folder"])))
        return

    folder = tempfile.mkdtemp(prefix="giva-base-")
    extract_base(args.base, folder)
    commit = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=REPO, capture_output=True, text=True).stdout
    mode = "both in one process, alternating" if args.in_process else "each the first init of a fresh process"
    print(f"base {args.base} ({commit.strip()}) against this checkout; inits {mode}; {args.rounds} rounds; "
          f"{os.cpu_count()} CPUs")
    print("| model | threads | load before-after | variant | init (s) | grad / svd (s) | LoRA step (s) | init in steps | "
          "init in steps (CPU time) | init RSS growth (MiB) |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for model_name in args.models.split(","):
        for threads in map(int, args.threads.split(",")):
            load_before = os.getloadavg()[0]
            job = dict(kind="measure", model=model_name, threads=threads, folder=folder)
            if args.in_process:
                results = run_worker({**job, "variants": ["base", "now"], "rounds": args.rounds})
            else:
                results = {"base": [], "now": []}
                for round_ in range(args.rounds):
                    for variant in ["base", "now"] if round_ % 2 == 0 else ["now", "base"]:
                        results[variant] += run_worker({**job, "variants": [variant], "rounds": 1})[variant]
            print_rows(model_name, threads, f"{load_before:.1f}-{os.getloadavg()[0]:.1f}", results)
    for model_name in args.models.split(","):
        worst_A, worst_B = run_worker(dict(kind="bases", model=model_name, folder=folder))
        print(f"{model_name}: bases against {args.base}: smallest principal-angle cosine A {worst_A:.7f}, B {worst_B:.7f}")


if __name__ == "__main__":
    main()
