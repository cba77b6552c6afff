"""`run_bench.py estimate`: FLOPs and tensor memory of every point of a sweep, predicted without running it.

    payload = estimate_payload(dataclasses.asdict(point), timeout_s)   # the worker an executor is handed

Each point is traced once under FakeTensorMode: tensors carry shapes and dtypes but no
data, so nothing is allocated or computed and a 70B model traces on a laptop. The task is
set up as a real point sets it up (bench.tasks.setup_task), with the model built under
FakeTensorMode instead of loaded: the same head (classes from the data, a regression
output), the same trained modules, and the same batch stream, from which the trace takes the
batches a real point traces: the first ones for the init (GiVA's gradient batches) and the one
after the training steps for the step (with padding="longest" its length is its longest
text's). The adapter is applied (GiVA's gradient pass and SVD included) and one training step
run with the code a real point runs (bench.run.train.training_step, AdamW state already
there), under the same counters (bench.measure.counters). Rows go to results.csv with
estimated = 1; timings stay empty; cost_trace_batch says which batch was traced.

A task whose setup needs real weights (planted: its teacher's targets) is traced as the profile
task at the point's shapes (random tokens, causal-LM loss for decoders, a classification head
for encoders, random pixels at the model's image size for vision models), and cost_trace_batch says "as profile". An init_task's gradient batches are
traced as the point's own task's first batches (same batch shapes; its head's classes may
differ). Without CUDA the trace runs on CPU
tensors: the bytes of parameters, gradients, optimizer state and activations do not depend on
the device; attention is the one kernel that can differ (flash attention on CPU and CUDA both
keep the output and its log-sum-exp).
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
from ..tasks import get_task, setup_task
from ..tasks.base import input_shape
from .rows import adapter_columns, cost_columns, point_row
from .train import make_optimizer, optimizer_state_bytes, train_settings, training_step

LEARNED_POSITIONS = ("bert", "roberta", "distilbert", "gpt2", "opt")  # families that cannot go past their positions


def estimate_payload(point: dict, timeout_s: int = 0, env: dict | None = None) -> dict:
    """A point traced in this process -> its payload (no log, no curve): how sweep.trace_points traces with
    --in-process, on one core, or for a few small models."""
    return {"row": estimate_point(Point(**point)), "log": "", "curve_csv": ""}


def estimate_point(point: Point) -> dict:
    """One point traced under FakeTensorMode -> a results row (estimated = 1); any failure is a failed row.
    point.assume_steps: the fine-tuning length init_flops_share assumes (0: the point's own steps)."""
    return point_row(point, lambda: trace_point(point), estimated=True)


def trace_point(point: Point) -> dict:
    if why_not_traceable(point.method):
        raise ValueError(f"{point.method}: {why_not_traceable(point.method)}")
    task = point.task if get_task(point.task).traceable else "profile"
    entry = get_entry(point.model)
    head = get_task(task).head_for(entry)
    if head != "img_cls":
        check_positions(build_config(entry, head), point.seq_len)
    device = torch.device(point.device if point.device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    mode = FakeTensorMode()

    def build_fake(entry, head, *, dtype, device, num_labels=None, seed=0):
        """models.load_model's stand-in: the model from its config, under FakeTensorMode (shapes, no weights)."""
        torch.manual_seed(seed)
        with mode, torch.device(device), no_init_weights(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transformers' notes on random init and the like
            model = build_model(entry, head, dtype, num_labels).eval()
            model.tie_weights()  # init_weights, skipped, is also where the output embedding is tied to the input
        return model

    setup = setup_task(task, point.model, batch_size=point.batch_size, seq_len=point.seq_len, seed=point.seed,
                       device=str(device), dtype=point.dtype, data_dir=point.data_dir or None,
                       options=json.loads(point.task_options), load=build_fake)
    model = setup.model
    model_params = sum(p.numel() for p in model.parameters())
    adapter = make_adapter(point.method, point.rank, point.config_options, seed=point.seed,
                           trainable_modules=setup.trainable_modules)  # as a real point makes it
    num_init = adapter.init_batches
    settings = train_settings(point, setup)
    # the batches a real point traces: its init's, and the one after its training steps (real tensors, made fake)
    drawn = [next(setup.train_batches) for _ in range(settings.steps + 1)]
    with mode, ScalarsReadAsOne(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init_batches = [fake_batch(mode, b) for b in drawn[:num_init]]
        step_batch = fake_batch(mode, drawn[settings.steps])
        torch.manual_seed(point.seed)
        adapted = []
        init = trace_costs(model, lambda: adapted.append(adapter.apply(model, init_batches, setup.loss_fn)))
        model = adapted[0]
        stats = adapter.stats(model)
        opt = make_optimizer(model, setup.trainable_modules, settings, point.method)
        for param in opt.params:  # AdamW's state, as after the timed steps of a real point
            param.grad = torch.zeros_like(param)
        opt.optimizer.step()
        opt.optimizer.zero_grad(set_to_none=True)
        model.train()
        step = trace_costs(model, lambda: training_step(model, step_batch, setup.loss_fn, opt, settings.max_grad_norm),
                           (opt.optimizer, step_batch))
        state_bytes = optimizer_state_bytes(opt.optimizer)
    # the steps a real point trains: the traced task's settings (warmup + timed for profile), or for a task traced as
    # profile (planted), the sweep's own steps
    own_steps = settings.steps if task == point.task else TrainSettings(**json.loads(point.train)).steps
    costs = {**cost_columns(init, step, input_shape(step_batch), point.assume_steps or own_steps,
                            "assumed" if point.assume_steps else "point", "" if task == point.task else task),
             "cost_trace_s": round(time.perf_counter() - start, 3)}  # the whole trace
    return dict(model_params=model_params, **adapter_columns(stats, point.rank), optimizer_state_bytes=state_bytes,
                **costs)


def no_init_weights():
    """transformers' switch that skips weight initialization (and with it the weight tying: call tie_weights after):
    a fake tensor has no values to initialize, and some initializers loop on a value read (trunc_normal_'s
    rejection sampling, used by ViT and DINOv2, would never end under ScalarsReadAsOne)."""
    try:
        from transformers.initialization import no_init_weights as skip
    except ImportError:  # transformers 4
        from transformers.modeling_utils import no_init_weights as skip
    return skip()


def fake_batch(mode: FakeTensorMode, batch: dict) -> dict:
    """A batch of real tensors as fake ones of the same shapes and dtypes."""
    return {key: mode.from_tensor(value) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def check_positions(model_config, seq_len: int) -> None:
    """A fake trace does not index real tables, so a sequence past learned position embeddings must be caught here."""
    if model_config.model_type in LEARNED_POSITIONS:
        limit = getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)
        if limit and seq_len > limit:
            raise ValueError(f"seq_len {seq_len} is longer than the {limit} positions of this "
                             f"{model_config.model_type} model; use seq_len <= {limit}")
