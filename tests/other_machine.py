"""A real run as if another machine had timed it: its meta.json's processor, the sweep's threads or the GPU
replaced (a planted difference of machine on real files; compare and history read the machine from meta.json)."""

from __future__ import annotations

import json
import os

from bench.results.read import META_FILE


def on_machine(run_dir: str, cpu: str | None = None, threads: int | None = None, gpu: str | None = None) -> str:
    path = os.path.join(run_dir, META_FILE)
    with open(path) as f:
        meta = json.load(f)
    if cpu:
        meta["environment"]["cpu"] = cpu
    if threads:
        meta.setdefault("config", {})["threads"] = threads
    if gpu:
        meta["environment"].update(device="cuda", gpu=gpu)
    with open(path, "w") as f:
        json.dump(meta, f)
    return run_dir
