"""The callable a SLURM job runs for one point (pickled by submitit), kept light to unpickle.

SLURM warns a job (SIGUSR2) some seconds before its time limit or a preemption, and submitit sets its handler for
that signal only once the job's pickle is loaded; until then the signal kills the job. This module imports nothing
of bench, and the worker is named, not pickled, so the pickle loads in about a second; the worker's imports (torch,
transformers: tens of seconds on a busy node) happen after the handler is set. It lives outside run/executors/,
whose package imports the other executors and with them torch.

    job = PointJob("bench.run.executors.worker:run_point_payload", timeout_s=3600)
    payload = job(point_dict)       # in the job: the worker's payload
"""

from __future__ import annotations

import importlib
import signal
import sys


class PointJob:
    """One point's job. Warned of its time limit or a preemption, it is requeued once, from the start (submitit
    calls checkpoint); warned again, it runs on until the scheduler ends it, whose state the row then names."""

    def __init__(self, worker: str, timeout_s: int):
        self.worker, self.timeout_s, self.requeued = worker, timeout_s, False  # worker: "module:function"

    def __call__(self, point: dict) -> dict:
        if self.requeued:  # submitit's handler would end the job at once, and the point may still finish in time
            import submitit

            signal.signal(submitit.JobEnvironment._usr_sig(), _warned_again)
        module, name = self.worker.split(":")
        return getattr(importlib.import_module(module), name)(point, self.timeout_s)

    def checkpoint(self, point: dict):
        """Called by submitit on the job's first warning: the job is requeued with this copy."""
        import submitit

        self.requeued = True
        return submitit.helpers.DelayedSubmission(self, point)


def _warned_again(signum, frame) -> None:
    print("giva-bench: warned again (time limit or preemption) after one requeue; the point runs on until the "
          "scheduler stops the job", file=sys.stderr, flush=True)
