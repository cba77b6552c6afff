"""A run directory's safety: one driver at a time, resume only what this code and config wrote, storage errors.

    with lock_run_dir(run_dir):                       # a second driver gets a one-line error naming the first
        meta, done = open_run_dir(run_dir, config, command, device, log)
        ...                                           # the driver appends rows (results.append_row)

The lock is an flock on RUN_DIR/.lock: the kernel drops it when its process dies (kill -9 included), so a
stale lock never blocks a rerun. Reading commands (report, compare, history) do not take it.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager

from ..columns import COLUMN_NAMES, SCHEMA_VERSION
from .environment import environment_info, utc_now
from .read import META_FILE, RESULTS_FILE, read_meta, read_results, read_rows
from .write import drop_failed_rows, write_atomic

LOCK_FILE = ".lock"
NEW_RUN = "give a new --out to start a new run"
# Errors that say the disk or its permissions failed, not the point: such points run again on the next rerun.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)
STORAGE_ERROR = re.compile(r"\[Errno (%s)\]|No space left on device|Read-only file system|Disk quota exceeded"
                           % "|".join(str(n) for n in STORAGE_ERRNOS))


class RunDirUnwritable(ValueError):
    """The run directory stopped taking writes (full disk, read-only, permissions): stop with one line."""


@contextmanager
def lock_run_dir(run_dir: str):
    """Hold RUN_DIR/.lock for the block; refuse (ValueError) when another live process holds it."""
    ensure_writable(run_dir)
    path = os.path.join(run_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with open(path) as f:
            holder = _parse_holder(f.read())
        os.close(fd)
        raise ValueError(f"{run_dir!r} is in use by another sweep (pid {holder.get('pid', '?')} on "
                         f"{holder.get('host', '?')}, started {holder.get('started_at', '?')}); wait for it to end, "
                         "or give another --out") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_at": utc_now()}).encode())
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (deleting it would race with a waiting driver)


def _parse_holder(text: str) -> dict:
    try:
        holder = json.loads(text)
        return holder if isinstance(holder, dict) else {}
    except json.JSONDecodeError:
        return {}


def ensure_writable(run_dir: str) -> None:
    """Create run_dir and prove it takes a small fsynced write, else RunDirUnwritable."""
    try:
        os.makedirs(run_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".probe-") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise RunDirUnwritable(f"cannot write to run directory {run_dir!r} ({e.strerror}); free space or fix its "
                               "permissions and rerun the same command, or choose another --out") from None


def open_run_dir(run_dir: str, config, command: list[str], device: str, log=print,
                 retry_failed: bool = False, estimated: bool = False) -> tuple[dict, set[str]]:
    """Reopen run_dir for this config; returns meta.json's content to write (the caller writes it once the
    executor is up) and the point_ids already done.

    Refuses a run dir of another config or schema, a results.csv without meta.json and a damaged one. Repairs
    what a kill can leave (a torn last row, with a copy kept) and forgets failures that were the disk's fault
    (and every failure with retry_failed), saying so in one line each.
    """
    results = os.path.join(run_dir, RESULTS_FILE)
    meta = read_meta(run_dir)
    has_rows = os.path.exists(results) and os.path.getsize(results) > 0
    if meta is None and has_rows:
        raise ValueError(f"{results} has no {META_FILE} beside it, so the config that made it is unknown; "
                         f"{NEW_RUN} (or restore {META_FILE})")
    if meta is not None and meta.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{run_dir!r} was written with results schema {meta.get('schema_version')!r} and this code "
                         f"writes schema {SCHEMA_VERSION}: rows of both cannot share one file; {NEW_RUN}")
    if meta is not None and meta.get("config_hash") != config.config_hash():
        raise ValueError(f"{run_dir!r} holds a run of a different config (hash {meta.get('config_hash')}, this one "
                         f"{config.config_hash()}); {NEW_RUN}, or rerun its own command")
    if meta is not None and bool(meta.get("estimated")) != estimated:
        kinds = ("a measured run", "an estimate (`run_bench.py estimate`)")
        raise ValueError(f"{run_dir!r} holds {kinds[not estimated]}, not {kinds[estimated]}; {NEW_RUN}")
    if has_rows:
        repair_torn_tail(results, log)
        if retry_failed:
            log(f"retrying {drop_failed_rows(run_dir)} failed points")
        dropped = drop_failed_rows(run_dir, lambda row: is_storage_error(row.get("error", "")))
        if dropped:
            log(f"{dropped} points had failed for lack of disk space or a read-only disk: they run again")
    if meta is None:
        meta = {"schema_version": SCHEMA_VERSION, "estimated": estimated, "config": config.to_dict(),
                "config_hash": config.config_hash(),
                "command": command, "started_at": utc_now(), "environment": environment_info(device), "resumed": []}
    else:
        meta["resumed"].append({"at": utc_now(), "command": command, "environment": environment_info(device)})
    return meta, {row["point_id"] for row in read_rows(results)}


def repair_torn_tail(path: str, log) -> None:
    """Check the file is this schema's and every row whole; a last row cut short by a kill is moved out (a copy
    kept), so that its point runs again."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    if header != COLUMN_NAMES:  # rows appended to it would not line up
        if "point_id" not in header:
            raise ValueError(f"{path} has no header line (its first line starts {lines[0][:40]!r}); put the header "
                             f"back (the column names of bench/SCHEMA.md, comma-separated) or {NEW_RUN}")
        version = dict(zip(header, next(csv.reader([lines[1]])))).get("schema_version", "?") if len(lines) > 1 else "?"
        raise ValueError(f"{path} has the columns of results schema {version} and this code writes schema "
                         f"{SCHEMA_VERSION}: rows of both cannot share one file; {NEW_RUN}")
    torn = read_results(path).torn_line
    if torn is not None:
        copy = f"{path}.torn-{utc_now().replace(':', '')}"
        shutil.copy(path, copy)
        write_atomic(path, "".join(lines[:-1]))
        log(f"{path}: the last row (line {torn}) was cut short by a killed sweep; removed it (copy at {copy}), "
            "its point runs again")


def is_storage_error(error: str) -> bool:
    return bool(STORAGE_ERROR.search(error))
