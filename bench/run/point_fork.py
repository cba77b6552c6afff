"""Point processes forked from a server that has already imported what a point imports.

    process = start_point_process([point_file, row_file, scratch], log_file, env)   # executors/worker.py
    process.join(timeout_s); process.exitcode; process.kill()

A point runs in a process of its own (its peak memory is its own, a crash loses that point only), but a fresh Python
process spends about 6 s on 2 CPU cores importing torch, transformers and this package before it does any work.
multiprocessing's forkserver pays that once: its server imports run/point_server.py, runs nothing (no torch thread
pool, no CUDA context, no tokenizer threads, so forking it is safe) and forks one child per point, which starts in
a fraction of a second. Each child then takes the caller's environment of the moment, its log as
stdout and stderr, and runs `python -m bench.run.point`'s main().
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter, as MALLOC_MMAP_THRESHOLD_ sets it at process start

_context = None
_context_lock = threading.Lock()


def start_point_process(argv: list[str], log_file: str, env: dict) -> multiprocessing.Process:
    """A started point process running `python -m bench.run.point *argv` with `env` as its whole environment and
    its output in log_file."""
    global _context
    with _context_lock:
        if _context is None:
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(["bench.run.point_server"])
    process = _context.Process(target=_point_process, args=(argv, log_file, env), name="giva-point")
    process.start()
    return process


def _point_process(argv: list[str], log_file: str, env: dict) -> None:
    """In the forked child: output to the log, the caller's environment, the signals and malloc settings a point
    runs with, then the point."""
    log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for fd in (1, 2):
        os.dup2(log, fd)
    os.close(log)
    os.environ.clear()
    os.environ.update(env)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not glibc: neither setting exists
        libc = None
    if libc is not None:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the server ends (it ends with its caller)
        threshold = int(env.get("MALLOC_MMAP_THRESHOLD_") or 0)
        if threshold:
            libc.mallopt(M_MMAP_THRESHOLD, threshold)
    os.chdir(REPO_ROOT)
    from .point import main  # imported by the server already

    sys.exit(main(argv))
