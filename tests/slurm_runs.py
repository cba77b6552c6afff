"""Helpers for sweeps on the test SLURM cluster (the slurm_cluster fixture): sweep files, job ids, accounting."""

from __future__ import annotations

import json
import os
import re
import subprocess

from waiting import wait_for


def write_sweep(path, seq_len: int, methods=("lora", "vera"), ranks=(2,), timed_steps=2, **executor) -> str:
    """A sweep file of llama-2m profile points at this seq_len, on the slurm executor with these settings."""
    lines = ['models = ["llama-2m"]', 'tasks = ["profile"]', f"methods = {json.dumps(list(methods))}",
             f"ranks = {list(ranks)}", "batch_sizes = [2]", f"seq_lens = [{seq_len}]", "warmup_steps = 1",
             f"timed_steps = {timed_steps}", "threads = 1", "[executor]", 'kind = "slurm"']
    lines += [f"{name} = {json.dumps(value)}" for name, value in executor.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def job_ids(run_dir: str) -> set[str]:
    """The SLURM job ids submitted for a run, from submitit's files in RUN_DIR/slurm/: a job array's (its tasks are
    ID_0, ID_1, ...), or a single point's job."""
    folder = os.path.join(run_dir, "slurm")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return {m.group(1) for name in names if (m := re.match(r"(\d+)_submission\.sh$", name))}


def sacct(job_id: str) -> list[tuple[str, str]]:
    """(job id, state) of every run of the job's tasks, requeued runs included, from SLURM's accounting, once none
    is still pending, running or completing (a job writes its result just before it ends)."""
    runs: list[tuple[str, str]] = []

    def settled() -> bool:
        out = subprocess.run(["sacct", "-j", job_id, "--duplicates", "-X", "-n", "-P", "-o", "JobID,State"],
                             capture_output=True, text=True, check=True).stdout
        runs[:] = [tuple(line.split("|")) for line in out.splitlines()]
        return not any(state in ("PENDING", "RUNNING", "COMPLETING") for _, state in runs)

    wait_for(settled, poll_s=0.5)
    return runs
