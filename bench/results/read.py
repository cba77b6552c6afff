"""A run folder read back: results.csv (checked row by row, latest row per point, typed) and meta.json.

    run = load_run("reports/runs/quick-abc1234")   # or the path of a results.csv
    run.rows  ->  pandas frame, one row per point_id

The report, compare and history read runs with load_run(): it refuses damaged files, foreign CSVs and other
schema versions with a one-line error. read_results() is the one check of a results.csv's rows, which the run
directory (rundir.py) uses too before a sweep appends to it. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..columns import COLUMN_NAMES, NUMERIC_COLUMNS, SCHEMA_VERSION, TEXT_COLUMNS
from .environment import is_busy

RESULTS_FILE = "results.csv"
META_FILE = "meta.json"
MAKE_RUN = "run_bench.py run --preset quick --out DIR"
REQUIRED_COLUMNS = ("schema_version", "point_id", "status", "model", "method", "rank")
STATUSES = ("ok", "failed", "skipped")


def read_rows(path: str) -> list[dict]:
    """Rows of a results.csv as written (all cells strings), unchecked; a missing file gives no rows."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def done_point_ids(run_dir: str) -> set[str]:
    """Points already recorded, whatever their status: a resumed sweep skips them."""
    return {r["point_id"] for r in read_rows(os.path.join(run_dir, RESULTS_FILE))}


def latest_rows(rows: list[dict]) -> list[dict]:
    """One row per point_id, the last one written (rows appended by hand or merged runs)."""
    latest = {}
    for row in rows:
        latest[row["point_id"]] = row
    return list(latest.values())


def read_meta(run_dir: str) -> dict | None:
    """meta.json of a run directory, None where there is none; a damaged file is a one-line error naming it."""
    path = os.path.join(run_dir, META_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it, or give a new --out to start a new run") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} holds no JSON object; restore it, or give a new --out to start a new run")
    return meta


@dataclass
class ResultsFile:
    """A results.csv whose rows all passed the checks."""

    path: str
    header: list[str]
    rows: list[dict]  # cells as strings, in file order
    torn_line: int | None = None  # the line number of a last line cut short by a kill (not in rows)


def read_results(csv_path: str) -> ResultsFile:
    """Header and rows of a results.csv, each row checked (its cells, schema version, status, rank and id); a last
    line without its newline (a sweep killed mid-write) is set apart as torn. Anything else damaged or foreign is a
    one-line ValueError naming the file and the line."""
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
    results = ResultsFile(csv_path, header, [])
    lines = [(number, cells) for number, cells in lines if cells]
    if lines and not text.endswith("\n"):
        results.torn_line = lines.pop()[0]
    for number, cells in lines:
        if len(cells) != len(header):
            raise ValueError(f"{csv_path} line {number} has {len(cells)} cells where the header has {len(header)}; "
                             "the file is damaged: delete that line (the point runs again on resume) or re-run")
        row = dict(zip(header, cells))
        if row["schema_version"] != str(SCHEMA_VERSION):
            raise ValueError(f"{csv_path} has schema_version {row['schema_version']!r} (line {number}) but this code "
                             f"reads version {SCHEMA_VERSION} (columns in bench/SCHEMA.md): not comparable; re-run "
                             "the sweep with this code (a baseline too: run its preset into a new folder)")
        if row["status"] not in STATUSES:
            raise ValueError(f"{csv_path} line {number}: status {row['status']!r} is not one of "
                             f"{', '.join(STATUSES)}; the file is damaged: delete that line or re-run")
        if not row["rank"].strip().isdigit() or not row["point_id"] or not row["method"]:
            raise ValueError(f"{csv_path} line {number}: rank {row['rank']!r}, point_id {row['point_id']!r}, "
                             f"method {row['method']!r}; the file is damaged: delete that line or re-run")
        results.rows.append(row)
    return results


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

    @property
    def cpu_count(self) -> int | None:
        """The cores the run's load averages are read against (meta.json "load", else its environment)."""
        return (self.meta.get("load") or {}).get("cpu_count") or (self.meta.get("environment") or {}).get("cpu_count")

    def point_loads(self) -> pd.Series:
        """Per row: the higher 1-minute load average of the point's start and end; NaN where none was recorded."""
        return self.rows[["load_avg_1m_start", "load_avg_1m_end"]].max(axis=1)

    def busy(self) -> pd.Series:
        """Per row: whether the point ran on a busy machine (environment.is_busy); False where no load was recorded."""
        return self.point_loads().map(lambda load: not pd.isna(load) and is_busy(load, self.cpu_count)).astype(bool)


def load_run(path: str) -> Run:
    """A run directory or a results.csv path -> Run; errors name the file and what to do."""
    csv_path = path if os.path.isfile(path) or path.endswith(".csv") else os.path.join(path, RESULTS_FILE)
    if not os.path.exists(csv_path):
        raise FileNotFoundError(f"no results at {csv_path}; make a run with `{MAKE_RUN}`")
    run_dir = os.path.dirname(os.path.realpath(csv_path))
    results = read_results(csv_path)
    if not results.rows:
        raise ValueError(f"{csv_path} has a header but no rows: the sweep wrote no point; run it: `{MAKE_RUN}`")
    warnings = [f"{csv_path}: ignored a torn last line {results.torn_line} (a sweep killed mid-write)"
                ] if results.torn_line else []
    frame = pd.DataFrame(latest_rows(results.rows), columns=results.header).astype(object)
    missing = [c for c in COLUMN_NAMES if c not in frame]  # columns added since the run: empty (added at once)
    frame = pd.concat([frame, pd.DataFrame({c: np.nan if c in NUMERIC_COLUMNS else "" for c in missing},
                                           index=frame.index, dtype=object)], axis=1)
    for column in NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str)
    frame["rank"] = frame["rank"].astype(int)
    meta = read_checked_meta(run_dir)
    if not meta:
        warnings.append(f"no {META_FILE} beside {csv_path}: command, environment and commit unknown")
    return Run(csv_path, run_dir, meta, frame, warnings)


def read_checked_meta(run_dir: str) -> dict:
    meta = read_meta(run_dir) or {}
    path = os.path.join(run_dir, META_FILE)
    if meta.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema_version {meta.get('schema_version')!r} but this code reads version "
                         f"{SCHEMA_VERSION} (columns in bench/SCHEMA.md): not comparable; re-run the sweep with this "
                         "code (a baseline too: run its preset into a new folder)")
    return meta
