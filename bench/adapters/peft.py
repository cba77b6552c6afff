"""PEFT's methods as sweep methods: `peft:<name>`, measured by the same rules as ours.

    methods = ["lora", "peft:lora", "peft:vera", "peft:pissa", "peft:eva"]
    [method_options."peft:eva"]
    lora_dropout = 0.0          # any field of the PEFT config class
    init_batches = 1            # harness option: training batches the data-driven init sees

`<name>` is a PeftType (lora, vera, vblora, fourierft, randlora, ...), or a LoRA variant that PEFT makes through
LoraConfig options: dora (use_dora), pissa, olora, eva, corda, lora_ga, loftq (init_lora_weights). `r` comes from
the sweep's ranks (FourierFT's and WaveFT's n_frequency); LoRA-type methods get lora_alpha = 2r unless set, like
ours; the target layers are ours (the model family's default) unless target_modules is set, so that ours and
PEFT's adapt the same layers.

Init is timed as ours: init_total_s is the whole of it; init_grad_s the data passes of EVA and CorDA (forward
passes; EVA's incremental SVD runs inside them, in forward hooks, and CorDA's preprocessing ends with the
eigendecomposition of its covariances: neither can be timed apart) and of LoRA-GA (forward and backward); init_svd_s the per-layer decompositions PEFT runs while making the layers (PiSSA's weight
SVD, OLoRA's QR, CorDA's and LoRA-GA's bases, MiCA's); init_inject_s the rest of get_peft_model. PEFT lives in
this module only: the harness reaches it through bench.adapters, like our own methods (ours.py).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from giva import batch_loss, synchronize
from giva.methods import METHODS
from giva.targets import default_targets

from ..models import get_entry, meta_model
from .ours import HARNESS_DEFAULTS

PREFIX = "peft:"
# get_peft_model moves weights with .to(), which fake tensors refuse
WHY_NOT_TRACEABLE = ("it cannot be traced with fake tensors (PEFT swaps real weights in); estimate our lora, vera and "
                     "giva, or run the point")
# LoRA variants by name: the LoraConfig options that make each.
LORA_VARIANTS = {
    "dora": {"use_dora": True},
    "pissa": {"init_lora_weights": "pissa"},  # or "pissa_niter_N" in the options: randomized SVD
    "olora": {"init_lora_weights": "olora"},
    "eva": {"init_lora_weights": "eva"},
    "corda": {"init_lora_weights": "corda"},
    "lora_ga": {"init_lora_weights": "lora_ga"},
    "loftq": {"init_lora_weights": "loftq"},
}
DATA_INITS = ("eva", "corda", "lora_ga")  # inits that read training batches
INFORMED_INITS = ("pissa", "olora", "loftq", *DATA_INITS)  # inits that read the base weights or the data
# Methods whose rank-like size is not called r.
RANK_FIELDS = {"fourierft": "n_frequency", "waveft": "n_frequency"}
HARNESS_OPTIONS = ("init_batches",)  # besides "ranks" and "train", which the sweep config takes out
# The per-layer init methods of PEFT's LoraLayer that decompose the base weight: timed as init_svd_s.
LAYER_DECOMPOSITIONS = ("pissa_init", "olora_init", "corda_init", "lora_ga_init", "mica_init")


@dataclass(frozen=True)
class PeftMethod:
    """What `peft:<name>` resolves to."""

    name: str  # as written in the sweep: "peft:pissa"
    peft_type: str  # the PeftType value: "LORA"
    variant_options: dict  # the LoraConfig options a LoRA variant sets; {} for a PeftType
    rank_field: str  # the config field the sweep's rank goes into

    @property
    def short_name(self) -> str:
        return self.name.removeprefix(PREFIX)

    @property
    def is_lora(self) -> bool:
        return self.peft_type == "LORA"

    @property
    def config_class(self):
        from peft import PEFT_TYPE_TO_CONFIG_MAPPING, PeftType

        return PEFT_TYPE_TO_CONFIG_MAPPING[PeftType(self.peft_type)]


def peft_names() -> list[str]:
    """Every name `peft:<name>` accepts: PEFT's types that adapt layers with a rank, and the LoRA variants."""
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING

    names = []
    for peft_type, config_class in PEFT_TYPE_TO_CONFIG_MAPPING.items():
        field_names = {f.name for f in dataclasses.fields(config_class)}
        name = peft_type.value.lower()
        if "target_modules" in field_names and RANK_FIELDS.get(name, "r") in field_names:
            names.append(name)
    return sorted(names) + list(LORA_VARIANTS)


def resolve(method: str) -> PeftMethod:
    """peft:<name> -> PeftMethod; an unknown name fails naming the close matches."""
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ValueError(f"method {method!r} needs PEFT: pip install peft") from None
    name = method.removeprefix(PREFIX)
    names = peft_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(PREFIX + c for c in close)}? " if close else ""
        raise ValueError(f"unknown PEFT method {method!r}; {hint}PEFT methods that adapt layers with a rank: "
                         f"{', '.join(names)}")
    if name in LORA_VARIANTS:
        return PeftMethod(method, "LORA", LORA_VARIANTS[name], "r")
    return PeftMethod(method, name.upper(), {}, RANK_FIELDS.get(name, "r"))


def check_method(method: str) -> None:
    resolve(method)


def harness_options(method: str, rank: int, options: dict) -> dict:
    """The sweep's options, with the harness's defaults where it sets none: LoRA's alpha = 2r, as for our LoRA."""
    defaults = {"lora_alpha": HARNESS_DEFAULTS["lora"].options(rank)["alpha"]} if resolve(method).is_lora else {}
    return {**defaults, **options}


def our_counterpart(method: str) -> str | None:
    """Our method a PEFT method shares its training defaults with: LoRA types our LoRA, VeRA our VeRA, else None."""
    spec = resolve(method)
    name = "lora" if spec.is_lora else spec.short_name
    return name if name in METHODS else None


def default_lr(method: str) -> float:
    """Our counterpart's learning rate (ours.HARNESS_DEFAULTS); a PEFT method without one needs its own."""
    name = our_counterpart(method)
    if name is None or name not in HARNESS_DEFAULTS:
        raise ValueError(f"no default learning rate for method {method!r}; set one: TrainSettings(lr=...), in a sweep "
                         f"[method_options.\"{method}\"] train = {{lr = ...}}")
    return HARNESS_DEFAULTS[name].lr


def describe(method: str) -> dict:
    """What the report needs to know of the method: its name for people, our method it is the same as (peft:lora
    is our lora), and where its init reads from (data, the base weights, or nothing)."""
    spec = resolve(method)
    init = spec.variant_options.get("init_lora_weights")
    same = spec.short_name if spec.short_name in METHODS else None
    return {"display_name": "PEFT " + (METHODS[same].display_name if same else spec.short_name), "same_as": same,
            "init": "data" if init in DATA_INITS else "weights" if init in INFORMED_INITS else "none"}


def names() -> list[str]:
    return [PREFIX + name for name in peft_names()]


@dataclass
class PeftAdapter:
    """A PEFT config ready to apply, and how many training batches its init reads."""

    spec: PeftMethod
    config: object  # a peft.PeftConfig
    init_batches: int
    seed = ""  # PEFT draws from torch's global seed, which the point sets
    accepts_train_step = False  # PEFT's inits run their batches through the model (and its head) themselves

    @property
    def method(self) -> str:
        return self.spec.name

    def apply(self, model: nn.Module, batches: list, loss_fn=None) -> nn.Module:
        """get_peft_model, with a data-driven init's passes over `batches`; returns the PeftModel."""
        return apply_peft(model, self, batches, loss_fn)

    def stats(self, model: nn.Module) -> dict:
        return peft_stats(model)

    def save(self, model: nn.Module, path: str) -> str:
        model.save_pretrained(path)
        return os.path.join(path, "adapter_model.safetensors")

    def unload(self, model: nn.Module) -> nn.Module:
        """The base model back, its layers restored (PEFT's unload, no merge)."""
        return model.unload()

    def check_fits(self, model_name: str) -> None:
        """Inject the method into the model built on the meta device (no weights): a method that cannot adapt the
        model's target layers fails here, before anything runs."""
        check_targets(self, model_name)


def make_adapter(method: str, rank: int, options: dict, seed: int = 0, trainable_modules=()) -> PeftAdapter:
    """The PEFT config of `method` at `rank`; unknown options fail naming the close matches."""
    spec = resolve(method)
    options = dict(options)
    config_class = spec.config_class
    known = [f.name for f in dataclasses.fields(config_class)]
    for key in options:
        if key not in known + list(HARNESS_OPTIONS):
            close = difflib.get_close_matches(key, known + list(HARNESS_OPTIONS), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(f"unknown option {key!r} for {method} ({config_class.__name__}); {hint}"
                             f"see the fields of peft.{config_class.__name__}")
    if spec.rank_field in options:
        raise ValueError(f"{method}: set the rank through the sweep's ranks, not {spec.rank_field}")
    values = {**spec.variant_options, **options, spec.rank_field: rank}
    init = values.get("init_lora_weights") if spec.is_lora else None  # peft:lora with init_lora_weights="eva" too
    init_batches = values.pop("init_batches", 1 if init in DATA_INITS else 0)
    if isinstance(init_batches, bool) or not isinstance(init_batches, int) or init_batches < 0:
        raise ValueError(f"init_batches={init_batches!r} of {method} must be a non-negative integer")
    if init in DATA_INITS and init_batches < 1:
        raise ValueError(f"{method} initializes from training data ({init}) but init_batches=0; give it "
                         "init_batches >= 1 (or use a data-free init such as peft:pissa)")
    if init == "loftq":
        from peft.import_utils import is_bnb_available

        if not (is_bnb_available() and torch.cuda.is_available()):
            raise ValueError(f"{method}: LoftQ quantizes the base weights with bitsandbytes on a GPU; install "
                             "bitsandbytes and run on cuda, or drop it")
    if trainable_modules and "modules_to_save" in known:
        values.setdefault("modules_to_save", list(trainable_modules))
    try:
        config = config_class(**sub_configs(spec, values))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{method}: PEFT refuses the options: {' '.join(str(e).split())}") from None
    return PeftAdapter(spec, config, init_batches)


def sub_configs(spec: PeftMethod, values: dict) -> dict:
    """The nested configs LoRA's data-driven inits need (EVA, CorDA, LoRA-GA), from a table or defaults."""
    if not spec.is_lora:
        return values
    from peft.tuners.lora.config import CordaConfig, EvaConfig, LoraGAConfig

    init = values.get("init_lora_weights")
    for key, kind, wanted in (("eva_config", EvaConfig, "eva"), ("corda_config", CordaConfig, "corda"),
                              ("lora_ga_config", LoraGAConfig, "lora_ga")):
        given = values.get(key)
        if isinstance(given, dict) or (given is None and init == wanted):
            values[key] = kind(**(given or {}))
    return values


# --- apply and measure ----------------------------------------------------------


def apply_peft(model: nn.Module, adapter: PeftAdapter, batches: list, loss_fn=None) -> nn.Module:
    from peft import get_peft_model

    config = copy.deepcopy(adapter.config)
    device = next(model.parameters()).device
    timings = {"grad_s": 0.0, "svd_s": 0.0}
    if config.target_modules is None:
        config.target_modules = default_targets(model)
    init = getattr(config, "init_lora_weights", None)
    synchronize(device)
    start = time.perf_counter()
    if init in ("corda", "lora_ga"):
        data_passes(model, config, batches, loss_fn)
        synchronize(device)
        timings["grad_s"] = time.perf_counter() - start
    with timed_layer_decompositions(timings):
        peft_model = get_peft_model(model, config)
    if init == "eva":
        from peft import initialize_lora_eva_weights

        synchronize(device)
        eva_start = time.perf_counter()
        initialize_lora_eva_weights(peft_model, dataloader=[forward_inputs(b) for b in batches],
                                    show_progress_bar=False)
        synchronize(device)
        timings["grad_s"] += time.perf_counter() - eva_start
    synchronize(device)
    timings["inject_s"] = time.perf_counter() - start - timings["grad_s"] - timings["svd_s"]
    peft_model.giva_bench_timings = timings
    return peft_model


def data_passes(model: nn.Module, config, batches: list, loss_fn=None) -> None:
    """What CorDA (forward passes, covariance, eigendecomposition) and LoRA-GA (gradients) do before get_peft_model."""
    if config.init_lora_weights == "corda":
        from peft.tuners.lora.corda import preprocess_corda

        def run_model():  # CorDA's hooks take one example per forward
            with torch.no_grad():
                for batch in batches:
                    inputs = forward_inputs(batch)
                    for i in range(len(inputs["input_ids"])):
                        model(**{k: v[i : i + 1] for k, v in inputs.items()})

        preprocess_corda(model, config, run_model=run_model)  # covariance passes and their eigendecomposition
    else:
        from peft.tuners.lora.loraga import preprocess_loraga

        def train_step():
            for batch in batches:
                (batch_loss(model, batch, loss_fn) / len(batches)).backward()

        preprocess_loraga(model, config, train_step)


def forward_inputs(batch: dict) -> dict:
    """The batch without labels that are not per token (EVA masks tokens by labels of the inputs' shape)."""
    labels = batch.get("labels")
    if labels is not None and labels.shape != batch["input_ids"].shape:
        return {k: v for k, v in batch.items() if k != "labels"}
    return batch


@contextmanager
def timed_layer_decompositions(timings: dict):
    """Add the time PEFT's LoraLayer spends in its weight decompositions (PiSSA's SVD, ...) to timings["svd_s"]."""
    from peft.tuners.lora.layer import LoraLayer

    originals = {name: getattr(LoraLayer, name) for name in LAYER_DECOMPOSITIONS if hasattr(LoraLayer, name)}

    def timed(original):
        def method(self, *args, **kwargs):
            device = self.get_base_layer().weight.device
            synchronize(device)
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                synchronize(device)
                timings["svd_s"] += time.perf_counter() - start
        return method

    for name, original in originals.items():
        setattr(LoraLayer, name, timed(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(LoraLayer, name, original)


def peft_stats(peft_model: nn.Module) -> dict:
    """adapter_stats' keys, read from PEFT's model."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = {name: m for name, m in peft_model.named_modules() if isinstance(m, BaseTunerLayer)}
    params, buffers, ranks = {}, {}, {}  # by address: VeRA's pair and VBLoRA's vector bank are shared by the layers
    for name, layer in layers.items():
        for param_name, p in layer.named_parameters():
            if p.requires_grad and not param_name.startswith("base_layer."):
                params[p.data_ptr()] = p.numel()
        for buffer_name, buf in layer.named_buffers():
            if not buffer_name.startswith("base_layer."):
                buffers[buf.data_ptr()] = buf.numel() * buf.element_size()
        r = getattr(layer, "r", None)
        r = r.get("default") if isinstance(r, dict) else r
        if isinstance(r, int):
            ranks[name.removeprefix("base_model.model.")] = r
    config = peft_model.peft_config["default"]
    configured = getattr(config, "r", None)
    trainable, total = peft_model.get_nb_trainable_parameters()
    timings = getattr(peft_model, "giva_bench_timings", {})
    return {
        "trainable_params": trainable,
        "adapter_params": sum(params.values()),
        "total_params": total,
        "adapted_layers": len(layers),
        "effective_ranks": ranks,
        "rank_min": min(ranks.values()) if ranks else None,
        "rank_max": max(ranks.values()) if ranks else None,
        "capped_layers": sum(r < configured for r in ranks.values()) if configured else 0,
        "adapter_buffer_bytes": sum(buffers.values()),
        "init_grad_s": timings.get("grad_s", 0.0),
        "init_svd_s": timings.get("svd_s", 0.0),
        "init_inject_s": timings.get("inject_s", 0.0),
    }


# --- the check before a sweep runs ------------------------------------------------


def check_targets(adapter: PeftAdapter, model_name: str) -> None:
    from peft import get_peft_model

    try:
        model = meta_model(get_entry(model_name))
    except (OSError, ValueError):
        return  # a hub id this machine cannot read offline: the point itself will say so
    config = copy.deepcopy(adapter.config)
    if getattr(config, "init_lora_weights", True) not in (True, False):
        config.init_lora_weights = True  # the layers are the same; data-driven inits need real weights
    if config.target_modules is None:
        config.target_modules = default_targets(model)
    config.modules_to_save = None
    try:
        with warnings.catch_warnings():  # PEFT's notes on the meta model are not the user's business here
            warnings.simplefilter("ignore")
            get_peft_model(model, config, low_cpu_mem_usage=True)
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as e:
        raise ValueError(f"{adapter.method} cannot adapt {model_name}'s layers {config.target_modules!r}: "
                         f"{' '.join(str(e).split())[:300]}") from None
