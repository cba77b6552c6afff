"""Keep the CPU cores busy while a command runs, to check that the suite passes on a loaded machine (slower, not red).

    python tests/cpu_hog.py -- make test            # two busy loops (one per core) while `make test` runs
    python tests/cpu_hog.py --workers 4 --seconds 600 -- CMD ...
    python tests/cpu_hog.py --seconds 60            # no command: only the load, for that long

Each busy loop is a child process of its own; they are stopped when the command ends, after --seconds, or when this
script is interrupted or terminated. The exit code is the command's (0 with no command).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import time


def spin(seconds: float) -> None:
    """Busy until `seconds` have passed: one core's worth of load."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(100_000):
            n += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="busy loops, one per core by default")
    parser.add_argument("--seconds", type=float, default=3600, help="stop the loops after this long at most")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run under the load")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.workers < 1 or args.seconds <= 0:
        parser.error("--workers must be 1 or more and --seconds above 0")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    hogs = [multiprocessing.Process(target=spin, args=(args.seconds,), daemon=True) for _ in range(args.workers)]
    for hog in hogs:
        hog.start()
    print(f"cpu_hog: {args.workers} busy loops for {args.seconds:.0f} s at most", file=sys.stderr, flush=True)
    try:
        if command:
            return subprocess.call(command)
        for hog in hogs:
            hog.join()
        return 0
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.join()
        print("cpu_hog: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
