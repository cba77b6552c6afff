"""Fields every adapter config shares, and their checks."""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar


@dataclass
class AdapterConfig:
    method: ClassVar[str]
    # The option that seeds the adapter's random parts (GiVA's seed, VeRA's projection_seed); None: no such option.
    seed_option: ClassVar[str | None] = None
    r: int = 8
    # Exact names or dotted suffixes (a list), or one regex matched against the
    # whole module name (a string). None: the model family's default.
    target_modules: str | list[str] | None = None
    dropout: float = 0.0
    # Modules trained in full beside the adapter (a classification head, say).
    trainable_modules: list[str] = field(default_factory=list)

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"rank r={self.r!r} must be a positive integer, for example r=8")
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)
        if isinstance(self.trainable_modules, str):  # one name, not its letters
            self.trainable_modules = [self.trainable_modules]
        self.trainable_modules = list(self.trainable_modules)
        check_field_types(self, f"{self.method} option")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1)")

    def check_layer_rank(self, name: str, out_features: int, in_features: int) -> int:
        """The rank this layer gets; raises where the method forbids the configured one."""
        return self.r

    def to_dict(self) -> dict:
        """The options a checkpoint keeps: every field but those marked field(metadata={"saved": False}) (run-time
        settings such as GiVA's grad_cache, which say nothing about the adapter)."""
        saved = {f.name for f in fields(self) if f.metadata.get("saved", True)}
        return {"method": self.method, **{k: v for k, v in asdict(self).items() if k in saved}}


def check_field_types(obj, what: str) -> None:
    """Raise a one-line ValueError where a dataclass field's value does not fit its annotation.

    Sweep files are TOML, so `alpha = "x"` or `ranks = 16` arrive here as the wrong type;
    catching them at construction keeps them from failing every point later. Understands
    the annotations these configs use: int, float, bool, str, None, dict, list[X] and X | Y.
    """
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not _fits(value, hints[f.name]):
            raise ValueError(f"{what} {f.name}={value!r} must be {_describe(hints[f.name])}, "
                             f"got {type(value).__name__}")


def _fits(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:  # an int is a fine float (lr = 1 in TOML)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _describe(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is list:
        item = typing.get_args(hint)[0]
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(item, _describe(item))
    if hint is type(None):
        return "None (left out)"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))
