"""The training loop for adapted models: AdamW, warmup + decay, clipping, timed steps, periodic evaluation.

    torch.manual_seed(seed)
    result = train(model, setup, TrainSettings(steps=300, eval_every=50), method="giva", device="cpu")

The settings are bench.config.train.TrainSettings; one training step (training_step) is the same code whether
timed here, traced for costs, or traced under FakeTensorMode by `estimate`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from giva import batch_loss, synchronize
from giva.targets import name_matches

from ..adapters import default_lr
from ..config.sweep import Point
from ..config.train import DEFAULT_HEAD_LR, TrainSettings
from ..measure.clocks import StepTimer
from ..measure.counters import Costs, trace_costs
from ..tasks import TaskSetup
from ..tasks.base import input_shape


@dataclass
class TrainResult:
    step_times_ms: list[float]  # one per step: forward, backward, clip, optimizer, scheduler (not the batch fetch)
    losses: list[float]
    curve: list[dict] = field(default_factory=list)  # {step, eval_loss, eval_<metric>...}; step 0 = before training
    eval_metric: str = ""  # the task's own metric (setup.metric): what eval_score* hold
    eval_score_before: float | None = None
    eval_score: float | None = None  # after the last step
    eval_score_best: float | None = None  # best of the evaluations during and after training
    eval_scores: dict = field(default_factory=dict)  # every metric that fits the task, after the last step
    eval_accuracy_before: float | None = None  # the eval_accuracy* fields: where accuracy fits the task
    eval_accuracy: float | None = None
    eval_accuracy_best: float | None = None
    eval_loss: float | None = None  # after the last step
    train_steps: int = 0
    train_time_s: float = 0.0  # wall time of the loop, batch fetches included, evaluation excluded
    optimizer_state_bytes: int = 0
    lr: float = 0.0  # the adapter's peak learning rate, resolved (settings.lr or the method's default)
    head_lr: float | None = None  # the head's, when trainable_modules has parameters; None otherwise
    step_costs: Costs | None = None  # FLOPs and tensor bytes of one more, untimed step (train(trace_step=True))
    step_batch_shape: tuple = ()  # its batch's input shape: (B, T) for text (with padding="longest" T is its longest
    # text's), (B, C, H, W) for images


class NonFiniteLoss(ValueError):
    """The loss became NaN or inf."""


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base lr at `step` (0-based): linear warmup, then linear / cosine decay to 0, or constant."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 1.0 - progress) if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, trainable_modules: list[str], lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    """Adapter parameters at lr, parameters of trainable_modules (a head) at head_lr."""
    adapter, head = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            module_name = name.rpartition(".")[0]
            in_head = trainable_modules and any(
                name_matches(prefix, trainable_modules) for prefix in _prefixes(module_name))
            (head if in_head else adapter).append(param)
    if not adapter and not head:
        raise ValueError("the model has no trainable parameters; apply an adapter first (giva.apply_adapter)")
    groups = [{"params": adapter, "lr": lr, "name": "adapter"}] if adapter else []
    return groups + ([{"params": head, "lr": head_lr, "name": "head"}] if head else [])


def _prefixes(module_name: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']: a parameter belongs to a named module or any module above it."""
    parts = module_name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass
class Optimizer:
    """AdamW over the adapter (lr) and any trained head (head_lr), its schedule, and the parameters it updates."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    params: list[torch.Tensor]
    lr: float
    head_lr: float | None  # None when nothing but the adapter trains


def make_optimizer(model: nn.Module, trainable_modules: list[str], settings: TrainSettings, method: str) -> Optimizer:
    lr = settings.lr or default_lr(method)
    head_lr = settings.head_lr or DEFAULT_HEAD_LR
    optimizer = torch.optim.AdamW(param_groups(model, trainable_modules, lr, head_lr, settings.weight_decay),
                                  weight_decay=settings.weight_decay)
    warmup = math.ceil(settings.warmup_ratio * settings.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, settings.steps, warmup, settings.schedule))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    has_head = any(group["name"] == "head" for group in optimizer.param_groups)
    return Optimizer(optimizer, scheduler, params, lr, head_lr if has_head else None)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state tensors (AdamW: two moments per trainable parameter and a step count)."""
    return sum(t.numel() * t.element_size() for state in optimizer.state.values() for t in state.values()
               if isinstance(t, torch.Tensor))


def training_step(model: nn.Module, batch, loss_fn, opt: Optimizer, max_grad_norm: float) -> torch.Tensor:
    """Forward, backward, clip, AdamW, schedule, gradients freed: one step, as timed and as traced."""
    loss = batch_loss(model, batch, loss_fn)
    loss.backward()
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(opt.params, max_grad_norm)
    opt.optimizer.step()
    opt.scheduler.step()
    opt.optimizer.zero_grad(set_to_none=True)
    return loss


def train(model: nn.Module, setup: TaskSetup, settings: TrainSettings, *, method: str, device,
          progress: Callable[[int, float], None] | None = None, trace_step: bool = False) -> TrainResult:
    """Train the adapter (and setup.trainable_modules) for settings.steps; the caller seeds torch first.

    trace_step: after the last step, one more, untimed, traced for FLOPs and tensor bytes (result.step_costs).
    """
    device = torch.device(device)
    settings = settings.resolved(setup.steps_per_epoch)  # epochs -> steps
    opt = make_optimizer(model, setup.trainable_modules, settings, method)
    lr, head_lr = opt.lr, opt.head_lr or DEFAULT_HEAD_LR  # for messages
    result = TrainResult(step_times_ms=[], losses=[], lr=opt.lr, head_lr=opt.head_lr)
    timer = StepTimer(device)
    eval_s = 0.0

    def evaluate(step: int) -> None:
        nonlocal eval_s
        start = time.perf_counter()
        metrics = setup.evaluate(model)
        result.curve.append({"step": step, **{f"eval_{name}": value for name, value in metrics.items()}})
        eval_s += time.perf_counter() - start

    synchronize(device)
    loop_start = time.perf_counter()
    if setup.evaluate is not None:
        evaluate(0)
    for step in range(1, settings.steps + 1):
        batch = next(setup.train_batches)
        model.train()
        timer.start()
        loss = training_step(model, batch, setup.loss_fn, opt, settings.max_grad_norm)
        timer.stop()
        loss_value = loss.item()  # after stop: on a GPU this sync is not part of the step's time
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(f"the loss is {loss_value} at step {step} (lr {lr:g}, head_lr {head_lr:g}); "
                                "try a lower lr, e.g. TrainSettings(lr=...), or check the data")
        result.losses.append(loss_value)
        if progress is not None:
            progress(step, loss_value)
        if setup.evaluate is not None and (step == settings.steps or (settings.eval_every and step % settings.eval_every == 0)):
            model.eval()
            evaluate(step)
    synchronize(device)
    result.train_time_s = time.perf_counter() - loop_start - eval_s
    if trace_step:  # after the clock stopped: it cannot change the timed steps
        batch = next(setup.train_batches)
        model.train()
        result.step_costs = trace_costs(model, lambda: training_step(model, batch, setup.loss_fn, opt,
                                                                      settings.max_grad_norm), (opt.optimizer, batch))
        result.step_batch_shape = input_shape(batch)
    model.eval()

    result.step_times_ms = timer.times_ms()
    result.train_steps = settings.steps
    result.optimizer_state_bytes = optimizer_state_bytes(opt.optimizer)
    if result.curve:
        result.eval_metric = setup.metric
        result.eval_loss = result.curve[-1]["eval_loss"]
        result.eval_scores = {k.removeprefix("eval_"): v for k, v in result.curve[-1].items() if k not in ("step", "eval_loss")}
        for name, metric in (("score", setup.metric), ("accuracy", "accuracy")):
            key = f"eval_{metric}"
            if key in result.curve[0]:
                setattr(result, f"eval_{name}_before", result.curve[0][key])
                setattr(result, f"eval_{name}", result.curve[-1][key])
                setattr(result, f"eval_{name}_best", max(point[key] for point in result.curve[1:]))
    return result


def train_settings(point: Point, setup: TaskSetup) -> TrainSettings:
    """The point's training: its train settings, or warmup + timed steps where the task has no evaluation (profile).
    The traced step's batch is the stream's next after these steps (run/estimate.py draws the same)."""
    settings = TrainSettings(**json.loads(point.train)).resolved(setup.steps_per_epoch)
    if setup.evaluate is None:
        settings.steps = point.warmup_steps + point.timed_steps
    if settings.steps <= point.warmup_steps:
        raise ValueError(f"train steps {settings.steps} leave none to time after {point.warmup_steps} warmup steps; raise steps")
    return settings
