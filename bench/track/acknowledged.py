"""Acknowledged changes: a checked-in TOML file saying which change of the history is intended, and why.

    # reports/acknowledged.toml
    [[acknowledged]]
    series = "llama-2m profile lora *"    # a series name as `history regressions` prints it, a glob, or "*"
    metric = "*"                          # a metric (flops_per_step, step_time_ms_p50, ...) or "*"
    commit = "3f2c1ab"                    # the commit the change landed at: the right end of its commit range
    reason = "targets o_proj too: 8% more FLOPs per step, intended"

An acknowledged change does not fail `history regressions`, and it starts a new baseline: drift is judged from
that segment on, never against the segments before it.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MIN_COMMIT_CHARS = 7


@dataclass(frozen=True)
class Acknowledgement:
    series: str  # glob over series names
    metric: str  # glob over metric names
    commit: str  # a prefix of the commit where the change landed
    reason: str

    def matches(self, series: str, metric: str, commit: str) -> bool:
        return (commit.startswith(self.commit) and fnmatch.fnmatchcase(metric, self.metric)
                and (fnmatch.fnmatchcase(series, self.series) or self.series == series))


def read_acknowledged(path: str | None) -> list[Acknowledgement]:
    """The file's entries; no file (or None) means none. A bad entry is a one-line error naming the file and entry."""
    if not path or not os.path.exists(path):
        return []
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} does not parse as TOML ({e}); fix it or move it aside") from None
    entries = data.get("acknowledged", [])
    extra = sorted(set(data) - {"acknowledged"})
    if extra or not isinstance(entries, list):
        raise ValueError(f"{path}: expected [[acknowledged]] tables only, found {extra or type(entries).__name__}")
    names = [f.name for f in fields(Acknowledgement)]
    out = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}: acknowledged entry {number}"
        unknown = sorted(set(entry) - set(names))
        missing = [n for n in names if not str(entry.get(n, "")).strip()]
        if unknown or missing:
            problems = ([f"unknown keys {', '.join(unknown)}"] if unknown else []) + \
                ([f"missing {', '.join(missing)}"] if missing else [])
            raise ValueError(f"{where}: {'; '.join(problems)}; each entry has {', '.join(names)}")
        if len(entry["commit"]) < MIN_COMMIT_CHARS or any(c not in "0123456789abcdef" for c in entry["commit"]):
            raise ValueError(f"{where}: commit {entry['commit']!r} is not a commit hash of at least "
                             f"{MIN_COMMIT_CHARS} hex digits; copy it from `history regressions`")
        out.append(Acknowledgement(**{n: str(entry[n]).strip() for n in names}))
    return out
