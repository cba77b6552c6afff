"""Writing results: append-and-fsync rows of the versioned column list (bench/columns.py), the atomic rewrite
that forgets failed rows, meta.json, and write_atomic, the one way a run's files are replaced (the point's row file,
the SLURM job list too).
"""

from __future__ import annotations

import csv
import io
import json
import os

from ..columns import COLUMN_NAMES, SCHEMA_VERSION
from .read import META_FILE, RESULTS_FILE, read_rows


def drop_failed_rows(run_dir: str, which=lambda row: True) -> int:
    """Remove failed rows (those `which` picks; atomic rewrite) so that a resumed sweep runs those points again."""
    path = os.path.join(run_dir, RESULTS_FILE)
    rows = read_rows(path)
    kept = [r for r in rows if r.get("status") != "failed" or not which(r)]
    if len(kept) < len(rows):
        write_atomic(path, "".join(_csv_line(r) for r in [{c: c for c in COLUMN_NAMES}, *kept]))
    return len(rows) - len(kept)


def write_atomic(path: str, text: str) -> None:
    """Write a file's whole content atomically (a temp file beside it, fsynced, then renamed over it): a reader sees
    the old content or the new, never a part."""
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_row(run_dir: str, row: dict) -> None:
    """Append one row in one write and fsync it; a kill mid-write leaves at most a torn last line, which the next
    sweep moves out when it opens the run directory (rundir.open_run_dir). An ok row must name every column (None:
    not measured, an empty cell); a failed or skipped row may leave out what was not measured."""
    unknown = set(row) - set(COLUMN_NAMES)
    if unknown:
        raise ValueError(f"row has columns outside the schema: {sorted(unknown)}")
    row = {**row, "schema_version": SCHEMA_VERSION}
    missing = [c for c in COLUMN_NAMES if c not in row]
    if row.get("status") == "ok" and missing:
        raise ValueError(f"ok row {row.get('point_id')!r} lacks the schema columns {', '.join(missing)}: give each "
                         "one a value, None where not measured (the builders of bench/run/rows.py)")
    path = os.path.join(run_dir, RESULTS_FILE)
    new_file = not os.path.exists(path) or os.path.getsize(path) == 0
    line = _csv_line(row)
    with open(path, "a", newline="") as f:
        if new_file:
            f.write(_csv_line({c: c for c in COLUMN_NAMES}))
        f.write(line)  # one write of one whole line
        f.flush()
        os.fsync(f.fileno())


def _csv_line(row: dict) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if row.get(c) is None else row.get(c) for c in COLUMN_NAMES])
    return buf.getvalue()


def write_meta(run_dir: str, meta: dict) -> None:
    """Write meta.json atomically."""
    write_atomic(os.path.join(run_dir, META_FILE), json.dumps(meta, indent=2, sort_keys=True))
