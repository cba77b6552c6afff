"""results.csv: the versioned column schema, append-and-flush rows, resume, and meta.json."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata

from .columns import COLUMN_NAMES, SCHEMA_VERSION, schema_markdown

RESULTS_FILE = "results.csv"
META_FILE = "meta.json"


def read_rows(path: str) -> list[dict]:
    """Rows of a results.csv (all cells as strings); a missing file gives no rows."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def done_point_ids(run_dir: str) -> set[str]:
    """Points already recorded, whatever their status: a resumed sweep skips them."""
    return {r["point_id"] for r in read_rows(os.path.join(run_dir, RESULTS_FILE))}


def drop_failed_rows(run_dir: str, which=lambda row: True) -> int:
    """Remove failed rows (those `which` picks; atomic rewrite) so that a resumed sweep runs those points again."""
    path = os.path.join(run_dir, RESULTS_FILE)
    rows = read_rows(path)
    kept = [r for r in rows if r.get("status") != "failed" or not which(r)]
    if len(kept) < len(rows):
        tmp = path + ".tmp"
        with open(tmp, "w", newline="") as f:
            f.write(_csv_line({c: c for c in COLUMN_NAMES}))
            f.writelines(_csv_line(r) for r in kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return len(rows) - len(kept)


def append_row(run_dir: str, row: dict) -> None:
    """Append one row and fsync it, so a killed sweep never leaves a torn row behind."""
    unknown = set(row) - set(COLUMN_NAMES)
    if unknown:
        raise ValueError(f"row has columns outside the schema: {sorted(unknown)}")
    path = os.path.join(run_dir, RESULTS_FILE)
    _drop_torn_tail(path)
    new_file = not os.path.exists(path) or os.path.getsize(path) == 0
    line = _csv_line({**row, "schema_version": SCHEMA_VERSION})
    with open(path, "a", newline="") as f:
        if new_file:
            f.write(_csv_line({c: c for c in COLUMN_NAMES}))
        f.write(line)  # one write of one whole line
        f.flush()
        os.fsync(f.fileno())


def latest_rows(rows: list[dict]) -> list[dict]:
    """One row per point_id, the last one written (rows appended by hand or merged runs)."""
    latest = {}
    for row in rows:
        latest[row["point_id"]] = row
    return list(latest.values())


def _csv_line(row: dict) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if row.get(c) is None else row.get(c) for c in COLUMN_NAMES])
    return buf.getvalue()


def _drop_torn_tail(path: str) -> None:
    """A kill during a write can leave a last line without its newline: cut it off."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)


def git_info() -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    return {"commit": commit or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None}


def environment_info(device: str) -> dict:
    """Versions, device and CPU: what produced a result file."""
    import torch

    versions = {}
    for package in ("torch", "transformers", "peft", "pandas", "psutil", "nvidia-ml-py", "giva-bench"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "versions": versions,
        **git_info(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def write_meta(run_dir: str, meta: dict) -> None:
    """Write meta.json atomically (temp file, then rename)."""
    path = os.path.join(run_dir, META_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


if __name__ == "__main__":  # the schema's home is bench/columns.py; this stays for old habits
    print(schema_markdown(), end="")
