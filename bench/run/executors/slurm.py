"""`slurm`: points as a SLURM job array through submitit, or as submitit's local jobs (real subprocesses here).

Each job runs the worker it is handed (a fresh process per point) and its result comes back through submitit's
files in RUN_DIR/slurm/; the driver writes the rows. SLURM warns a job before its time limit or a preemption
(SIGUSR2); on the first warning the job is requeued from the start (submitit checkpointing), a second warning is
let be, and SLURM ends the job: its row is failed and names SLURM's state (TIMEOUT, PREEMPTED, CANCELLED ...).
Submitted jobs are noted in RUN_DIR/slurm/jobs.json until their rows are written. With no_wait the driver submits
and returns; `run_bench.py collect RUN_DIR` gathers what has finished, as often as needed. A rerun of the sweep
with the same cluster takes the noted jobs over (a killed driver's, or --no-wait's) instead of submitting their
points again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from ...config.sweep import Point, SweepConfig
from ...results.write import write_atomic
from ..slurm_job import PointJob
from .worker import REPO_ROOT, failed_payload

LOG_TAIL_CHARS = 1 << 16  # of a job that ended without a result, the end of its stderr goes into the point's log
SIGNAL_DELAY_S = 10  # SLURM's warning (SIGUSR2) before a job's time limit; see SlurmExecutor
JOBS_FILE = "jobs.json"  # {"cluster": ..., "jobs": {point_id: {"job_id": ..., "point": {...}}}}, pending jobs only


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise ValueError("--executor slurm needs submitit: pip install -e '.[slurm]'") from None
    return submitit


CLUSTERS = ("slurm", "local")  # submitit's: a SLURM cluster, or its local jobs (real subprocesses here)


@dataclass
class SlurmSettings:
    """slurm's keys of the [executor] table, and `run`'s flags of the same names."""

    slurm_cluster: str = field(default="slurm", metadata={
        "help": "slurm: 'local' tries it on this machine with submitit's local jobs", "choices": CLUSTERS})
    slurm_partition: str = field(default="", metadata={"help": "slurm: partition (default the cluster's)"})
    slurm_gpus_per_task: int = field(default=-1, metadata={"help": "slurm: GPUs per point (default 1 when --device "
                                                                  "is cuda, else 0)"})
    slurm_time_min: int = field(default=0, metadata={"help": "slurm: job time limit in minutes (default "
                                                             "point_timeout_s + 5 min)"})
    slurm_array_parallelism: int = field(default=0, metadata={"help": "slurm: jobs at once (default 256; 1 for "
                                                                      "local jobs)"})
    # refused_elsewhere: set with another executor, this setting is an error (saying why) rather than ignored
    no_wait: bool = field(default=False, metadata={
        "help": "slurm: submit and return; gather the rows with `collect RUN_DIR`",
        "refused_elsewhere": "the other executors run with the driver"})

    def __post_init__(self):
        if self.slurm_cluster not in CLUSTERS:
            raise ValueError(f"unknown SLURM cluster {self.slurm_cluster!r}; use slurm, or local (submitit's local "
                             "jobs)")
        if self.slurm_array_parallelism < 0:
            raise ValueError(f"slurm_array_parallelism={self.slurm_array_parallelism} must be >= 0 (0: 256 on "
                             "SLURM, 1 for local jobs)")


class SlurmExecutor:
    name = "slurm"
    summary = "a SLURM job array (submitit)"
    Settings = SlurmSettings
    runs_here = False  # points run on other machines

    def __init__(self, settings: SlurmSettings, config: SweepConfig, run_dir: str):
        timeout_s, cluster, partition = config.point_timeout_s, settings.slurm_cluster, settings.slurm_partition
        gpus_per_task = settings.slurm_gpus_per_task
        if gpus_per_task < 0:  # one GPU per point when the points ask for CUDA
            gpus_per_task = int(config.device.startswith("cuda"))
        time_min, array_parallelism = settings.slurm_time_min, settings.slurm_array_parallelism
        threads, no_wait = config.threads, settings.no_wait
        submitit = import_submitit()
        missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
        if cluster == "slurm" and missing:
            raise ValueError(f"--executor slurm: no SLURM here ({' and '.join(missing)} not found); run where sbatch "
                             "works, or try it on this machine with --slurm-cluster local")
        self.folder = os.path.join(os.path.abspath(run_dir), "slurm")
        self.cluster, self.no_wait, self.timeout_s = cluster, no_wait, timeout_s
        self.parallelism = array_parallelism
        # jobs import this code: on SLURM through the shared file system, here through the inherited environment
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
        self.executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster, slurm_max_num_timeout=1,
                                              local_max_num_timeout=1)
        time_min = time_min or max(1, -(-timeout_s // 60) + 5)
        parameters = dict(timeout_min=time_min, cpus_per_task=max(1, threads), tasks_per_node=1, nodes=1,
                          gpus_per_node=gpus_per_task, name="giva-bench")
        if cluster == "slurm":
            # SLURM warns a job this long before its limit, and up to 30 s earlier (its check runs every 30 s): the
            # job has nothing to save, so 10 s (submitit's default is 90) leaves the point its time, and a job with a
            # 1-minute limit has started when the warning comes
            parameters.update(slurm_array_parallelism=array_parallelism or 256,
                              slurm_signal_delay_s=SIGNAL_DELAY_S,
                              slurm_setup=[f"export PYTHONPATH={REPO_ROOT}:$PYTHONPATH"])
            if partition:
                parameters["slurm_partition"] = partition
        self.executor.update_parameters(**parameters)
        self.run_dir = run_dir
        self.running: dict = {}  # point_id -> (job, point as a dict)

    def run(self, points: list[Point], worker: Callable) -> Iterator[dict]:
        """Submit the points (at most array_parallelism at once for local jobs) and yield payloads as they end;
        points whose jobs were submitted earlier and are noted in jobs.json are waited for, not submitted again."""
        self._take_over(points)
        waiting = [p for p in reversed(points) if p.point_id not in self.running]
        while waiting or self.running:
            limit = len(waiting) if self.cluster == "slurm" or self.no_wait else (self.parallelism or 1)
            batch = [waiting.pop() for _ in range(min(len(waiting), limit - len(self.running)))]
            if batch:
                self.submit(batch, worker)
            if self.no_wait:
                return
            for point_id, (job, point) in list(self.running.items()):
                payload = job_payload(job, self.cluster, point)
                if payload is not None:
                    del self.running[point_id]
                    self._save_jobs()
                    yield payload
            time.sleep(0.5)

    def submit(self, points: list[Point], worker: Callable) -> None:
        """Submit the points as one batch (a job array on SLURM) and note the jobs in jobs.json."""
        job_fn = PointJob(f"{worker.__module__}:{worker.__name__}", self.timeout_s)
        dicts = [asdict(p) for p in points]
        with self.executor.batch():
            jobs = [self.executor.submit(job_fn, point) for point in dicts]
        for point, job in zip(dicts, jobs):
            self.running[Point(**point).point_id] = (job, point)
        self._save_jobs()

    def _take_over(self, points: list[Point]) -> None:
        folder, cluster, jobs = load_jobs(self.run_dir)
        wanted = {p.point_id for p in points}
        for point_id, entry in jobs.items():
            if point_id in wanted:
                self.running[point_id] = (job_handle(folder, cluster, entry["job_id"]), entry["point"])

    def _save_jobs(self) -> None:
        jobs = {pid: {"job_id": job.job_id, "point": point} for pid, (job, point) in self.running.items()}
        save_jobs(self.folder, self.cluster, jobs)

    def close(self) -> None:
        if self.no_wait:
            return
        for job, _ in self.running.values():
            job.cancel(check=False)
        self.running = {}
        save_jobs(self.folder, self.cluster, {})

    @staticmethod
    def pending_jobs(run_dir: str) -> int:
        """Jobs submitted and not yet gathered (--no-wait, or a driver killed while they ran)."""
        return len(load_jobs(run_dir)[2])

    @staticmethod
    def takes_over(settings: SlurmSettings, run_dir: str) -> bool:
        """Whether a sweep with these settings waits for the run's pending jobs (their cluster is the same)."""
        return load_jobs(run_dir)[1] == settings.slurm_cluster

    @staticmethod
    def collect_jobs(run_dir: str) -> tuple[list[dict], int]:
        """(payloads of the jobs that ended, how many still run); safe to repeat."""
        return collect_finished(run_dir)


def save_jobs(folder: str, cluster: str, jobs: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    write_atomic(os.path.join(folder, JOBS_FILE), json.dumps({"cluster": cluster, "jobs": jobs}, indent=1))


def load_jobs(run_dir: str) -> tuple[str, str, dict]:
    """(folder, cluster, {point_id: {"job_id", "point"}}) of the jobs submitted and not yet gathered."""
    folder = os.path.join(os.path.abspath(run_dir), "slurm")
    path = os.path.join(folder, JOBS_FILE)
    if not os.path.exists(path):
        return folder, "", {}
    with open(path) as f:
        data = json.load(f)
    return folder, data["cluster"], data["jobs"]


def collect_finished(run_dir: str) -> tuple[list[dict], int]:
    """Payloads of the submitted jobs that have ended (removed from jobs.json), and how many still run."""
    folder, cluster, jobs = load_jobs(run_dir)
    if not jobs:
        return [], 0
    payloads = []
    for point_id, entry in list(jobs.items()):
        job = job_handle(folder, cluster, entry["job_id"])
        payload = job_payload(job, cluster, entry["point"])
        if payload is not None:
            payloads.append(payload)
            del jobs[point_id]
    save_jobs(folder, cluster, jobs)
    return payloads, len(jobs)


def job_handle(folder: str, cluster: str, job_id: str):
    """submitit's handle on a job submitted earlier, by its id."""
    submitit = import_submitit()
    return (submitit.SlurmJob if cluster == "slurm" else submitit.LocalJob)(folder, job_id)


# SLURM's states of a job it stopped (sacct's, first word) -> what that means for the point
SLURM_ENDINGS = {
    "TIMEOUT": "past its time limit again after one requeue; raise --slurm-time-min or shrink the point",
    "PREEMPTED": "preempted again after one requeue",
    "CANCELLED": "cancelled (scancel, or the cluster's administrator)",
    "NODE_FAIL": "its node failed",
    "OUT_OF_MEMORY": "out of memory on its node",
}


def job_payload(job, cluster: str, point: dict) -> dict | None:
    """The payload of an ended job (a failed row when it ended without one), or None while it runs."""
    if not job.paths.result_pickle.exists():
        if cluster == "slurm":
            if not job.done():
                return None
        elif _local_job_alive(job):
            return None
    try:
        payload = job.result()
    except Exception as e:  # noqa: BLE001 - timed out, preempted, cancelled, killed, lost: the reason goes in the row
        payload, reason = None, " ".join(str(e).split()) or type(e).__name__
        if "No module named 'bench." in reason:  # pickled by a version whose module paths have moved since
            module = reason.split("No module named ", 1)[1].split()[0]
            reason = (f"it was submitted by another version of giva-bench, whose module {module} this one does not "
                      "have; run the point again with this version: run_bench.py run --retry-failed")
    else:
        if cluster != "slurm" or payload["row"]["status"] != "failed":
            return payload
        reason = payload["row"]["error"]
    if cluster == "slurm":
        # SLURM stopping a job (time limit, preemption, scancel) kills its point, whose row then says only that:
        # the job's state, once it has ended, names the reason
        if not job.watcher.is_done(job.job_id, mode="force"):
            return None
        state = job.state
        if state.split(" ")[0] in SLURM_ENDINGS:
            error = f"job {job.job_id} (slurm) ended {state}: {SLURM_ENDINGS[state.split(' ')[0]]}"
            return {**failed_payload(point, error), "log": payload["log"] if payload else _job_stderr(job)}
    if payload is not None:
        return payload
    return {**failed_payload(point, f"job {job.job_id} ({cluster}) ended without a result: {reason[:300]}"),
            "log": _job_stderr(job)}


def _job_stderr(job) -> str:
    """The end of the job's own stderr (submitit's log of it), for the point's log."""
    try:
        return (job.stderr() or "")[-LOG_TAIL_CHARS:]
    except OSError:
        return ""


def _local_job_alive(job) -> bool:
    """A local job's id is its controller's pid; after the driver exited, the process is all there is to ask."""
    if getattr(job, "_process", None) is not None:
        return job._process.poll() is None
    try:
        os.kill(int(job.job_id), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True
