"""Run one sweep point and return its results row: load, seed, adapt (timed), train (timed), evaluate, trace costs.

    python -m bench.run.point POINT_JSON ROW_JSON RUN_DIR     # what every executor's worker starts (executors/worker.py)

A point marked estimated (the size ladder's, every point of `estimate`) is traced there instead (run/estimate.py).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import tempfile
import time

import torch

from giva import batch_loss, frozen, synchronize

from ..adapters import make_adapter
from ..config.sweep import Point
from ..measure.counters import trace_costs
from ..measure.memory import MemoryMonitor
from ..models import check_fits, get_entry
from ..results.write import write_atomic
from ..tasks import get_task, setup_task
from ..tasks.init_task import borrow_init_data
from .rows import (SkipPoint, adapter_columns, cost_columns, eval_columns, init_columns, memory_columns, point_row,
                   task_columns, timing_columns, training_columns)
from .estimate import estimate_point
from .train import train, train_settings


def resolve_device(device: str) -> str:
    """The torch device of a point's `device` on this machine: auto is cuda:0 when CUDA is visible, else cpu."""
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but torch sees no CUDA device on {socket.gethostname()}; "
                         "use --device cpu or auto")
    return "cuda:0" if device == "cuda" else device


def warm_up(model: torch.nn.Module, batch, loss_fn) -> None:
    """One untimed forward and backward pass with every weight frozen, before any clock: the kernels, the autograd
    engine and the allocator's first pages are then ready, as the training steps' warmup makes them ready for the
    timed steps, so that the first phase timed (a method's init: GiVA's gradient pass) is not charged the process's
    one-time costs (0.13-0.25 s of a 0.6-0.9 s MiniLM step on 2 CPU cores). The gradient reaches every layer through
    the input embeddings' output; a model without get_input_embeddings gets the forward alone. No weight gets a
    gradient, and every flag is restored."""
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        embeddings = None
    if not isinstance(embeddings, torch.nn.Module):
        with torch.no_grad():
            batch_loss(model, batch, loss_fn)
        return

    def connect(module, args, output):
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            output.requires_grad_()
        return output

    hook = embeddings.register_forward_hook(connect)
    try:
        with frozen(model):
            loss = batch_loss(model, batch, loss_fn)
            if loss.requires_grad:
                loss.backward()
    finally:
        hook.remove()


def run_point(point: Point, run_dir: str) -> dict:
    """Every failure becomes a row with status failed and a one-line error; the sweep goes on."""
    where = {"host": socket.gethostname()}

    def measure() -> dict:
        where["device"] = resolve_device(point.device)  # the row says where it ran, failed or not
        return measure_point(point, run_dir, torch.device(where["device"]))

    return {**point_row(point, measure), **where}


def measure_point(point: Point, run_dir: str, device: torch.device) -> dict:
    if point.threads:
        torch.set_num_threads(point.threads)
    entry = get_entry(point.model)
    head = get_task(point.task).head_for(entry)
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
    adapter = make_adapter(point.method, point.rank, point.config_options, seed=point.seed,
                           trainable_modules=setup.trainable_modules)

    # The first batches are drawn before any clock runs (a task may compute targets
    # while drawing) and go back in front of the stream, so every method trains on
    # the same data in the same order. One untimed forward and backward pass warms the process (warm_up).
    num_init = adapter.init_batches
    head_batches = [next(setup.train_batches) for _ in range(max(1, num_init))]
    setup.train_batches = itertools.chain(head_batches, setup.train_batches)
    # An init_task's batches, and its head on this model's body, are made untimed too (tasks/init_task.py).
    borrowed = None if point.init_task is None or not num_init else borrow_init_data(
        point.init_task, model, point.model, num_batches=num_init, batch_size=point.batch_size, seq_len=point.seq_len,
        seed=point.seed, device=str(device), dtype=point.dtype, data_dir=point.data_dir or None,
        task_options=json.loads(point.task_options))

    def init_data() -> tuple:
        """(data, loss_fn) of the init: the first training batches, or a fresh pass over the init task's."""
        return (head_batches[:num_init], setup.loss_fn) if borrowed is None else (borrowed.train_step(), None)

    warm_up(model, head_batches[0], setup.loss_fn)

    # Init: data passes (GiVA's gradient, EVA's activations), SVD, injection, each timed apart; peak memory of the whole phase.
    torch.manual_seed(point.seed)
    synchronize(device)
    with MemoryMonitor(device) as init_mem:
        t0 = time.perf_counter()
        model = adapter.apply(model, *init_data())
        synchronize(device)
        init_total_s = time.perf_counter() - t0
    stats = adapter.stats(model)
    with tempfile.TemporaryDirectory(dir=run_dir) as tmp:
        adapter_file_bytes = os.path.getsize(adapter.save(model, tmp))

    # Training: warmup, then timed steps (profile) or the whole run (accuracy tasks).
    settings = train_settings(point, setup)
    torch.manual_seed(point.seed)
    with MemoryMonitor(device) as train_mem:
        result = train(model, setup, settings, method=point.method, device=device, trace_step=True)
    # Untimed, after every clock and monitor: GiVA's init again, traced for FLOPs and tensor bytes.
    model = adapter.unload(model)
    torch.manual_seed(point.seed)
    init_costs = trace_costs(model, lambda: adapter.apply(model, *init_data()))
    write_curve(run_dir, point.point_id, result.curve)

    fine_tuned = setup.evaluate is not None  # a whole fine-tuning run; a profile point times a few steps only
    return dict(
        adapter_seed=adapter.seed, model_params=model_params, **adapter_columns(stats, point.rank),
        adapter_file_bytes=adapter_file_bytes, **init_columns(init_total_s, stats, init_mem.result),
        **timing_columns(result.step_times_ms, point.warmup_steps, setup.tokens_per_batch),
        **memory_columns(train_mem.result), **training_columns(result, init_total_s, fine_tuned),
        **eval_columns(result, setup.num_eval_examples if fine_tuned else None),
        **cost_columns(init_costs, result.step_costs, result.step_batch_shape, result.train_steps),
        **task_columns(setup.task_columns),
    )


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
    """python -m bench.run.point POINT_JSON ROW_JSON RUN_DIR: one point in a process of its own (executors/worker.py),
    run, or traced if it is an estimated one (run/estimate.py)."""
    point_file, row_file, run_dir = argv
    with open(point_file) as f:
        point = Point(**json.load(f))
    if point.work_dir and os.path.isdir(point.work_dir):  # relative paths as the sweep's checks read them
        os.chdir(point.work_dir)
    if point.estimated:
        torch.set_num_threads(1)  # a trace computes nothing: one thread a process
        row = estimate_point(point)
    else:
        row = run_point(point, run_dir)
    write_atomic(row_file, json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
