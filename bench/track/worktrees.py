"""Commits checked out in temporary git worktrees, each running its own run_bench.py: what bisect and the A/B gate
measure with.

    require_clean(repo, "bisect compares commits")
    with Worktrees(repo) as trees:
        tree = trees.add(resolve("HEAD~1", repo))
        run = trees.run_bench(tree, "estimate", ["--preset", "counts"])  # its ok rows and its meta.json

A commit's results come from its own code: `run_bench.py` of the worktree, with the worktree first on PYTHONPATH
and one OpenMP thread, in a subprocess. Worktrees are removed (and git's list of them pruned) on close.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from dataclasses import replace

from ..results.environment import git
from ..results.read import Run, load_run


def resolve(rev: str, repo: str) -> str:
    """The full hash of a commit of `repo`; a one-line ValueError when there is none."""
    commit = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=repo)
    if not commit:
        raise ValueError(f"{rev!r} is not a commit of {repo}; give a hash, branch or tag")
    return commit


def require_clean(repo: str, why: str) -> None:
    """A ValueError when tracked files of `repo` differ from its HEAD (`why`: what needs commits, not a tree)."""
    if git("status", "--porcelain", "--untracked-files=no", cwd=repo):
        raise ValueError(f"{repo} has uncommitted changes; commit or stash them first ({why}, and a dirty tree is "
                         "none of them)")


class Worktrees:
    """Temporary worktrees of one repository under one temporary folder, and runs of their run_bench.py."""

    def __init__(self, repo: str, prefix: str = "worktrees-"):
        self.repo = repo
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.trees: list[str] = []
        self.runs = 0

    def __enter__(self) -> Worktrees:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, commit: str) -> str:
        """Check `commit` out (detached) in a new worktree; its path."""
        path = os.path.join(self.tmp, f"tree-{commit[:12]}-{len(self.trees)}")
        done = subprocess.run(["git", "worktree", "add", "--detach", "--quiet", path, commit], cwd=self.repo,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise ValueError(f"git worktree add of {commit[:8]} failed: {done.stderr.strip().splitlines()[-1:]}")
        self.trees.append(path)
        return path

    def remove(self, tree: str) -> None:
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=self.repo, capture_output=True)
        shutil.rmtree(tree, ignore_errors=True)
        if tree in self.trees:
            self.trees.remove(tree)

    def close(self) -> None:
        for tree in list(self.trees):
            self.remove(tree)
        subprocess.run(["git", "worktree", "prune"], cwd=self.repo, capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_bench(self, tree: str, command: str, args: list[str]) -> Run:
        """`run_bench.py COMMAND ARGS --out NEW --threads 1 --no-report` with the tree's own code: its run, ok rows
        only (the run folder is deleted after reading). A ValueError naming the tree when it fails."""
        self.runs += 1
        out = os.path.join(self.tmp, f"run-{self.runs}")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": tree}
        done = subprocess.run([sys.executable, os.path.join(tree, "run_bench.py"), command, *args, "--out", out,
                               "--threads", "1", "--no-report"], cwd=tree, env=env, capture_output=True, text=True)
        try:
            if done.returncode not in (0, 1) or not os.path.exists(os.path.join(out, "results.csv")):
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise ValueError(f"`run_bench.py {command}` failed at {os.path.basename(tree)} "
                                 f"(exit {done.returncode}): {last}")
            run = load_run(out)
            return replace(run, rows=run.rows[run.rows["status"] == "ok"])
        finally:
            shutil.rmtree(out, ignore_errors=True)
