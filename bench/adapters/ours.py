"""Our methods (giva's registry: lora, vera, giva, and any registered one) behind the harness's Adapter protocol,
and how the harness trains each of them when a sweep does not say (HARNESS_DEFAULTS)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from giva import adapter_stats, apply_adapter, get_method, make_config, save_adapter, unload_adapter
from giva.config import AdapterConfig
from giva.methods import METHODS
from giva.targets import find_targets, linear_shape

from ..models import get_entry, meta_model


WHY_NOT_TRACEABLE = ""  # our layers run under FakeTensorMode: `estimate` traces them


def _no_options(rank: int) -> dict:
    return {}


@dataclass(frozen=True)
class HarnessDefaults:
    """What the harness sets for one of our methods where a sweep sets nothing."""

    lr: float  # the adapter learning rate
    options: Callable[[int], dict] = _no_options  # method options derived from the rank

    def __post_init__(self):
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"HarnessDefaults lr={self.lr!r} must be a positive number")
        if not callable(self.options):
            raise ValueError("HarnessDefaults options must be callable: rank -> {option: value}")


# Learning rates: VeRA's and GiVA's vectors need a large step (the GiVA authors used 1e-2 on every task,
# docs/adapters.md); LoRA's matrices train at ~5e-4 in long runs, 1e-3 suits the short runs of a sweep.
# Measured here (MiniLM, SST-2, 80 steps of batch 16, head at 1e-2, 200 dev examples, 54.5% before):
# LoRA r8 1e-3 -> 82.5%, GiVA r8 1e-2 -> 75.0% (2e-2 -> 79.5%), VeRA r256 1e-2 -> 71.5%.
# LoRA's alpha = 2r is the GiVA paper's ratio. A method registered in giva later gets an entry here to have
# defaults; without one, its sweep must set lr (and it gets no rank-derived options).
HARNESS_DEFAULTS: dict[str, HarnessDefaults] = {
    "lora": HarnessDefaults(lr=1e-3, options=lambda r: {"alpha": 2 * r}),
    "vera": HarnessDefaults(lr=1e-2),
    "giva": HarnessDefaults(lr=1e-2),
}


@dataclass
class OurAdapter:
    """One of giva's methods, configured at a rank."""

    config: AdapterConfig
    accepts_train_step = True  # apply_adapter takes a train_step(model) -> loss as GiVA's data

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def seed(self) -> int | str:
        """The seed of the adapter's random parts (GiVA's B and SVD sketch, VeRA's projections); "" for none."""
        return getattr(self.config, self.config.seed_option) if self.config.seed_option else ""

    @property
    def init_batches(self) -> int:
        return get_method(self.config.method).init_batches(self.config)

    def apply(self, model: nn.Module, data, loss_fn=None) -> nn.Module:
        return apply_adapter(model, self.config, data=data or None, loss_fn=loss_fn)

    def stats(self, model: nn.Module) -> dict:
        return adapter_stats(model)

    def save(self, model: nn.Module, path: str) -> str:
        return save_adapter(model, path)

    def unload(self, model: nn.Module) -> nn.Module:
        """The base model back, as it was before apply."""
        return unload_adapter(model)

    def check_fits(self, model_name: str) -> None:
        """Targets and ranks resolved on the model built without weights: a rank above a layer's limit (LoRA:
        min(out, in)) or targets that match no layer fail here, once, instead of in every point."""
        try:
            model = meta_model(get_entry(model_name))
        except (OSError, ValueError):
            return  # a checkpoint this machine cannot read: models.check_available or the point itself says why
        try:
            targets = find_targets(model, self.config.target_modules, exclude=self.config.trainable_modules)
            for name, layer in targets.items():
                self.config.check_layer_rank(name, *linear_shape(layer))
        except ValueError as e:
            raise ValueError(f"model {model_name}: {e}") from None


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)} or peft:<name>")


def harness_options(method: str, rank: int, options: dict) -> dict:
    """The sweep's options, with the method's harness defaults where it sets none (LoRA: alpha = 2r)."""
    get_method(method)  # an unknown method fails here
    defaults = HARNESS_DEFAULTS.get(method)
    return {**(defaults.options(rank) if defaults else {}), **options}


def make_adapter(method: str, rank: int, options: dict, seed: int, trainable_modules=()) -> OurAdapter:
    config = make_config(method, r=rank, trainable_modules=list(trainable_modules), **options)
    if config.seed_option and config.seed_option not in options:  # the sweep seed seeds the adapter's random parts
        setattr(config, config.seed_option, seed)
    return OurAdapter(config)


def default_lr(method: str) -> float:
    check_method(method)
    if method not in HARNESS_DEFAULTS:
        raise ValueError(f"no default learning rate for method {method!r}; set one: TrainSettings(lr=...), in a sweep "
                         f"[method_options.\"{method}\"] train = {{lr = ...}}, or give it "
                         f"bench.adapters.ours.HARNESS_DEFAULTS[{method!r}] = HarnessDefaults(lr=...)")
    return HARNESS_DEFAULTS[method].lr


def describe(method: str) -> dict:
    spec = get_method(method)
    return {"display_name": spec.display_name, "same_as": method,
            "init": "data" if spec.init_batches(spec.config_class()) else "none"}


def names() -> list[str]:
    return list(METHODS)
