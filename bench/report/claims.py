"""The paper's headline claim, checked on a run: GiVA at rank r against VeRA and LoRA at rank 8r, and LoRA at r."""

from __future__ import annotations

import pandas as pd

from .steps import LORA_STEPS_NOTE
from .tables import NOISE_NOTE, busy_note, format_difference, mark_busy, md_cell, noise_points, task_metric

# The paper's headline, as data: GiVA at rank r matches vector-based methods (VeRA) at rank 8r, and LoRA at 8r and r.
CLAIMED = "giva"
AGAINST = (("vera", 8, "VeRA at 8r"), ("lora", 8, "LoRA at 8r"), ("lora", 1, "LoRA at r"))  # (method, rank factor, heading)
STEP_BASELINE = "lora"  # GiVA's step time is compared with this method's at the same rank


def format_claim_check(ok: pd.DataFrame, several_runs: bool) -> list[str]:
    """Per model and task: each GiVA rank r against VeRA and LoRA at 8r and LoRA at r, where the runs have them."""
    rows = ok.dropna(subset=["eval_score"])
    if CLAIMED not in set(rows["method"]):
        return []
    out = ["## Claim check: GiVA at rank r against VeRA and LoRA at rank 8r", "",
           "Each task's own metric (named in its heading), mean over seeds; in brackets GiVA minus the other, in "
           "points (x100). Step time is GiVA's over LoRA's at the same rank; init is GiVA's init time in LoRA "
           f"training steps ({LORA_STEPS_NOTE}). '–': not in the runs. {NOISE_NOTE}"
           + (" " + busy_note(set(rows.loc[rows["busy"], "cpu_count"])) if rows["busy"].any() else ""), ""]
    for (run, model, task), group in rows.groupby(["run", "model", "task"], sort=False):
        stats = group.groupby(["method", "variant", "rank"]).agg(
            score=("eval_score", "mean"), step_ms=("step_time_ms_p50", "mean"), init_s=("init_total_s", "mean"),
            lora_step_ms=("lora_step_ms", "mean"), examples=("eval_examples", "mean"), busy=("busy", "any"))
        variants = group.groupby("method")["variant"].unique()
        if CLAIMED not in variants:
            continue

        def other(method: str, rank: int):
            """The method's mean row at `rank`; None when absent or ambiguous (several variants of the method)."""
            if method not in variants or len(variants[method]) != 1:
                return None
            key = (method, variants[method][0], rank)
            return stats.loc[key] if key in stats.index else None

        def against(mine, theirs) -> str:
            if theirs is None:
                return "–"
            noise = noise_points(metric, (mine["score"] + theirs["score"]) / 2, mine["examples"])
            return f"{theirs['score']:.3f} ({format_difference(100 * (mine['score'] - theirs['score']), noise)})"

        metric = task_metric(group)
        title = f"{model} · task {task} · {metric}" + (f" · run {run}" if several_runs else "")
        headings = " | ".join(heading for _, _, heading in AGAINST)
        out += [f"### {title}", "", f"| GiVA | r | {metric} | {headings} | step time vs LoRA at r | init (LoRA steps) |",
                "|---|---:|---:|" + "---:|" * len(AGAINST) + "---:|---:|"]
        for (_, variant, rank), mine in stats.loc[[CLAIMED]].iterrows():
            baseline = other(STEP_BASELINE, rank)
            step_ratio = ("–" if baseline is None else
                          mark_busy(f"{mine['step_ms'] / baseline['step_ms']:.2f}x", mine["busy"] or baseline["busy"]))
            init_steps = mine["init_s"] / (mine["lora_step_ms"] / 1000.0)
            init_cell = "–" if pd.isna(init_steps) else mark_busy(f"{init_steps:.2g}", mine["busy"])
            cells = " | ".join(against(mine, other(method, factor * rank)) for method, factor, _ in AGAINST)
            out.append(f"| {md_cell(variant)} | {rank} | {mine['score']:.3f} | {cells} | {step_ratio} | {init_cell} |")
        out.append("")
    return out
