"""Finding the point processes (`python -m bench.run.point`) that a test's sweep started, by the point they run:
each test gives its points a sequence length of its own, so that tests do not see each other's points."""

from __future__ import annotations

import json

import psutil


def point_processes(seq_len: int) -> list[psutil.Process]:
    """Point processes alive now whose point is llama-2m at batch 2 with this seq_len."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "bench.run.point" in cmd and len(cmd) > cmd.index("bench.run.point") + 1:
            try:
                with open(cmd[cmd.index("bench.run.point") + 1]) as f:
                    point = json.load(f)
            except (OSError, ValueError):
                continue
            if point.get("seq_len") == seq_len and point.get("model") == "llama-2m" and point.get("batch_size") == 2:
                found.append(proc)
    return found
