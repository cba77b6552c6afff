"""Configuring a sweep: settings dataclasses that import no runtime code (sweep.py, train.py, executor.py), the
presets and sweep files they come from (presets.py), and the grid of points (grid.py)."""
