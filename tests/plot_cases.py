"""Runs and histories of the sizes users make, grown from the real run (tests/real_run.py) by renaming.

    expand_run(real_run_dir, dest, MODELS_8, METHODS_6, RANKS_12)   # 8 models x 6 methods x 12 ranks x 2 seeds
    make_history(real_run_dir, dest / "history.csv", runs=100)        # 100 runs over commits
    with_init_tasks(run_dir, dest, ["", "trec", "agnews"])               # GiVA's bases from other tasks too

Every row is a real row of the real run (its timings, memory, counts, scores), renamed to another model, method
and rank; the quantities that grow with the model (its parameters, the step's FLOPs and tensor bytes) or with the
rank (trainable parameters) are scaled by that growth, so that axes span what a real sweep of that size spans.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from datetime import datetime, timedelta, timezone

from real_run import copy_run, rewrite_rows

from bench.columns import COLUMNS
from bench.track.history import HISTORY_COLUMNS, append_history, read_history

# Names as users write them (hub ids), with their parameter counts.
MODELS_8 = {"sentence-transformers/all-MiniLM-L6-v2": 22.7e6, "FacebookAI/roberta-base": 125e6,
            "HuggingFaceTB/SmolLM2-135M": 135e6, "Qwen/Qwen2.5-0.5B-Instruct": 494e6,
            "meta-llama/Llama-3.2-1B": 1.24e9, "google/gemma-2-2b": 2.61e9, "mistralai/Mistral-7B-v0.3": 7.25e9,
            "meta-llama/Llama-2-13b-hf": 13.0e9}
# The `sizes` preset's ladder that made today's init_overhead unreadable.
MODELS_5 = {"llama-2m": 2.1e6, "llama-12m": 12.4e6, "llama-50m": 50.3e6, "llama-140m": 139e6, "llama-430m": 431e6}
METHODS_6 = {"lora": "lora", "vera": "vera", "giva": "giva", "peft:lora": "lora", "peft:vera": "vera",
             "peft:pissa": "lora"}  # method -> the real run's method whose rows it takes
METHODS_3 = {"lora": "lora", "vera": "vera", "giva": "giva"}
RANKS_12 = [2**i for i in range(12)]  # 1 ... 2048
MODEL_SCALED = [c.name for c in COLUMNS if c.name.startswith("tensor_") or "flops" in c.name] + ["model_params"]


def expand_run(real_run_dir: str, dest, models: dict[str, float], methods: dict[str, str],
               ranks: list[int] | None = None, estimated: bool = False) -> str:
    """The real run's ok rows renamed to every model x method x rank (x its seeds), written as a run at dest.
    ranks None keeps each method's own ranks; otherwise the method's lower real rank serves the lower half of
    `ranks`, its higher the upper half. estimated: the rows `run_bench.py estimate` writes (no timings, no scores)."""
    run_dir = copy_run(real_run_dir, dest)

    def expand(rows):
        ok = [r for r in rows if r["status"] == "ok"]
        sources = sorted({r["model"] for r in ok})
        out = []
        for m, (model, params) in enumerate(models.items()):
            source_model = sources[m % len(sources)]
            for method, source_method in methods.items():
                source_rows = [r for r in ok if (r["model"], r["method"]) == (source_model, source_method)]
                real_ranks = sorted({int(r["rank"]) for r in source_rows})
                wanted = real_ranks if ranks is None else ranks
                for i, rank in enumerate(wanted):
                    real = real_ranks[min(i * len(real_ranks) // len(wanted), len(real_ranks) - 1)]
                    for row in (r for r in source_rows if int(r["rank"]) == real):
                        out.append(renamed(row, model, params, method, rank, real, estimated))
        return out

    rewrite_rows(run_dir, expand)
    return run_dir


def with_init_tasks(run_dir: str, dest, init_tasks: list[str]) -> str:
    """The run with each GiVA row once per init task ("" for its own task), as a sweep with the init_task axis
    writes them (the transfer matrix's rows)."""
    out_dir = copy_run(run_dir, dest)

    def expand(rows):
        out = []
        for row in rows:
            if row["method"] != "giva":
                out.append(row)
                continue
            for init_task in init_tasks:
                options = {**json.loads(row["method_options"] or "{}"), **({"init_task": init_task} if init_task else {})}
                out.append({**row, "init_task": init_task, "method_options": json.dumps(options, sort_keys=True),
                            "point_id": hashlib.sha1(f"{row['point_id']} {init_task}".encode()).hexdigest()[:16]})
        return out

    rewrite_rows(out_dir, expand)
    return out_dir


def renamed(row: dict, model: str, params: float, method: str, rank: int, real_rank: int, estimated: bool) -> dict:
    growth = params / float(row["model_params"])
    new = {**row, "model": model, "method": method, "rank": str(rank),
           "point_id": hashlib.sha1(f"{model} {method} {rank} {row['seed']}".encode()).hexdigest()[:16]}
    for name in MODEL_SCALED:
        if row.get(name):
            new[name] = repr(float(row[name]) * growth)
    if row.get("trainable_params"):
        new["trainable_params"] = repr(float(row["trainable_params"]) * growth ** 0.5 * rank / real_rank)
    if estimated:
        measured = [c.name for c in COLUMNS if c.name.startswith(("step_time", "init_", "eval_", "train_"))
                    and c.name not in ("init_flops", "init_tensor_peak_bytes")]
        new.update({name: "" for name in measured + ["peak_mem_bytes", "tokens_per_s", "step_times_ms"]},
                   estimated="1")
    return new


def make_history(run_dir: str, history_csv, runs: int) -> str:
    """A history of `runs` runs of one run's points over as many commits, a day apart; each run's metrics are the
    run's own times a slow drift and a wobble, as runs on a shared machine give."""
    history_csv = str(history_csv)
    scratch = history_csv + ".one"
    append_history(run_dir, scratch)
    rows = read_history(scratch)[HISTORY_COLUMNS].astype(object).where(lambda f: f.notna(), "")
    os.remove(scratch)
    start = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    with open(history_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for i in range(runs):
            commit = hashlib.sha1(str(i).encode()).hexdigest()
            factor = 1 + 0.002 * i + 0.03 * ((i * 7) % 5 - 2) / 2
            for row in rows.to_dict("records"):
                new = {**row, "commit": commit, "commit_position": i + 1, "dirty": int(i % 9 == 4),
                       "run_dir": f"reports/runs/quick-{commit[:7]}",
                       "run_ended_at": (start + timedelta(days=i)).isoformat(timespec="seconds")}
                for name in ("step_time_ms_p50", "init_total_s", "peak_mem_bytes"):
                    if new.get(name) != "":
                        new[name] = repr(float(new[name]) * factor)
                writer.writerow(new)
    return history_csv
