"""One run's report for people: summary.md and plots (summary.py, claims.py, tables.py, plots.py, layout.py,
transfer.py, steps.py). Reads results.csv and meta.json only: no torch, no method code. Comparing runs and tracking
them over commits is bench/track/."""

from .summary import build_report

__all__ = ["build_report"]
