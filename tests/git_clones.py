"""A fresh git repository holding this checkout's files as its first commit, for tests that commit real code
changes and run each commit's own run_bench.py (bisect, the A/B gate).

    repo = clone_checkout(str(tmp / "repo"))
    edit(repo, "giva/lora.py", old, new); head = commit(repo, "planted slowdown")
"""

from __future__ import annotations

import os
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def clone_checkout(repo: str) -> str:
    """This checkout's tracked and untracked-unignored files (the recorded history runs left out: large, unused)
    committed as the only commit of a new repository at `repo`; its path."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if os.path.isfile(os.path.join(REPO, name)) and not name.startswith("tests/data/history_runs"):
            os.makedirs(os.path.dirname(os.path.join(repo, name)) or repo, exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), os.path.join(repo, name))
    git(repo, "init", "--quiet", "--initial-branch", "main")
    git(repo, "config", "user.name", "test")
    git(repo, "config", "user.email", "test@localhost")
    commit(repo, "commit 0")
    return repo


def commit(repo: str, message: str) -> str:
    """Commit everything in the work tree; the new commit's hash."""
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def edit(repo: str, path: str, old: str, new: str) -> None:
    """Replace the one occurrence of `old` in the repository's file `path` by `new`."""
    path = os.path.join(repo, path)
    with open(path) as f:
        text = f.read()
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
    with open(path, "w") as f:
        f.write(text.replace(old, new))
