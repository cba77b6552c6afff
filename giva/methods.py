"""The registry of adapter methods: one MethodSpec per method, what defines it for apply, save and load.

A new method is one module (its config class and layer builder) plus one `register_method(MethodSpec(...))`
line below; apply_adapter, save_adapter and load_adapter read the spec, so nothing else needs to learn the
method's name. How a benchmark trains a method (learning rates, options derived from the rank) is the
benchmark's choice, not the method's: bench/adapters/ours.py keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

from . import giva, lora, vera
from .config import AdapterConfig


def _no_batches(config: AdapterConfig) -> int:
    return 0


def _saves_no_shared(config: AdapterConfig) -> bool:
    return False


@dataclass(frozen=True)
class PeftLayout:
    """A method's checkpoints in PEFT's layout (giva/peft_format.py), for the methods PEFT has too."""

    peft_type: str  # PEFT's PeftType value: "LORA"
    layer_keys: dict[str, str]  # our tensor name in a layer -> PEFT's key suffix after base_model.model.<layer>.
    to_peft: Callable[[AdapterConfig], dict]  # PEFT config fields beyond r, target_modules, modules_to_save, fan_in_fan_out
    from_peft: Callable[[dict], dict]  # our options from PEFT's adapter_config.json
    shared_keys: dict[str, str] = field(default_factory=dict)  # our shared tensor name -> PEFT's key (VeRA's pair)


@dataclass(frozen=True)
class MethodSpec:
    """One adapter method, declared once.

    build_layers(config, targets, *, ranks, model, data, loss_fn, saved, timings) -> {name: AdapterLayer}
    makes the layers (from `saved` tensors when loading a checkpoint).
    """

    name: str  # the registry key, equal to config_class.method
    display_name: str  # how reports and tables write it ("LoRA")
    config_class: type[AdapterConfig]
    build_layers: Callable
    # Batches of training data the init consumes (GiVA's gradient batches); 0: the init needs no data.
    init_batches: Callable[[AdapterConfig], int] = _no_batches
    # Whether checkpoints hold the layers' shared frozen tensors (VeRA's pair, unless regenerated from its seed).
    saves_shared: Callable[[AdapterConfig], bool] = _saves_no_shared
    # PEFT's checkpoint layout of the method; None: PEFT has no such type (GiVA), checkpoints stay in our format.
    peft: PeftLayout | None = None

    def __post_init__(self):
        problems = []
        if not isinstance(self.name, str) or not self.name.isidentifier():
            problems.append(f"name {self.name!r} must be a lower-case identifier")
        if not (isinstance(self.config_class, type) and issubclass(self.config_class, AdapterConfig)):
            problems.append("config_class must be a subclass of giva.config.AdapterConfig")
        elif getattr(self.config_class, "method", None) != self.name:
            problems.append(f"config_class.method must equal the name {self.name!r}")
        if not isinstance(self.display_name, str) or not self.display_name:
            problems.append("display_name must be a non-empty string")
        for name in ("build_layers", "init_batches", "saves_shared"):
            if not callable(getattr(self, name)):
                problems.append(f"{name} must be callable")
        if self.peft is not None and not isinstance(self.peft, PeftLayout):
            problems.append("peft must be a giva.methods.PeftLayout or None")
        if problems:
            raise ValueError(f"MethodSpec {self.name!r}: " + "; ".join(problems))


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method to the registry (a name is registered once)."""
    if not isinstance(spec, MethodSpec):
        raise ValueError(f"register_method takes a MethodSpec, got {type(spec).__name__}")
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is already registered")
    METHODS[spec.name] = spec
    return spec


register_method(MethodSpec("lora", "LoRA", lora.LoraConfig, lora.build_layers,
                           peft=PeftLayout("LORA", lora.PEFT_KEYS, lora.to_peft, lora.from_peft)))
register_method(MethodSpec("vera", "VeRA", vera.VeraConfig, vera.build_layers,
                           saves_shared=lambda config: config.save_projection,
                           peft=PeftLayout("VERA", vera.PEFT_KEYS, vera.to_peft, vera.from_peft, vera.PEFT_SHARED_KEYS)))
register_method(MethodSpec("giva", "GiVA", giva.GivaConfig, giva.build_layers,
                           init_batches=lambda config: config.num_grad_batches))


def get_method(method: str) -> MethodSpec:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method]


def make_config(method: str, **options) -> AdapterConfig:
    """make_config("giva", r=8, basis="Vr"): errors name the unknown method or option."""
    config_class = get_method(method).config_class
    known = [f.name for f in fields(config_class)]
    unknown = [k for k in options if k not in known]
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for method {method}; known options: {', '.join(known)}")
    return config_class(**options)


def spec_for(config: AdapterConfig) -> MethodSpec:
    """The spec of a config object; refuses configs of unregistered classes."""
    spec = METHODS.get(getattr(config, "method", None))
    if spec is None or not isinstance(config, spec.config_class):
        raise ValueError(f"unknown adapter config {type(config).__name__}; use one of "
                         f"{', '.join(s.config_class.__name__ for s in METHODS.values())} or register_method() yours")
    return spec
