"""`run_bench.py estimate`: FLOPs and tensor memory of every point of a sweep, predicted without running it.

    payload = estimate_payload(dataclasses.asdict(point), timeout_s)   # the worker an executor is handed

Each point is traced once under FakeTensorMode: tensors carry shapes and dtypes but no
data, so nothing is allocated or computed and a 70B model traces on a laptop. The model is
built from its config, the adapter applied (GiVA's gradient pass and SVD included, over
num_grad_batches batches), and one training step run with the code a real point runs
(bench.run.train.training_step, AdamW state already there), under the same counters
(bench.measure.counters). Rows go to results.csv with estimated = 1; timings stay empty.

Every point is traced as the profile task's step at the point's shapes (tasks/profile.py's
batch): random tokens of batch_size x seq_len, causal-LM loss for decoders, a classification
head (task option num_labels) for encoders; a task's data is not read (nor an init_task's: its
batches have the same shapes). Without CUDA the trace
runs on CPU tensors: the bytes of parameters, gradients, optimizer state and activations do not
depend on the device; attention is the one kernel that can differ (flash attention on CPU and
CUDA both keep the output and its log-sum-exp).
"""

from __future__ import annotations

import json
import time
import warnings

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ..adapters import make_adapter, why_not_traceable
from ..config.sweep import Point
from ..config.train import TrainSettings
from ..measure.counters import ScalarsReadAsOne, trace_costs
from ..models import build_config, build_model, get_entry
from ..tasks import TaskOptions, get_task
from ..tasks.base import head_modules
from ..tasks.profile import profile_batch
from .rows import adapter_columns, cost_columns, point_row
from .train import make_optimizer, optimizer_state_bytes, training_step

LEARNED_POSITIONS = ("bert", "roberta", "distilbert", "gpt2", "opt")  # families that cannot go past their positions


def estimate_payload(point: dict, timeout_s: int = 0, env: dict | None = None, assume_steps: int = 0) -> dict:
    """The worker of `estimate`: a point traced in this process -> its payload (no log, no curve)."""
    return {"row": estimate_point(Point(**point), assume_steps), "log": "", "curve_csv": ""}


def estimate_point(point: Point, assume_steps: int = 0) -> dict:
    """One point traced under FakeTensorMode -> a results row (estimated = 1); any failure is a failed row.
    assume_steps: the fine-tuning length init_flops_share assumes (0: the point's own steps)."""
    return point_row(point, lambda: trace_point(point, assume_steps), estimated=True)


def trace_point(point: Point, assume_steps: int = 0) -> dict:
    if why_not_traceable(point.method):
        raise ValueError(f"{point.method}: {why_not_traceable(point.method)}")
    entry = get_entry(point.model)
    head = get_task("profile").head_for(entry)
    encoder = head == "seq_cls"
    options = TaskOptions.from_dict(json.loads(point.task_options))
    check_positions(build_config(entry, head), point.seq_len)
    device = torch.device(point.device if point.device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    settings = TrainSettings(**json.loads(point.train))
    start = time.perf_counter()
    with FakeTensorMode(), ScalarsReadAsOne(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' notes on random init and the like
        torch.manual_seed(point.seed)
        with torch.device(device):
            model = build_model(entry, head, point.dtype, options.num_labels).eval()
        model_params = sum(p.numel() for p in model.parameters())
        trainable_modules = head_modules(model) if encoder else []
        adapter = make_adapter(point.method, point.rank, point.config_options, seed=point.seed,
                               trainable_modules=trainable_modules)  # as a real point makes it
        num_init = adapter.init_batches
        batches = [profile_batch(point.batch_size, point.seq_len, model.config.vocab_size, options.num_labels, encoder,
                                 device) for _ in range(max(1, num_init))]
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
        state_bytes = optimizer_state_bytes(opt.optimizer)
    # the steps a real point would train: the sweep's, or warmup + timed where the task only times steps (profile)
    own_steps = settings.steps if get_task(point.task).evaluates else point.warmup_steps + point.timed_steps
    costs = {**cost_columns(init, step, assume_steps or own_steps, "assumed" if assume_steps else "point"),
             "cost_trace_s": round(time.perf_counter() - start, 3)}  # the whole trace
    return dict(model_params=model_params, **adapter_columns(stats, point.rank), optimizer_state_bytes=state_bytes,
                **costs)


def check_positions(model_config, seq_len: int) -> None:
    """A fake trace does not index real tables, so a sequence past learned position embeddings must be caught here."""
    if model_config.model_type in LEARNED_POSITIONS:
        limit = getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)
        if limit and seq_len > limit:
            raise ValueError(f"seq_len {seq_len} is longer than the {limit} positions of this "
                             f"{model_config.model_type} model; use seq_len <= {limit}")
