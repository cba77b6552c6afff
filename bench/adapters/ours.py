"""Our methods (giva's registry: lora, vera, giva, and any registered one) behind the harness's Adapter protocol."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from giva import adapter_stats, apply_adapter, get_method, make_config, save_adapter, unload_adapter
from giva.config import AdapterConfig
from giva.methods import METHODS
from giva.targets import find_targets, linear_shape

from ..models import get_entry, meta_model


WHY_NOT_TRACEABLE = ""  # our layers run under FakeTensorMode: `estimate` traces them


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
    return {**get_method(method).harness_defaults(rank), **options}


def make_adapter(method: str, rank: int, options: dict, seed: int, trainable_modules=()) -> OurAdapter:
    config = make_config(method, r=rank, trainable_modules=list(trainable_modules), **options)
    if config.seed_option and config.seed_option not in options:  # the sweep seed seeds the adapter's random parts
        setattr(config, config.seed_option, seed)
    return OurAdapter(config)


def default_lr(method: str) -> float:
    check_method(method)
    return METHODS[method].default_lr


def describe(method: str) -> dict:
    spec = get_method(method)
    return {"display_name": spec.display_name, "same_as": method,
            "init": "data" if spec.init_batches(spec.config_class()) else "none"}


def names() -> list[str]:
    return list(METHODS)
