"""What produced a result file: versions, device, CPU, the commit (with its first-parent position) and whether the
tree was dirty, the machine's load; and the time."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git(*args: str, cwd: str = REPO_ROOT) -> str:
    """A git command's stdout, stripped; "" when git is missing or the command fails."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def git_info() -> dict:
    """The checkout's commit, its position in first-parent order (commits from the root, itself included; what a
    history orders runs by, not the date) and whether tracked files differ from it."""
    commit = git("rev-parse", "HEAD")
    return {"commit": commit or None, "commit_position": commit_position(commit) if commit else None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None}


def commit_position(commit: str, cwd: str = REPO_ROOT) -> int | None:
    """How many commits the first-parent chain ending at `commit` holds; None when git does not know the commit."""
    count = git("rev-list", "--first-parent", "--count", commit, "--", cwd=cwd) if commit else ""
    return int(count) if count.isdigit() else None


def load_average_1m() -> float | None:
    """The machine's 1-minute load average (runnable processes), None where the OS does not report it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def load_summary(readings: list[float | None]) -> dict:
    """meta.json's "load": the highest 1-minute load average read during the run, and busy = it exceeded the cores
    (timings of a busy run are not faithful; the history weighs them out)."""
    known = [r for r in readings if r is not None]
    cpus = os.cpu_count()
    top = max(known) if known else None
    return {"cpu_count": cpus, "load_avg_1m_max": top, "busy": None if top is None or not cpus else top > cpus}


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
