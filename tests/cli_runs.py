"""run_bench.py as the tests call it.

    run_cli("run", "--preset", "quick", ...)    # a fresh process, as a user runs it (offline, as these machines are)
    run_main("run", "--ranks", "0", ...)        # its main() in this process, output captured

run_main is for input that is refused before any point runs (or commands that run none): the same code and the
same output and exit code as the command, without a new process's imports (about 6 s of torch and transformers).
Both return a subprocess.CompletedProcess (returncode, stdout, stderr).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

from waiting import HANG_GUARD_S

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # the hub's libraries fail at once, not after retries


def run_cli(*args: str, timeout: int = HANG_GUARD_S, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_bench.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**(os.environ if env is None else env), **OFFLINE})


def run_main(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """bench.cli.main(args) here; env: the environment it sees meanwhile (restored after)."""
    from bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's own exits
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["run_bench.py", *args], code, out.getvalue(), err.getvalue())
