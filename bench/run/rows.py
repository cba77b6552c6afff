"""The one row builder: every results row (a measured point, an estimated one, a failed one) is made here.

    row = point_row(point, lambda: {...measured columns...}, estimated=False)

The identity columns come from the Point (the columns marked identity in bench/columns.py), the adapter's counts
from its stats, the costs from the two traces; the caller's measure() adds what only it knows. A failure inside
measure() is a failed row with a one-line error (SkipPoint: a skipped row), never an exception.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict

from ..columns import IDENTITY
from ..config.sweep import Point
from ..measure.counters import Costs
from ..measure.load import load_columns, read_load
from ..results.environment import utc_now

# The Point field of an identity column where the names differ.
POINT_FIELDS = {"method_options": "adapter_options"}


class SkipPoint(Exception):
    """The point cannot run on this machine (not an error of the code under test)."""


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:500]


def identity_columns(point: Point, estimated: bool = False) -> dict:
    values = {**asdict(point), "init_task": point.init_task.label if point.init_task else ""}
    return {"point_id": point.point_id, "estimated": int(estimated),
            **{name: values[POINT_FIELDS.get(name, name)] for name in IDENTITY}}


def failed_row(point: Point, error: str, **columns) -> dict:
    return {**identity_columns(point), "status": "failed", "error": error, **columns}


def point_row(point: Point, measure: Callable[[], dict], estimated: bool = False, **columns) -> dict:
    """identity + columns + measure()'s columns + status, timing and the machine's load; a failure in measure() is a
    failed row."""
    started, start, load = utc_now(), time.perf_counter(), read_load()
    row = {**identity_columns(point, estimated), **columns}
    try:
        row.update(status="ok", error="", **measure())
    except SkipPoint as e:
        row.update(status="skipped", error=str(e))
    except Exception as e:  # noqa: BLE001 - isolation is the point; OOM and NaN included
        if estimated:  # traced in the driver, many points in a row: the label says which, no traceback
            row.update(status="failed", error=f"{point.label}: {one_line(e)}")
        else:  # in the point's own process, whose log keeps the traceback
            row.update(status="failed", error=one_line(e))
            traceback.print_exc(file=sys.stderr)
    row.update(started_at=started, point_wall_s=round(time.perf_counter() - start, 3), **load_columns(load, read_load()))
    return row


def adapter_columns(stats: dict, rank: int) -> dict:
    """The counts of an adapted model (giva.adapter_stats' keys, or PEFT's the same way)."""
    capped = {k: v for k, v in stats["effective_ranks"].items() if v < rank}
    return dict(
        trainable_params=stats["trainable_params"], adapter_params=stats["adapter_params"],
        total_params=stats["total_params"], adapted_layers=stats["adapted_layers"], rank_min=stats["rank_min"],
        rank_max=stats["rank_max"], capped_layers=stats["capped_layers"],
        effective_ranks=json.dumps(capped) if capped else "", adapter_buffer_bytes=stats["adapter_buffer_bytes"])


def cost_columns(init: Costs, step: Costs, step_batch_shape: tuple, steps: int, steps_source: str = "point",
                 traced_as: str = "") -> dict:
    """The columns of an init trace and a training-step trace (bench/measure/counters.py), and the init's share of
    the FLOPs of a fine-tuning run of `steps` training steps (steps_source: "point", its own; "assumed").
    step_batch_shape: the traced step's batch input (B, T) or (B, C, H, W); traced_as: the task it was traced as,
    where not the point's own."""
    run_flops = init.flops + steps * step.flops
    return {"init_flops": init.flops, "init_tensor_peak_bytes": init.peak_bytes, "flops_per_step": step.flops,
            "adapter_flops_per_step": step.adapter_flops, **step.by_category, "tensor_peak_bytes": step.peak_bytes,
            "cost_trace_s": round(init.trace_s + step.trace_s, 3),
            "cost_trace_batch": "x".join(map(str, step_batch_shape)) + (f" as {traced_as}" if traced_as else ""),
            "init_flops_share": init.flops / run_flops if run_flops else None, "init_share_steps": steps,
            "init_share_steps_source": steps_source}
