"""Init time in LoRA training steps: the one unit the claim check, the data-driven inits table and init_overhead.png
count an init in, so that "GiVA's init = 3 steps" means the same everywhere.

summary.prepare() gives every row `lora_step_ms`; the init in steps is init_total_s / (lora_step_ms / 1000).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STEP_UNIT_METHOD = "lora"  # ours; where it did not run, the methods the same as it (PEFT's LoRA)
LORA_STEPS_NOTE = ("LoRA steps: the init over LoRA's median training step (ours, else PEFT's) in the same run, model "
                   "and task, at the same rank or, where LoRA did not run that rank, the nearest one it ran")


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
