"""What multiprocessing's forkserver imports before it forks point processes (run/point_fork.py): what a point spends
seconds importing (torch, transformers, giva and the harness), so that each point forked from it starts at once.
Imported by that server only.

SLURM sends its time-limit warning (SIGUSR2) to every process of a job; the job's own process acts on it
(run/slurm_job.py), and the server, like the point, ignores it.
"""

import signal

import bench.run.point  # noqa: F401

signal.signal(signal.SIGUSR2, signal.SIG_IGN)
