"""Run one sweep point and return its results row: load, seed, adapt (timed), train (timed), evaluate."""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

import torch

from giva import adapter_stats, apply_adapter, get_method, make_config, save_adapter, unload_adapter
from giva.config import AdapterConfig

from .config import Point
from .costs import cost_columns, trace_costs
from .measure import MemoryMonitor, summarize_ms, synchronize
from .models import check_fits, get_entry
from .peft_methods import is_peft_method, make_peft_adapter
from .results import utc_now


def resolve_device(device: str) -> str:
    """The torch device of a point's `device` on this machine: auto is cuda:0 when CUDA is visible, else cpu."""
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but torch sees no CUDA device on {socket.gethostname()}; "
                         "use --device cpu or auto")
    return "cuda:0" if device == "cuda" else device


def run_point(point: Point, run_dir: str) -> dict:
    """Every failure becomes a row with status failed and a one-line error; the sweep goes on."""
    started, start = utc_now(), time.perf_counter()
    row = {**identity_columns(point), "host": socket.gethostname()}
    try:
        row["device"] = resolve_device(point.device)
        row.update(measure_point(point, run_dir))
    except SkipPoint as e:
        row.update(status="skipped", error=str(e))
    except Exception as e:  # noqa: BLE001 - isolation is the point; OOM and NaN included
        row.update(status="failed", error=one_line(e))
        traceback.print_exc(file=sys.stderr)
    row.update(started_at=started, point_wall_s=round(time.perf_counter() - start, 3))
    return row


class SkipPoint(Exception):
    """The point cannot run on this machine (not an error of the code under test)."""


def identity_columns(point: Point, estimated: bool = False) -> dict:
    return dict(point_id=point.point_id, estimated=int(estimated), model=point.model, task=point.task, method=point.method, rank=point.rank,
                method_options=point.adapter_options, seed=point.seed, batch_size=point.batch_size,
                seq_len=point.seq_len, dtype=point.dtype, device=point.device)


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:500]


def measure_point(point: Point, run_dir: str) -> dict:
    from .tasks import setup_task, task_head
    from .train import TrainSettings, train

    device = torch.device(resolve_device(point.device))
    if point.threads:
        torch.set_num_threads(point.threads)
    entry = get_entry(point.model)
    head = task_head(point.task, entry)
    reason = check_fits(entry, head, point.dtype, device)
    if reason:
        raise SkipPoint(reason)

    # Untimed: model and data. Seeded so that every method starts from the same state.
    torch.manual_seed(point.seed)
    setup = setup_task(point.task, point.model, batch_size=point.batch_size, seq_len=point.seq_len, seed=point.seed,
                       device=str(device), dtype=point.dtype, data_dir=point.data_dir or None,
                       options=json.loads(point.task_options))
    model = setup.model
    model_params = sum(p.numel() for p in model.parameters())
    adapter = make_adapter(point, setup.trainable_modules)

    # The first batches are drawn before any clock runs (a task may compute targets
    # while drawing) and go back in front of the stream, so every method trains on
    # the same data in the same order. One untimed forward warms the kernels.
    num_init = adapter.init_batches
    head_batches = [next(setup.train_batches) for _ in range(max(1, num_init))]
    setup.train_batches = itertools.chain(head_batches, setup.train_batches)
    with torch.no_grad():
        model(**head_batches[0])

    # Init: data passes (GiVA's gradient, EVA's activations), SVD, injection, each timed apart; peak memory of the whole phase.
    torch.manual_seed(point.seed)
    synchronize(device)
    with MemoryMonitor(device) as init_mem:
        t0 = time.perf_counter()
        model = adapter.apply(model, head_batches[:num_init], setup.loss_fn)
        synchronize(device)
        init_total_s = time.perf_counter() - t0
    stats = adapter.stats(model)
    with tempfile.TemporaryDirectory(dir=run_dir) as tmp:
        adapter_file_bytes = os.path.getsize(adapter.save(model, tmp))

    # Training: warmup, then timed steps (profile) or the whole run (accuracy tasks).
    settings = TrainSettings(**json.loads(point.train))
    if setup.evaluate is None:
        settings.steps = point.warmup_steps + point.timed_steps
    if settings.steps <= point.warmup_steps:
        raise ValueError(f"train steps {settings.steps} leave none to time after {point.warmup_steps} warmup steps; raise steps")
    torch.manual_seed(point.seed)
    with MemoryMonitor(device) as train_mem:
        result = train(model, setup, settings, method=point.method, device=device, trace_step=True)
    # Untimed, after every clock and monitor: GiVA's init again, traced for FLOPs and tensor bytes.
    model = adapter.unload(model)
    torch.manual_seed(point.seed)
    init_costs = trace_costs(model, lambda: adapter.apply(model, head_batches[:num_init], setup.loss_fn))
    timed = result.step_times_ms[point.warmup_steps:]
    step = summarize_ms(timed)
    write_curve(run_dir, point.point_id, result.curve)

    capped = {k: v for k, v in stats["effective_ranks"].items() if v < point.rank}
    mem = train_mem.result
    return dict(
        status="ok", error="", adapter_seed=getattr(adapter, "seed", ""),
        model_params=model_params,
        trainable_params=stats["trainable_params"], adapter_params=stats["adapter_params"],
        total_params=stats["total_params"], adapted_layers=stats["adapted_layers"], rank_min=stats["rank_min"],
        rank_max=stats["rank_max"], capped_layers=stats["capped_layers"],
        effective_ranks=json.dumps(capped) if capped else "",
        adapter_buffer_bytes=stats["adapter_buffer_bytes"], optimizer_state_bytes=result.optimizer_state_bytes,
        adapter_file_bytes=adapter_file_bytes,
        init_total_s=init_total_s, init_grad_s=stats["init_grad_s"], init_svd_s=stats["init_svd_s"],
        init_inject_s=stats["init_inject_s"], init_peak_mem_bytes=init_mem.result.peak_bytes,
        init_mem_growth_bytes=init_mem.result.growth_bytes,
        warmup_steps=point.warmup_steps, timed_steps=len(timed), **step,
        tokens_per_s=setup.tokens_per_batch / (step["step_time_ms_p50"] / 1000.0),
        peak_mem_bytes=mem.peak_bytes, mem_growth_bytes=mem.growth_bytes, peak_mem_source=mem.source,
        peak_rss_bytes=mem.peak_rss_bytes, cuda_max_allocated_bytes=mem.cuda_max_allocated_bytes,
        cuda_max_reserved_bytes=mem.cuda_max_reserved_bytes, nvml_peak_used_bytes=mem.nvml_peak_used_bytes,
        eval_metric=result.eval_metric, eval_score_before=result.eval_score_before, eval_score=result.eval_score,
        eval_score_best=result.eval_score_best, eval_scores=json.dumps(result.eval_scores) if result.eval_scores else "",
        eval_examples=setup.num_eval_examples if setup.evaluate is not None else None,
        eval_accuracy_before=result.eval_accuracy_before, eval_accuracy=result.eval_accuracy,
        eval_accuracy_best=result.eval_accuracy_best, eval_loss=result.eval_loss,
        train_steps=result.train_steps, train_time_s=result.train_time_s, lr=result.lr, head_lr=result.head_lr,
        **cost_columns(init_costs, result.step_costs),
    )


@dataclass
class OurAdapter:
    """One of giva's methods, behind the same four calls as bench.peft_methods.PeftAdapter."""

    config: AdapterConfig

    @property
    def seed(self) -> int | str:
        """The seed of the adapter's random parts (GiVA's B and SVD sketch, VeRA's projections); "" for none."""
        return getattr(self.config, self.config.seed_option) if self.config.seed_option else ""

    @property
    def init_batches(self) -> int:
        return get_method(self.config.method).init_batches(self.config)

    def apply(self, model, batches: list, loss_fn=None):
        return apply_adapter(model, self.config, data=batches or None, loss_fn=loss_fn)

    def stats(self, model) -> dict:
        return adapter_stats(model)

    def save(self, model, path: str) -> str:
        return save_adapter(model, path)

    def unload(self, model):
        """The base model back, as it was before apply."""
        return unload_adapter(model)


def make_adapter(point: Point, trainable_modules: list[str]):
    """The point's method, ours or PEFT's (`peft:<name>`), configured at the point's rank."""
    options = json.loads(point.adapter_options)
    if is_peft_method(point.method):
        return make_peft_adapter(point.method, point.rank, options, trainable_modules=trainable_modules)
    config = make_config(point.method, r=point.rank, trainable_modules=trainable_modules, **options)
    if config.seed_option and config.seed_option not in options:  # the sweep seed seeds the adapter's random parts
        setattr(config, config.seed_option, point.seed)
    return OurAdapter(config)


def write_curve(run_dir: str, point_id: str, curve: list[dict]) -> None:
    if not curve:
        return
    import csv

    os.makedirs(os.path.join(run_dir, "curves"), exist_ok=True)
    with open(os.path.join(run_dir, "curves", f"{point_id}.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curve[0]))  # step, eval_<metric>..., eval_loss
        writer.writeheader()
        writer.writerows(curve)


def main(argv: list[str]) -> int:
    """python -m bench.point POINT_JSON ROW_JSON RUN_DIR: one point in a fresh process (see sweep.py)."""
    point_file, row_file, run_dir = argv
    with open(point_file) as f:
        point = Point(**json.load(f))
    row = run_point(point, run_dir)
    tmp = row_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(row, f)
    os.replace(tmp, row_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
