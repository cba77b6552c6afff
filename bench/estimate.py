"""`run_bench.py estimate`: FLOPs and tensor memory of every point of a sweep, predicted without running it.

    row = estimate_point(point)       # run_bench.py estimate = bench.sweep.run_sweep(..., estimated=True)

Each point is traced once under FakeTensorMode: tensors carry shapes and dtypes but no
data, so nothing is allocated or computed and a 70B model traces on a laptop. The model is
built from its config, the adapter applied (GiVA's gradient pass and SVD included, over
num_grad_batches batches), and one training step run with the code a real point runs
(bench.train.training_step, AdamW state already there), under the same counters
(bench.costs). Rows go to results.csv with estimated = 1; timings stay empty.

Every point is traced as the profile task's step at the point's shapes: random tokens of
batch_size x seq_len, causal-LM loss for decoders, a classification head (task option
num_labels) for encoders; a task's data is not read. Without CUDA the trace runs on CPU
tensors: the bytes of parameters, gradients, optimizer state and activations do not depend
on the device; attention is the one kernel that can differ (flash attention on CPU and CUDA
both keep the output and its log-sum-exp).
"""

from __future__ import annotations

import json
import time
import warnings

import torch
from torch._subclasses.fake_tensor import FakeTensorMode


from .config import Point
from .costs import ScalarsReadAsOne, cost_columns, trace_costs
from .models import DTYPES, _auto_class, build_config, get_entry
from .peft_methods import is_peft_method
from .point import identity_columns, make_adapter, one_line
from .results import utc_now
from .taskspec import TaskOptions, head_modules, is_encoder
from .train import TrainSettings, make_optimizer, training_step

LEARNED_POSITIONS = ("bert", "roberta", "distilbert", "gpt2", "opt")  # families that cannot go past their positions


def estimate_point(point: Point) -> dict:
    """One point traced under FakeTensorMode -> a results row (estimated = 1); any failure is a failed row."""
    started, start = utc_now(), time.perf_counter()
    row = identity_columns(point, estimated=True)
    try:
        row.update(trace_point(point))
    except Exception as e:  # noqa: BLE001 - one bad point must not end the sweep
        row.update(status="failed", error=f"{point.label}: {one_line(e)}")
    row.update(started_at=started, point_wall_s=round(time.perf_counter() - start, 3))
    return row


def trace_point(point: Point) -> dict:
    if is_peft_method(point.method):  # get_peft_model moves weights with .to(), which fake tensors refuse
        raise ValueError(f"{point.method} cannot be traced with fake tensors (PEFT swaps real weights in); estimate "
                         "our lora, vera and giva, or run the point")
    entry = get_entry(point.model)
    encoder = is_encoder(entry)
    head = "seq_cls" if encoder else "causal_lm"
    options = TaskOptions.from_dict(json.loads(point.task_options))
    model_config = build_config(entry, head, options.num_labels)
    check_positions(model_config, point.seq_len)
    device = torch.device(point.device if point.device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    settings = TrainSettings(**json.loads(point.train))
    start = time.perf_counter()
    with FakeTensorMode(), ScalarsReadAsOne(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' notes on random init and the like
        torch.manual_seed(point.seed)
        with torch.device(device):
            model = _auto_class(head).from_config(model_config, dtype=DTYPES[point.dtype]).eval()
        model_params = sum(p.numel() for p in model.parameters())
        trainable_modules = head_modules(model) if encoder else []
        adapter = make_adapter(point, trainable_modules)  # ours or PEFT's, as a real point makes it
        num_init = adapter.init_batches
        batches = [profile_batch(point, model_config, options.num_labels, encoder, device)
                   for _ in range(max(1, num_init))]
        adapted = []
        init = trace_costs(model, lambda: adapted.append(adapter.apply(model, batches[:num_init])))
        model = adapted[0]
        stats = adapter.stats(model)
        opt = make_optimizer(model, trainable_modules, settings, point.method)
        for param in opt.params:  # AdamW's state, as after the timed steps of a real point
            param.grad = torch.zeros_like(param)
        opt.optimizer.step()
        opt.optimizer.zero_grad(set_to_none=True)
        model.train()
        step = trace_costs(model, lambda: training_step(model, batches[0], None, opt, settings.max_grad_norm),
                           (opt.optimizer, batches[0]))
        optimizer_state_bytes = sum(t.numel() * t.element_size() for state in opt.optimizer.state.values()
                                    for t in state.values() if isinstance(t, torch.Tensor))
    capped = {k: v for k, v in stats["effective_ranks"].items() if v < point.rank}
    costs = {**cost_columns(init, step), "cost_trace_s": round(time.perf_counter() - start, 3)}  # the whole trace
    return dict(
        status="ok", error="", model_params=model_params, trainable_params=stats["trainable_params"],
        adapter_params=stats["adapter_params"], total_params=stats["total_params"],
        adapted_layers=stats["adapted_layers"], rank_min=stats["rank_min"], rank_max=stats["rank_max"],
        capped_layers=stats["capped_layers"], effective_ranks=json.dumps(capped) if capped else "",
        adapter_buffer_bytes=stats["adapter_buffer_bytes"], optimizer_state_bytes=optimizer_state_bytes,
        **costs,
    )


def check_positions(model_config, seq_len: int) -> None:
    """A fake trace does not index real tables, so a sequence past learned position embeddings must be caught here."""
    if model_config.model_type in LEARNED_POSITIONS:
        limit = getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)
        if limit and seq_len > limit:
            raise ValueError(f"seq_len {seq_len} is longer than the {limit} positions of this "
                             f"{model_config.model_type} model; use seq_len <= {limit}")


def profile_batch(point: Point, model_config, num_labels: int, encoder: bool, device) -> dict:
    """The profile task's batch (bench.tasks.profile_setup), as fake tensors."""
    ids = torch.randint(0, model_config.vocab_size, (point.batch_size, point.seq_len), device=device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    batch["labels"] = torch.randint(0, num_labels, (point.batch_size,), device=device) if encoder else ids
    return batch
