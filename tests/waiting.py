"""Waiting in a test for what another process does: until it is so, or until the process that would do it ends.

    wait_for(lambda: len(read_rows(path)) >= 2, driver)   # True once so; False if the driver ended first

No wall-clock limit decides a test here: HANG_GUARD_S only turns a hang into a failure (never into a pass) well after
anything waited for here should be so (seconds to a few minutes, on a loaded machine included).
"""

from __future__ import annotations

import time

HANG_GUARD_S = 1800


def wait_for(condition, process=None, poll_s: float = 0.2) -> bool:
    """Poll condition() every poll_s until it holds (True), or until `process` (a subprocess.Popen, or anything with
    poll()) has ended without it (False); a hang past HANG_GUARD_S is an AssertionError."""
    guard = time.monotonic() + HANG_GUARD_S
    while not condition():
        if process is not None and process.poll() is not None:
            return condition()
        if time.monotonic() > guard:
            raise AssertionError(f"not so after {HANG_GUARD_S} s: a hang")
        time.sleep(poll_s)
    return True
