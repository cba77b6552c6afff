"""What produced a result file: versions, device, CPU, the commit (with its first-parent position) and whether the
tree was dirty, how busy the machine was; and the time."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def repo_relative(path: str) -> str:
    """`path` relative to the repository where it lies inside it (what a checked-in report may show), else as given."""
    full, root = os.path.realpath(path), os.path.realpath(REPO_ROOT)
    return os.path.relpath(full, root) if os.path.commonpath([full, root]) == root else path


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


def is_busy(load_avg_1m: float, cpu_count: int | None) -> bool:
    """The rule for a busy machine: a 1-minute load average above its core count (more runnable work than cores, so
    a point's threads waited for a core and its timings are not faithful)."""
    return bool(cpu_count) and load_avg_1m > cpu_count


def machine_load(load_avgs: list[float], previous: dict | None = None) -> dict:
    """meta.json's "load": this machine's cores, the highest 1-minute load average seen during the run (earlier
    sessions of a resumed run included), and whether it was busy."""
    cpu_count = os.cpu_count()
    highest = max([*load_avgs, (previous or {}).get("load_avg_1m_max", 0.0)])
    return {"cpu_count": cpu_count, "load_avg_1m_max": round(highest, 2), "busy": is_busy(highest, cpu_count)}
