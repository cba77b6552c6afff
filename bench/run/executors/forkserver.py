"""Point processes forked from a server that has made the imports every point makes, once.

A fresh `python -m bench.run.point` spends 4 to 6 s importing torch, transformers and the harness before its point
starts. On this machine's CPU, the local and pool executors' worker (worker.run_point_forked) asks a server instead,
`python -m bench.run.executors.forkserver` (one per driver thread and environment, started on first use, ended
with its thread or the driver), to fork a child that runs the point: the same code in a process of its own (its own
memory, its own crash), without the imports.

    server = ForkServer(env)           # env: what the points' processes add to this one's (MALLOC_MMAP_THRESHOLD_)
    proc = server.start(argv, log, model)  # bench.run.point's arguments; None if it cannot fork (use Popen)
    proc.wait(timeout) / proc.poll() / proc.kill()   # as subprocess.Popen's

The server reads one request a line on stdin (the point's arguments and its log file, as JSON), forks, and answers
on stdout the child's pid, then, once the child has ended, its exit code (negative: the signal that ended it): one
point at a time. The server runs no arithmetic (a model built on the meta device at most), so no thread pool exists
when it forks; GPU points do not come here (a CUDA context does not survive a fork).
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
STARTUP_TIMEOUT_S = 600  # the server's imports, before it answers its first request


def point_process_setup() -> None:
    """In a point process (or a fork server) before it starts. SLURM's warning of a time limit or preemption
    (SIGUSR2) goes to every process of the job: the job's own process acts on it (bench/run/slurm_job.py), the point
    ignores it."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    die_with_parent()


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the thread that started it dies, so no orphan runs after a kill."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ForkServer:
    def __init__(self, env: dict):
        """env: what the server's environment adds to this process's (its points inherit it)."""
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.run.executors.forkserver"], cwd=REPO_ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **env} if env else None,
                                     preexec_fn=point_process_setup)
        self.pending = b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def start(self, argv: list[str], log_path: str, model: str) -> ForkedProcess | None:
        """Fork a point process running `python -m bench.run.point ARGV` with its output in log_path, or None if the
        server is gone or does not answer (it is then stopped). model: the point's, whose code the server imports
        before it forks (once per model)."""
        request = {"argv": argv, "log": log_path, "model": model}
        try:
            os.write(self.proc.stdin.fileno(), (json.dumps(request) + "\n").encode())
            reply = self.read_line(STARTUP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            reply = None
        if reply is None or not reply.isdigit():
            self.stop()
            return None
        return ForkedProcess(self, int(reply))

    def read_line(self, timeout_s: float | None) -> str | None:
        """The server's next answer; None once it has ended; subprocess.TimeoutExpired after timeout_s."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                raise subprocess.TimeoutExpired(self.proc.args, timeout_s)
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def stop(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


class ForkedProcess:
    """subprocess.Popen's wait, poll and kill for a point process forked by a ForkServer: its exit code comes from
    the server. poll() from another thread while one waits answers None (still running)."""

    def __init__(self, server: ForkServer, pid: int):
        self.server, self.pid, self.returncode = server, pid, None
        self.lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> int:
        with self.lock:
            return self._collect(timeout)

    def poll(self) -> int | None:
        if not self.lock.acquire(blocking=False):
            return None  # another thread waits for it
        try:
            return self._collect(0)
        except subprocess.TimeoutExpired:
            return None
        finally:
            self.lock.release()

    def _collect(self, timeout: float | None) -> int:
        """The exit code, read from the server once (the lock held)."""
        if self.returncode is None:
            line = self.server.read_line(timeout)
            self.returncode = -signal.SIGKILL if line is None else int(line)  # the server gone: so is its child
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def serve() -> None:
    """The server: import what a point imports, then fork one child per request line, one at a time. Before the first
    point of each model, the model's code is imported too (transformers imports a model family's module on first
    use, 1-2 s), by building it on the meta device: no weights, no arithmetic, so still no thread pool."""
    replies = os.dup(1)
    os.dup2(2, 1)  # anything printed here goes where stderr goes, never into the answers
    from ...models import count_params, get_entry
    from .. import point

    prepared: set[str] = set()
    for line in sys.stdin:
        request = json.loads(line)
        if request["model"] not in prepared:
            prepared.add(request["model"])
            try:
                count_params(get_entry(request["model"]))
            except Exception:  # noqa: BLE001 - the point meets the same error and reports it
                pass
        pid = os.fork()
        if pid == 0:
            _run_child(point, request, replies)
        os.write(replies, f"{pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        os.write(replies, f"{os.waitstatus_to_exitcode(status)}\n".encode())


def _run_child(point, request: dict, replies: int) -> None:
    """In the forked child: output into the log, stdin from /dev/null, ended with the server; run the point."""
    code = 1
    try:
        os.close(replies)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        die_with_parent()  # with the server
        code = point.main(request["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - the log keeps the traceback; the driver sees the exit code
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve()
