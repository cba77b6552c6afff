"""The pool and slurm (submitit, local jobs: real subprocesses) executors give the local executor's rows;
--no-wait then collect gathers them once; bad executor input is one line, exit 2."""

import os
import signal
import subprocess
import sys

import pytest
from cli_runs import REPO, run_cli, run_main
from waiting import HANG_GUARD_S, wait_for

from bench.config.presets import make_sweep_config
from bench.results.read import read_rows
from bench.run.sweep import run_sweep

CORES = len(os.sched_getaffinity(0))


def sweep(**overrides):
    values = dict(models=["llama-2m"], tasks=["profile"], methods=["lora", "vera"], ranks=[2], batch_sizes=[2],
                  seq_lens=[16], warmup_steps=1, timed_steps=2, threads=1)
    values.update(overrides)
    return make_sweep_config(None, values)


def key(row):
    return row["point_id"], row["status"], str(row.get("trainable_params"))


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    """The local executor's rows of the sweep above (in process: the same points, the same counts)."""
    rows = run_sweep(sweep(isolate=False), str(tmp_path_factory.mktemp("local") / "run"), ["test"], log=print)
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
    return sorted(map(key, rows))


@pytest.mark.skipif(CORES < 2, reason="two pool workers need two cores")
def test_pool_of_two_single_thread_workers_gives_the_local_rows(local_rows, tmp_path):
    rows = run_sweep(sweep(executor={"kind": "pool", "workers": 2}), str(tmp_path / "run"), ["test"], log=print)
    assert sorted(map(key, rows)) == local_rows
    written = read_rows(str(tmp_path / "run" / "results.csv"))
    assert {r["executor"] for r in written} == {"pool"} and {r["device"] for r in written} == {"cpu"}


def test_pool_workers_times_threads_beyond_the_cores_is_refused_unless_allowed(tmp_path):
    result = run_cli("run", "--preset", "profile-quick", "--executor", "pool", "--workers", str(CORES),
                     "--threads", "2", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (f"{CORES} pool workers x 2 threads need {2 * CORES} cores and this machine has {CORES}: timings of points "
            "that share cores are not comparable") in result.stderr
    assert not (tmp_path / "run" / "results.csv").exists()
    from bench.run.executors.pool import PoolExecutor, PoolSettings

    settings = PoolSettings(workers=CORES, allow_shared_timing=True)
    assert PoolExecutor(settings, sweep(device="cpu", threads=2), str(tmp_path)).name == "pool+shared-timing"


@pytest.mark.parametrize("visible, expected", [(None, ["0", "1"]), ("2,3", ["2", "3"]), ("3, 1,0", ["3", "1"])])
def test_pool_slots_name_the_gpus_this_process_sees(monkeypatch, visible, expected):
    """A pool inside a job pinned to GPUs 2 and 3 gives its slots 2 and 3: a child's index 0 is the physical GPU 0."""
    from bench.run.executors.pool import visible_gpus

    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_gpus(2) == expected


def test_submitit_local_jobs_give_the_local_rows(local_rows, tmp_path):
    config = sweep(executor={"kind": "slurm", "slurm_cluster": "local", "slurm_array_parallelism": 2})
    rows = run_sweep(config, str(tmp_path / "run"), ["test"], log=print)
    assert sorted(map(key, rows)) == local_rows
    assert {r["executor"] for r in read_rows(str(tmp_path / "run" / "results.csv"))} == {"slurm"}


def test_no_wait_then_collect_gathers_every_row_once(local_rows, tmp_path):
    run_dir = str(tmp_path / "run")
    args = ["--models", "llama-2m", "--tasks", "profile", "--methods", "lora,vera", "--ranks", "2", "--batch-sizes",
            "2", "--seq-lens", "16", "--threads", "1", "--out", run_dir]
    (tmp_path / "sweep.toml").write_text("warmup_steps = 1\ntimed_steps = 2\n"
                                         '[executor]\nkind = "slurm"\nslurm_cluster = "local"\n')
    submitted = run_cli("run", "--config", str(tmp_path / "sweep.toml"), *args, "--no-wait")
    assert submitted.returncode == 0, submitted.stderr
    assert "2 points submitted as jobs" in submitted.stdout and not read_rows(os.path.join(run_dir, "results.csv"))
    # jobs out: another executor is refused (the same one would wait for them)
    again = run_main("run", "--config", str(tmp_path / "sweep.toml"), *args, "--executor", "local")
    assert again.returncode == 2 and "collect" in again.stderr, again.stderr

    def collected_both():  # collect in this process: a fresh one each time would spend seconds on its imports
        result = run_main("collect", run_dir)
        assert result.returncode == 0, result.stderr
        return len(read_rows(os.path.join(run_dir, "results.csv"))) == 2

    wait_for(collected_both, poll_s=2)
    rows = read_rows(os.path.join(run_dir, "results.csv"))
    assert sorted(map(key, rows)) == local_rows
    twice = run_cli("collect", run_dir)
    assert twice.returncode == 0 and "0 rows collected" in twice.stdout, twice.stdout + twice.stderr
    assert read_rows(os.path.join(run_dir, "results.csv")) == rows


@pytest.mark.parametrize("args, message", [
    (["--executor", "slurm"], "--executor slurm: no SLURM here ("),
    (["--executor", "pool", "--no-wait"], "--no-wait needs --executor slurm"),
    (["--executor", "pool", "--in-process"], "works with the local executor only"),
    (["--tasks", "sst2", "--data-dir", "/no/such/data", "--executor", "pool"], "data_dir /no/such/data does not exist"),
])
def test_bad_executor_input_is_one_line_exit_2(tmp_path, args, message):
    no_slurm = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # where this machine has SLURM, hide it
    result = run_main("run", "--preset", "profile-quick", "--threads", "1", *args, "--out", str(tmp_path / "run"),
                      env=no_slurm)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_engine_names_the_extra_to_install(tmp_path):
    for module, kind, extra in (("ray", "ray", ".[ray]"), ("submitit", "slurm", ".[slurm]")):
        code = (f"import sys; sys.modules[{module!r}] = None; from bench.cli import main; "
                f"sys.exit(main(['run', '--preset', 'profile-quick', '--executor', {kind!r}, '--slurm-cluster', "
                f"'local', '--out', {str(tmp_path / kind)!r}]))")
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert result.returncode == 2 and f"pip install -e '{extra}'" in result.stderr, result.stderr


def test_a_job_warned_twice_is_requeued_once_then_runs_on_until_the_scheduler_ends_it(tmp_path):
    """SIGUSR2 to the job's task, as SLURM sends before the time limit or a preemption: the first requeues the job
    (its task starts again), the second is let be (the task runs on); the job then ends without a result (here
    cancelled, as SLURM would stop it) and its row is failed. tests/bench/run/test_slurm_cluster.py does it on SLURM."""

    psutil = pytest.importorskip("psutil")
    from bench.config.grid import expand_grid
    from bench.run.executors.slurm import SlurmExecutor, SlurmSettings, job_payload
    from bench.run.executors.worker import run_point_payload

    settings = SlurmSettings(slurm_cluster="local", slurm_array_parallelism=1)
    executor = SlurmExecutor(settings, sweep(point_timeout_s=600, timed_steps=10**7), str(tmp_path))
    point = expand_grid(sweep(timed_steps=10**7))[0]
    executor.submit([point], run_point_payload)
    job, point_dict = executor.running[point.point_id]

    def running_task(not_pid=None):
        """The job's task (not the one signalled before) once it runs its point process: its handler is in place."""
        for task in psutil.Process(int(job.job_id)).children():
            try:
                if task.pid != not_pid and any("bench.run.point" in c.cmdline() for c in task.children()):
                    return task
            except psutil.NoSuchProcess:
                continue
        return None

    def signal_task(not_pid=None):
        assert wait_for(lambda: running_task(not_pid) is not None), "the job's point did not start"
        task = running_task(not_pid)
        task.send_signal(signal.SIGUSR2)
        return task

    warned_again = "warned again (time limit or preemption) after one requeue"
    try:
        first = signal_task()
        second = signal_task(not_pid=first.pid)  # started again: requeued once
        # the handler of the second warning writes this as it returns: the task then runs on
        wait_for(lambda: warned_again in (job.stderr() or "") or not second.is_running())
        assert warned_again in job.stderr()
        assert second.is_running() and not job.paths.result_pickle.exists(), "the second warning ended the job"
        # SLURM ends a job by killing all its processes; submitit's local cancel signals only its controller, whose
        # task would wait for a point of 10^7 steps: the job's whole tree goes, as on SLURM
        tree = psutil.Process(int(job.job_id)).children(recursive=True)
        job.cancel()
        for proc in tree:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        wait_for(lambda: job_payload(job, "local", point_dict) is not None)
        payload = job_payload(job, "local", point_dict)
        assert payload["row"]["status"] == "failed" and payload["row"]["point_id"] == point.point_id
        assert f"job {job.job_id} (local) ended without a result" in payload["row"]["error"], payload["row"]["error"]
    finally:
        executor.close()


def test_a_point_job_unpickles_without_importing_torch(tmp_path):
    """SLURM's warning can come seconds after a job starts, and submitit's handler is set once the job's pickle
    has loaded: the pickle names its worker, whose imports (torch) come after."""
    import cloudpickle

    from bench.run.slurm_job import PointJob

    path = tmp_path / "job.pkl"
    path.write_bytes(cloudpickle.dumps(PointJob("bench.run.executors.worker:run_point_payload", 60)))
    code = (f"import pickle, sys; job = pickle.load(open({str(path)!r}, 'rb')); "
            "heavy = [m for m in ('torch', 'transformers', 'bench.run.executors') if m in sys.modules]; "
            "assert not heavy, heavy; print(job.worker)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0 and "run_point_payload" in result.stdout, result.stderr


# --- point processes forked from a server (bench/run/executors/forkserver.py) --------------------------------


def test_forked_points_give_a_fresh_process_s_rows_and_skip_its_imports(tmp_path, monkeypatch):
    """A point in a fresh process, then two forked from one server, which had imported torch before it forked them
    (libtorch in its memory maps), so they skip those imports: equal exact counts. The time that saves is measured by
    tests/benchmarks/executor_overhead.py."""
    from dataclasses import asdict

    import psutil

    from bench.columns import COLUMNS
    from bench.config.grid import expand_grid
    from bench.run.executors import worker

    points = [asdict(p) for p in expand_grid(sweep())]
    exact = [c.name for c in COLUMNS if c.compare == "exact"]
    servers, start_forked = [], worker._start_forked

    def start_recorded(*args):
        proc = start_forked(*args)  # None: a fresh process runs the point, not a forked one
        server = None if proc is None else psutil.Process(proc.server.proc.pid)
        servers.append(server and (server.pid, any("libtorch" in m.path for m in server.memory_maps())))
        return proc

    monkeypatch.setattr(worker, "_start_forked", start_recorded)
    try:
        fresh = worker.run_point_payload(points[0], 600)
        forked = [worker.run_point_forked(point, 600) for point in points]
    finally:
        worker.stop_fork_servers()
    for payload in (fresh, *forked):
        assert payload["row"]["status"] == "ok", (payload["row"]["error"], payload["log"])
    rows = [{c: payload["row"].get(c) for c in exact} for payload in (fresh, *forked)]
    assert rows[1] == rows[0] and rows[2] != rows[1]
    assert len(servers) == 2 and servers[0] == servers[1] and servers[0][1], servers


def test_a_forked_point_past_its_timeout_is_killed_and_a_crashing_one_keeps_its_traceback(tmp_path, monkeypatch):
    """The point past its timeout is stopped (SIGSTOP) as soon as it is forked, as a hung point: its timeout fires
    whatever the machine's speed."""
    from dataclasses import asdict

    import psutil

    from bench.config.grid import expand_grid
    from bench.run.executors import worker

    (tmp_path / "broken-model").mkdir()
    (tmp_path / "broken-model" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    [endless] = [asdict(p) for p in expand_grid(sweep(methods=["lora"], timed_steps=10**7))]
    [broken] = [asdict(p) for p in expand_grid(sweep(methods=["lora"], models=[str(tmp_path / "broken-model")]))]
    children = set()
    start_forked = worker._start_forked

    def start_recorded(argv, log_path, model, env):
        proc = start_forked(argv, log_path, model, env)
        children.add(proc.pid)  # None here would mean a fresh process ran it: the test is about forked ones
        if model == "llama-2m":
            os.kill(proc.pid, signal.SIGSTOP)
        return proc

    monkeypatch.setattr(worker, "_start_forked", start_recorded)
    try:
        crashed = worker.run_point_forked(broken, 600)
        timed_out = worker.run_point_forked(endless, 2)
    finally:
        worker.stop_fork_servers()
    assert crashed["row"]["status"] == "failed" and "Traceback" in crashed["log"], crashed
    assert timed_out["row"]["status"] == "failed" and "point_timeout_s=2;" in timed_out["row"]["error"], timed_out["row"]
    assert len(children) == 2 and not any(psutil.pid_exists(pid) for pid in children)
