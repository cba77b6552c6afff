"""Reading results for people: summary.md and plots (summary.py, claims.py, tables.py, plots.py), two runs compared
(compare.py), a history over commits (history.py). Reads results.csv and meta.json only: no torch, no method code."""

from .summary import build_report

__all__ = ["build_report"]
