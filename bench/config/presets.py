"""Named sweeps (presets: sweep files in bench/presets/NAME.toml), sweep files, and the one way they become a
SweepConfig: preset, then file, then the command line; unknown keys and wrong types are errors. A preset is a sweep
file like any other: copy one and run it with --config."""

from __future__ import annotations

import os
import sys
from dataclasses import fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .sweep import SweepConfig

PRESETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "presets")
# The order `list` shows them in: the default first, then by what they measure. A preset file not named here comes
# after these, by name.
LIST_ORDER = ("quick", "profile-quick", "sizes", "ab", "counts", "sizes-estimate", "accuracy-quick", "peft-quick",
              "glue-quick", "claims-quick", "transfer-quick", "paper-glue", "image-quick", "gen-quick", "paper-image",
              "image-estimate", "paper-gpu")


def preset_names() -> list[str]:
    """The presets, one per TOML file in bench/presets/, in LIST_ORDER."""
    names = sorted(name[:-len(".toml")] for name in os.listdir(PRESETS_DIR) if name.endswith(".toml"))
    order = {name: i for i, name in enumerate(LIST_ORDER)}
    return sorted(names, key=lambda name: order.get(name, len(order)))


PRESETS = preset_names()


def preset_file(name: str) -> str:
    """The sweep file of a preset; a ValueError naming the presets when there is none."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return os.path.join(PRESETS_DIR, f"{name}.toml")


def load_sweep_file(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"sweep file {path!r} not found; give the path of a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"sweep file {path!r} does not parse as TOML: {e}") from None


def make_sweep_config(preset: str | None = None, file_values: dict | None = None, overrides: dict | None = None) -> SweepConfig:
    """Preset values, then the sweep file's, then command-line overrides; unknown keys and wrong types are errors."""
    preset_values = load_sweep_file(preset_file(preset)) if preset is not None else {}
    values = {}
    defaults = {f.name: f for f in fields(SweepConfig)}
    for source in (preset_values, file_values or {}, overrides or {}):
        for key, value in source.items():
            if key not in defaults:
                raise ValueError(f"unknown sweep key {key!r}; known keys: {', '.join(defaults)}")
            values[key] = value
    for key, value in values.items():
        default = defaults[key].default_factory() if callable(defaults[key].default_factory) else defaults[key].default
        if not isinstance(value, type(default)) and not (isinstance(default, float) and isinstance(value, int)):
            raise ValueError(f"sweep key {key!r} must be a {type(default).__name__}, got {value!r}")
    return SweepConfig(**values)
