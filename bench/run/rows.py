"""The one row builder: every results row (a measured point, an estimated one, a failed one) is made here.

    row = point_row(point, lambda: {...measured columns...}, estimated=False)

The identity columns come from the Point (the columns marked identity in bench/columns.py); the measured columns
come from the named builders below (adapter counts, init phase, step timing, memory, training, evaluation, the
task's own, costs), each giving every column of its group (None where not measured), so that an ok row carries the
whole schema (results.write.append_row refuses one that does not). A failure inside measure() is a failed row with a
one-line error (SkipPoint: a skipped row), never an exception. An estimated row leaves every column its trace does
not give empty.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict

import torch

from ..columns import COLUMN_NAMES, COUNTED_BY, IDENTITY, OPERATOR_MEANING
from ..config.sweep import Point
from ..measure.clocks import summarize_ms
from ..measure.counters import Costs
from ..measure.operators import OpCounts
from ..measure.load import load_columns, read_load
from ..measure.memory import MemoryPeak
from ..results.environment import utc_now
from .train import TrainResult

# The Point field of an identity column where the names differ.
POINT_FIELDS = {"method_options": "adapter_options"}
# The columns a task fills itself (TaskSetup.task_columns): image tasks the first, gen: tasks the others.
TASK_COLUMNS = ("image_transform", "answer_rule", "decoding", "gen_time_s", "gen_new_tokens")


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
    failed row. Estimated: every other column empty (a trace times and evaluates nothing)."""
    started, start, load = utc_now(), time.perf_counter(), read_load()
    row = {**(dict.fromkeys(COLUMN_NAMES) if estimated else {}), **identity_columns(point, estimated), **columns}
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
            **operator_columns(step.ops, "{}_per_step"), "aten_ops_by_op": step.ops.by_op_text(),
            **operator_columns(init.ops, "init_{}"), COUNTED_BY: torch.__version__,
            "cost_trace_s": round(init.trace_s + step.trace_s, 3),
            "cost_trace_batch": "x".join(map(str, step_batch_shape)) + (f" as {traced_as}" if traced_as else ""),
            "init_flops_share": init.flops / run_flops if run_flops else None, "init_share_steps": steps,
            "init_share_steps_source": steps_source}


def operator_columns(ops: OpCounts, name: str) -> dict:
    """The operator-level counts of a trace (bench/measure/operators.py) under the column names `name` makes."""
    return {name.format(count): getattr(ops, count) for count in OPERATOR_MEANING}


def init_columns(seconds: float, stats: dict, mem: MemoryPeak) -> dict:
    """The init phase: its wall time, split by phase (the adapter's stats), and its memory."""
    return {"init_total_s": seconds, "init_grad_s": stats["init_grad_s"], "init_svd_s": stats["init_svd_s"],
            "init_inject_s": stats["init_inject_s"], "init_peak_mem_bytes": mem.peak_bytes,
            "init_mem_growth_bytes": mem.growth_bytes}


def timing_columns(step_times_ms: list[float], warmup_steps: int, tokens_per_batch: int) -> dict:
    """The training steps' times after the first warmup_steps: median, p90, mean, min, the raw list, throughput."""
    timed = step_times_ms[warmup_steps:]
    step = summarize_ms(timed)
    return {"warmup_steps": warmup_steps, "timed_steps": len(timed), **step,
            "tokens_per_s": tokens_per_batch / (step["step_time_ms_p50"] / 1000.0)}


def memory_columns(mem: MemoryPeak) -> dict:
    """The training phase's memory: the headline peak, what it read, and every counter beside it."""
    return {"peak_mem_bytes": mem.peak_bytes, "mem_growth_bytes": mem.growth_bytes, "peak_mem_source": mem.source,
            "peak_rss_bytes": mem.peak_rss_bytes, "cuda_max_allocated_bytes": mem.cuda_max_allocated_bytes,
            "cuda_max_reserved_bytes": mem.cuda_max_reserved_bytes, "nvml_peak_used_bytes": mem.nvml_peak_used_bytes}


def training_columns(result: TrainResult, init_total_s: float, fine_tuned: bool) -> dict:
    """The training run: steps, wall time, learning rates, optimizer state, and the init's share of the wall time
    where the point trains a whole fine-tuning run (fine_tuned); a profile point times a few steps only."""
    return {"train_steps": result.train_steps, "train_time_s": result.train_time_s, "lr": result.lr,
            "head_lr": result.head_lr, "optimizer_state_bytes": result.optimizer_state_bytes,
            "init_share": init_total_s / (init_total_s + result.train_time_s) if fine_tuned else None}


def eval_columns(result: TrainResult, eval_examples: int | None) -> dict:
    """The evaluations' scores (None for a task that evaluates nothing, profile) and the examples each scored."""
    return {"eval_metric": result.eval_metric, "eval_score_before": result.eval_score_before,
            "eval_score": result.eval_score, "eval_score_best": result.eval_score_best,
            "eval_scores": json.dumps(result.eval_scores) if result.eval_scores else "", "eval_examples": eval_examples,
            "eval_accuracy_before": result.eval_accuracy_before, "eval_accuracy": result.eval_accuracy,
            "eval_accuracy_best": result.eval_accuracy_best, "eval_loss": result.eval_loss}


def task_columns(filled: dict) -> dict:
    """Every task's own columns: those the point's task filled (TaskSetup.task_columns), the others empty."""
    return {**dict.fromkeys(TASK_COLUMNS), **filled}
