"""LoRA, VeRA and GiVA adapters for any PyTorch / transformers model.

    from giva import GivaConfig, apply_adapter
    model = apply_adapter(model, GivaConfig(r=8), data=train_batches)
"""

from .giva import GivaConfig
from .inject import (adapter_disabled, apply_adapter, merge_adapter, set_adapter_enabled, unload_adapter,
                     unmerge_adapter)
from .io import load_adapter, save_adapter
from .lora import LoraConfig
from .methods import METHODS, MethodSpec, get_method, make_config, register_method
from .running import batch_loss, frozen, synchronize
from .stats import adapter_stats
from .vera import VeraConfig

__all__ = [
    "LoraConfig", "VeraConfig", "GivaConfig", "make_config", "METHODS", "MethodSpec", "register_method", "get_method",
    "apply_adapter", "merge_adapter", "unmerge_adapter", "unload_adapter",
    "set_adapter_enabled", "adapter_disabled", "save_adapter", "load_adapter", "adapter_stats",
    "batch_loss", "frozen", "synchronize",
]
