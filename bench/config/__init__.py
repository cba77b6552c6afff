"""Configuring a sweep: the settings dataclasses, checked for what needs nothing of the harness (sweep.py, train.py;
names are checked against the registries in bench/run/validate.py), how their fields become flags (flags.py), the
presets (bench/presets/*.toml) and sweep files they come from (presets.py), and the grid of points (grid.py)."""
