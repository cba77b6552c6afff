"""Fields every adapter config shares, and their checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1)")
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)
        if isinstance(self.trainable_modules, str):  # one name, not its letters
            self.trainable_modules = [self.trainable_modules]
        self.trainable_modules = list(self.trainable_modules)

    def check_layer_rank(self, name: str, out_features: int, in_features: int) -> int:
        """The rank this layer gets; raises where the method forbids the configured one."""
        return self.r

    def to_dict(self) -> dict:
        return {"method": self.method, **asdict(self)}
