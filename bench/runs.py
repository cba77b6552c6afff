"""A run folder read back: results.csv (latest row per point, typed) and meta.json.

    run = load_run("reports/runs/quick-abc1234")   # or the path of a results.csv
    run.rows  ->  pandas frame, one row per point_id

The report, compare and history read runs with load_run(): it refuses damaged
files, foreign CSVs and other schema versions with a one-line error.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .results import COLUMN_NAMES, META_FILE, RESULTS_FILE, SCHEMA_VERSION, latest_rows

MAKE_RUN = "run_bench.py run --preset quick --out DIR"
REQUIRED_COLUMNS = ("schema_version", "point_id", "status", "model", "method", "rank")
STATUSES = ("ok", "failed", "skipped")
TEXT_COLUMNS = {"point_id", "status", "error", "model", "task", "method", "method_options", "dtype", "device",
                "effective_ranks", "step_times_ms", "peak_mem_source", "started_at", "eval_metric", "eval_scores"}
NUMERIC_COLUMNS = [c for c in COLUMN_NAMES if c not in TEXT_COLUMNS]


@dataclass
class Run:
    """One run as read from disk: its latest row per point (typed) and its metadata."""

    csv_path: str
    run_dir: str
    meta: dict
    rows: pd.DataFrame  # one row per point_id; numeric columns as floats, empty cells NaN
    warnings: list[str] = field(default_factory=list)

    @property
    def commit(self) -> str:
        return (self.meta.get("environment") or {}).get("commit") or "unknown"


def load_run(path: str) -> Run:
    """A run directory or a results.csv path -> Run; errors name the file and what to do."""
    csv_path = path if os.path.isfile(path) or path.endswith(".csv") else os.path.join(path, RESULTS_FILE)
    if not os.path.exists(csv_path):
        raise FileNotFoundError(f"no results at {csv_path}; make a run with `{MAKE_RUN}`")
    run_dir = os.path.dirname(os.path.realpath(csv_path))
    header, rows, warnings = read_checked_rows(csv_path)
    frame = pd.DataFrame(latest_rows(rows), columns=header).astype(object)
    for column in COLUMN_NAMES:
        if column not in frame:
            frame[column] = np.nan if column in NUMERIC_COLUMNS else ""
    for column in NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str)
    frame["rank"] = frame["rank"].astype(int)
    meta = read_checked_meta(run_dir, csv_path)
    if not meta:
        warnings.append(f"no {META_FILE} beside {csv_path}: command, environment and commit unknown")
    return Run(csv_path, run_dir, meta, frame, warnings)


def read_checked_rows(csv_path: str) -> tuple[list[str], list[dict], list[str]]:
    """Header, rows (strings) and warnings of a results.csv, refusing anything that is not one."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ValueError(f"{csv_path} is not UTF-8 text; is it a results.csv? re-run the sweep: `{MAKE_RUN}`") from None
    if not text.strip():
        raise ValueError(f"{csv_path} is empty (no header, no rows); re-run the sweep: `{MAKE_RUN}`")
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
        lines = [(reader.line_num, cells) for cells in reader]
    except csv.Error as e:
        raise ValueError(f"{csv_path} line {reader.line_num} does not parse as CSV ({e}); delete that line "
                         "(the point runs again on resume) or re-run the sweep") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{csv_path} lacks the columns {', '.join(missing)}: not a results.csv written by "
                         f"run_bench.py; give a run directory or re-run the sweep: `{MAKE_RUN}`")
    warnings, rows = [], []
    for i, (line_num, cells) in enumerate(lines):
        if not cells:
            continue
        if len(cells) != len(header):
            if i == len(lines) - 1 and not text.endswith("\n") and len(cells) < len(header):
                warnings.append(f"{csv_path}: ignored a torn last line {line_num} (a sweep killed mid-write)")
                continue
            raise ValueError(f"{csv_path} line {line_num} has {len(cells)} cells where the header has {len(header)}; "
                             "the file is damaged: delete that line (the point runs again on resume) or re-run")
        row = dict(zip(header, cells))
        if row["schema_version"] != str(SCHEMA_VERSION):
            raise ValueError(f"{csv_path} has schema_version {row['schema_version']!r} (line {line_num}) but this code "
                             f"reads version {SCHEMA_VERSION}: not comparable; re-run the sweep with this code")
        if row["status"] not in STATUSES:
            raise ValueError(f"{csv_path} line {line_num}: status {row['status']!r} is not one of "
                             f"{', '.join(STATUSES)}; the file is damaged: delete that line or re-run")
        if not row["rank"].strip().isdigit() or not row["point_id"] or not row["method"]:
            raise ValueError(f"{csv_path} line {line_num}: rank {row['rank']!r}, point_id {row['point_id']!r}, "
                             f"method {row['method']!r}; the file is damaged: delete that line or re-run")
        rows.append(row)
    if not rows:
        raise ValueError(f"{csv_path} has a header but no rows: the sweep wrote no point; run it: `{MAKE_RUN}`")
    return header, rows, warnings


def read_checked_meta(run_dir: str, csv_path: str) -> dict:
    path = os.path.join(run_dir, META_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it or re-run the sweep: `{MAKE_RUN}`") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} holds no JSON object; restore it or re-run the sweep: `{MAKE_RUN}`")
    if meta.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema_version {meta.get('schema_version')!r} but this code reads version "
                         f"{SCHEMA_VERSION}: not comparable; re-run the sweep with this code")
    return meta
