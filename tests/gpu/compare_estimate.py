"""The GPU sweep's rows (tests/gpu/h200.toml, run on a GPU) against themselves, against PEFT and against `estimate`.

    python tests/gpu/compare_estimate.py RUN_DIR_OR_RESULTS_CSV [ESTIMATE_CSV]   # default tests/gpu/h200-estimate.csv

Per point: the tensor peak the step's trace saw against torch.cuda.max_memory_allocated over the training phase,
the estimate's tensor peaks (step and init) against the measured ones, NVML's device peak, and the step time.
Then ours against PEFT's (step time and peak, same model and rank) and GiVA's init phases in ours-LoRA steps.
Reads only the two CSVs (bench.results.read.load_run); points are matched by point_id, which `estimate` shares.
"""

from __future__ import annotations

import os
import sys

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench.results.read import load_run  # noqa: E402

ESTIMATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "h200-estimate.csv")
PAIRS = (("lora", "peft:lora"), ("vera", "peft:vera"))  # ours, PEFT's
GIB = 2**30


def ratio(a, b) -> str:
    return f"{a / b:.3f}" if pd.notna(a) and pd.notna(b) and b else "-"


def gib(value) -> str:
    return f"{value / GIB:.2f}" if pd.notna(value) else "-"


def points_table(real: pd.DataFrame, estimate: pd.DataFrame) -> pd.DataFrame:
    """One line per measured point: memory in GiB, each ratio the first figure over the second."""
    est = estimate.set_index("point_id")
    lines = []
    for _, row in real.iterrows():
        guess = est.loc[row.point_id] if row.point_id in est.index else None
        est_step = guess.tensor_peak_bytes if guess is not None else float("nan")
        est_init = guess.init_tensor_peak_bytes if guess is not None else float("nan")
        lines.append({
            "model": row.model, "method": row.method, "r": row["rank"], "status": row.status,
            "step_ms_p50": round(row.step_time_ms_p50, 1) if pd.notna(row.step_time_ms_p50) else "-",
            "max_alloc": gib(row.cuda_max_allocated_bytes), "tracked": gib(row.tensor_peak_bytes),
            "tracked/max_alloc": ratio(row.tensor_peak_bytes, row.cuda_max_allocated_bytes),
            "est": gib(est_step), "est/tracked": ratio(est_step, row.tensor_peak_bytes),
            "est/max_alloc": ratio(est_step, row.cuda_max_allocated_bytes),
            "init_max_alloc": gib(row.init_peak_mem_bytes), "init_tracked": gib(row.init_tensor_peak_bytes),
            "init_est/init_tracked": ratio(est_init, row.init_tensor_peak_bytes),
            "init_est/init_max_alloc": ratio(est_init, row.init_peak_mem_bytes),
            "reserved": gib(row.cuda_max_reserved_bytes), "nvml": gib(row.nvml_peak_used_bytes),
        })
    return pd.DataFrame(lines)


def peft_table(real: pd.DataFrame) -> pd.DataFrame:
    """Ours against PEFT's at the same model and rank: step time and training-phase max allocated, ours / PEFT's."""
    ok = real[real.status == "ok"].set_index(["model", "method", "rank"])
    lines = []
    for (model, method, rank) in ok.index:
        for ours, theirs in PAIRS:
            if method == ours and (model, theirs, rank) in ok.index:
                a, b = ok.loc[(model, ours, rank)], ok.loc[(model, theirs, rank)]
                lines.append({"model": model, "ours": f"{ours} r{rank}", "ours_ms": round(a.step_time_ms_p50, 1),
                              "peft_ms": round(b.step_time_ms_p50, 1),
                              "time ours/peft": ratio(a.step_time_ms_p50, b.step_time_ms_p50),
                              "ours_max_alloc": gib(a.cuda_max_allocated_bytes),
                              "peft_max_alloc": gib(b.cuda_max_allocated_bytes),
                              "mem ours/peft": ratio(a.cuda_max_allocated_bytes, b.cuda_max_allocated_bytes),
                              "trainable ours/peft": ratio(a.trainable_params, b.trainable_params)})
    return pd.DataFrame(lines)


def init_table(real: pd.DataFrame) -> pd.DataFrame:
    """GiVA's init by phase, in steps of our LoRA on the same model (its step_time_ms_p50)."""
    ok = real[real.status == "ok"]
    lines = []
    for _, row in ok[ok.method == "giva"].iterrows():
        lora = ok[(ok.model == row.model) & (ok.method == "lora")]
        step_s = lora.step_time_ms_p50.iloc[0] / 1000 if len(lora) else float("nan")
        lines.append({"model": row.model, "r": row["rank"], "lora_step_s": round(step_s, 4),
                      **{f"{phase} (s, LoRA steps)": f"{row[column]:.3f}, {row[column] / step_s:.1f}"
                         for phase, column in (("grad", "init_grad_s"), ("svd", "init_svd_s"),
                                               ("inject", "init_inject_s"), ("total", "init_total_s"))}})
    return pd.DataFrame(lines)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    real = load_run(argv[0]).rows
    estimate = load_run(argv[1] if len(argv) > 1 else ESTIMATE).rows
    failed = real[real.status != "ok"]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 40):
        print("Per point (GiB; ratios first over second; est: `estimate`'s tensor peak, tracked: the real step's):")
        print(points_table(real, estimate).to_string(index=False))
        print("\nOurs against PEFT's:")
        print(peft_table(real).to_string(index=False))
        print("\nGiVA's init in LoRA steps:")
        print(init_table(real).to_string(index=False))
        for _, row in failed.iterrows():
            print(f"\n{row.status}: {row.model} {row.method} r{row['rank']}: {row.error}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
