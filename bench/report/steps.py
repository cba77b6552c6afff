"""How the report counts an init against training, the same way everywhere.

- In LoRA training steps: the unit the claim check, the data-driven inits table and init_overhead.png count an
  init in, so that "GiVA's init = 3 steps" means the same everywhere. summary.prepare() gives every row
  `lora_step_ms`; the init in steps is init_total_s / (lora_step_ms / 1000).
- As a share of a fine-tuning run: of one run length for every point of the report (share_steps), in FLOPs and in
  wall time (init_shares), never of each point's own steps (a measured point's training beside a traced profile
  point's few warm-up and timed steps).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STEP_UNIT_METHOD = "lora"  # ours; where it did not run, the methods the same as it (PEFT's LoRA)
LORA_STEPS_NOTE = ("LoRA steps: the init over LoRA's median training step (ours, else PEFT's) in the same run, model "
                   "and task, at the same rank or, where LoRA did not run that rank, the nearest one it ran")
# The fine-tuning length an init's share is of unless told (`report --assume-steps N`): the order of a short real
# LoRA fine-tuning (Alpaca's 52k examples at batch 128 for 3 epochs: ~1,200 steps; one epoch of SST-2 at batch 32:
# ~2,100). Most runs are longer, so the share shown is near the most a real run pays; the quick preset's 120 steps
# are a smoke test, not a fine-tuning.
SHARE_STEPS = 1000


def lora_step_ms(data: pd.DataFrame, methods: dict[str, dict]) -> pd.Series:
    """Per row of `data`: LoRA's median training step (ms) in the row's run, model and task, at the row's rank or
    the nearest rank LoRA ran there (log scale; of two as near, the lower); NaN where LoRA has no timed step.
    `methods` is meta.json's "methods" (which method is the same as which)."""
    units = [STEP_UNIT_METHOD, *sorted(m for m, info in methods.items()
                                       if info.get("same_as") == STEP_UNIT_METHOD and m != STEP_UNIT_METHOD)]
    timed = data[(data["status"] == "ok") & data["step_time_ms_p50"].notna()]
    out = pd.Series(np.nan, index=data.index, dtype=float)
    for key, group in data.groupby(["run", "model", "task"], sort=False):
        here = timed[(timed["run"] == key[0]) & (timed["model"] == key[1]) & (timed["task"] == key[2])]
        unit = next((here[here["method"] == m] for m in units if (here["method"] == m).any()), None)
        if unit is None:
            continue
        steps = unit.groupby("rank")["step_time_ms_p50"].mean()  # ranks ascending
        ranks = np.log2(steps.index.to_numpy(dtype=float))
        for rank, rows in group.groupby("rank"):
            nearest = int(np.argmin(np.abs(ranks - np.log2(max(rank, 1)))))  # argmin takes the first: the lower
            out[rows.index] = steps.iloc[nearest]
    return out


def share_steps(data: pd.DataFrame, assume_steps: int | None = None) -> int:
    """The one fine-tuning length, in training steps, every init share of the report is of: assume_steps (`report
    --assume-steps N`), else the length the rows assumed (`estimate --assume-steps N`) where they agree on one,
    else SHARE_STEPS."""
    if assume_steps is not None:
        if isinstance(assume_steps, bool) or assume_steps < 1:
            raise ValueError(f"--assume-steps {assume_steps}: give the fine-tuning length in training steps, 1 or "
                             "more")
        return int(assume_steps)
    assumed = set(data.loc[data["init_share_steps_source"] == "assumed", "init_share_steps"].dropna().astype(int))
    return assumed.pop() if len(assumed) == 1 else SHARE_STEPS


def init_shares(data: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Per row, the init's share of a fine-tuning run of `steps` training steps: share_flops, init_flops over
    itself plus `steps` x flops_per_step; share_time, init_total_s over itself plus `steps` median steps
    (step_time_ms_p50). NaN where the row lacks either."""
    flops = data["init_flops"] + steps * data["flops_per_step"]
    seconds = data["init_total_s"] + steps * data["step_time_ms_p50"] / 1000.0
    return pd.DataFrame({"share_flops": data["init_flops"] / flops.where(flops > 0),
                         "share_time": data["init_total_s"] / seconds.where(seconds > 0)}, index=data.index)


def share_note(data: pd.DataFrame) -> str:
    """What the report's shares are of (data: summary.prepare()'s frame, with share_steps), for captions and tables."""
    steps = int(data["share_steps"].iloc[0])
    trained = sorted(data.loc[(data["status"] == "ok") & (data["estimated"] != 1), "train_steps"].dropna().unique())
    note = (f"Init share of a {steps:,}-step fine-tuning, for every point (`report --assume-steps N` sets the "
            f"length): FLOPs, init / (init + {steps:,} training steps); wall time, init / (init + {steps:,} median "
            "steps)")
    return note + (f"; the measured points trained {', '.join(f'{t:,.0f}' for t in trained)} steps" if trained else "")
