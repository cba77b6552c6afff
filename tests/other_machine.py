"""A real run as if another machine had timed it: its meta.json's processor, the sweep's threads or the GPU
replaced (a planted difference of machine on real files; compare and history read the machine from meta.json)."""

from __future__ import annotations

from real_run import edited_meta


def on_machine(run_dir: str, cpu: str | None = None, threads: int | None = None, gpu: str | None = None) -> str:
    with edited_meta(run_dir) as meta:
        if cpu:
            meta["environment"]["cpu"] = cpu
        if threads:
            meta.setdefault("config", {})["threads"] = threads
        if gpu:
            meta["environment"].update(device="cuda", gpu=gpu)
    return run_dir
