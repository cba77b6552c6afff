"""The slurm executor on a real one-node SLURM with accounting (the slurm_cluster fixture, tests/cluster/slurm.sh):
job arrays, their parallelism, --no-wait and collect, a killed driver, scancel, and a time limit with its requeue.

Tiny llama-2m profile points; each test gives its points a sequence length of its own, which finds their processes.
SLURM checks time limits every 30 s and takes them in whole minutes, so the time-limit case takes two minutes or
more: its job is submitted as this module starts (conftest.py's slurm_timeout_run) and checked by the module's
last test. Under pytest-xdist one worker runs this module, first.
"""

import os
import signal
import subprocess
import sys
import threading

import cli_runs
import pytest
from held_points import held_cache, method_options_toml, release
from point_processes import point_processes
from slurm_runs import job_ids, sacct, write_sweep
from cli_runs import REPO
from waiting import wait_for

from bench.config.presets import load_sweep_file, make_sweep_config
from bench.results.read import read_rows
from bench.run.sweep import collect, run_sweep

# One worker runs them all (one cluster, one job queue), before the other tests (conftest.py)
pytestmark = [pytest.mark.usefixtures("slurm_cluster"), pytest.mark.xdist_group("slurm")]


@pytest.fixture(scope="module", autouse=True)
def submit_the_time_limit_job_first(request):
    """The time-limit case waits two minutes or more on SLURM's clock: its job is submitted as this module starts,
    so that the wait passes while the module's other tests run. A failure here (no SLURM) is left to that test,
    which meets it again from the fixture's cache."""
    try:
        request.getfixturevalue("slurm_timeout_run")
    except (Exception, pytest.skip.Exception, pytest.fail.Exception):  # noqa: BLE001
        pass
# three points: LoRA r2 and r4, VeRA r2 (method_options gives VeRA its own ranks)
ARRAY_SWEEP = dict(models=["llama-2m"], tasks=["profile"], methods=["lora", "vera"], ranks=[2, 4],
                   method_options={"vera": {"ranks": [2]}}, batch_sizes=[2], seq_lens=[16], warmup_steps=1,
                   timed_steps=2, threads=1)


def run_cli(*args) -> subprocess.CompletedProcess:
    return cli_runs.run_cli(*args, env={**os.environ, "OMP_NUM_THREADS": "1"})


def collect_until(run_dir: str, rows: int) -> list[dict]:
    """Collect (in this process: the code `run_bench.py collect` runs) every 2 s until results.csv holds this many
    rows."""
    results = os.path.join(run_dir, "results.csv")

    def collected() -> bool:
        collect(run_dir, log=print)
        return len(read_rows(results)) >= rows

    wait_for(collected, poll_s=2)
    return read_rows(results)


def key(row):
    return row["point_id"], row["status"], str(row.get("trainable_params"))


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    """The local executor's rows of the points the array test runs (in process: same points, same counts)."""
    config = make_sweep_config(None, dict(ARRAY_SWEEP, isolate=False))
    rows = run_sweep(config, str(tmp_path_factory.mktemp("local") / "run"), ["test"], log=print)
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
    return {key(r)[0]: key(r) for r in rows}


@pytest.fixture(autouse=True)
def cancel_leftover_jobs(tmp_path):
    """A test that fails part way leaves no job of its runs (under its tmp_path) running."""
    yield
    for slurm_dir in tmp_path.glob("*/slurm"):
        subprocess.run(["scancel", *job_ids(str(slurm_dir.parent))], capture_output=True)


def test_a_job_array_gives_the_local_rows_and_runs_at_most_array_parallelism_tasks_at_once(local_rows, tmp_path):
    """Three points, one array, at most two tasks at once on a node with room for eight (squeue, every 0.2 s)."""
    running_seen, stop = [], threading.Event()

    def watch():
        while not stop.wait(0.2):
            out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%F %i"], capture_output=True, text=True)
            running_seen.append([line.split()[0] for line in out.stdout.splitlines()])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    executor = {"kind": "slurm", "slurm_array_parallelism": 2}
    config = make_sweep_config(None, dict(ARRAY_SWEEP, executor=executor))
    try:
        rows = run_sweep(config, str(tmp_path / "run"), ["test"], log=print)
    finally:
        stop.set()
        watcher.join()
    assert sorted(map(key, rows)) == sorted(local_rows.values())
    written = read_rows(str(tmp_path / "run" / "results.csv"))
    assert {r["executor"] for r in written} == {"slurm"} and {r["device"] for r in written} == {"cpu"}
    [array] = job_ids(str(tmp_path / "run"))
    assert sorted(sacct(array)) == [(f"{array}_{i}", "COMPLETED") for i in range(3)]
    most = max(sample.count(array) for sample in running_seen)
    assert most == 2, f"at most {most} of the array's tasks ran at once; asked for 2"
    cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()
    assert int(cpus[0]) > 2, "the node must have room for more tasks than the limit, or the test shows nothing"


def test_no_wait_then_collect_twice_gathers_every_row_once(local_rows, tmp_path):
    run_dir = str(tmp_path / "run")
    sweep = write_sweep(tmp_path / "sweep.toml", 16)
    submitted = run_cli("run", "--config", sweep, "--out", run_dir, "--no-wait")
    assert submitted.returncode == 0, submitted.stderr
    assert "2 points submitted as jobs" in submitted.stdout
    assert not read_rows(os.path.join(run_dir, "results.csv"))
    [array] = job_ids(run_dir)
    local = make_sweep_config(None, {**load_sweep_file(sweep), "executor": {"kind": "local"}})
    with pytest.raises(ValueError, match="were submitted as jobs and not gathered; run `run_bench.py collect"):
        run_sweep(local, run_dir, ["test"])  # another executor cannot wait for the jobs
    rows = collect_until(run_dir, 2)
    assert sorted(map(key, rows)) == sorted(local_rows[key(r)[0]] for r in rows) and len(rows) == 2
    assert {r["executor"] for r in rows} == {"slurm"}
    again = run_cli("collect", run_dir)
    assert again.returncode == 0 and "0 rows collected" in again.stdout, again.stdout + again.stderr
    assert read_rows(os.path.join(run_dir, "results.csv")) == rows
    assert sorted(sacct(array)) == [(f"{array}_0", "COMPLETED"), (f"{array}_1", "COMPLETED")]


def test_a_killed_driver_rerun_takes_its_jobs_over_and_records_every_point_once(tmp_path):
    """Two points, one at a time: the driver is killed once the first row is in, the second point (GiVA) held
    (tests/held_points.py); released, the rerun waits for its job (submitted by the killed driver) instead of
    submitting it again."""
    run_dir = str(tmp_path / "run")
    sweep = write_sweep(tmp_path / "sweep.toml", 20, methods=("lora", "giva"), slurm_array_parallelism=1)
    cache = held_cache(tmp_path / "cache")
    with open(sweep, "a") as f:
        f.write(method_options_toml(cache))
    args = [sys.executable, "run_bench.py", "run", "--config", sweep, "--out", run_dir, "--no-report"]
    driver = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = os.path.join(run_dir, "results.csv")
    assert wait_for(lambda: read_rows(results), driver), "the driver ended before its first row"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = read_rows(results)
    assert [r["method"] for r in before] == ["lora"], "kill the driver part way"
    release(cache)
    rerun = run_cli("run", "--config", sweep, "--out", run_dir, "--no-report")
    assert rerun.returncode == 0, rerun.stderr
    rows = read_rows(results)
    assert rows[:1] == before
    assert len(rows) == 2 and len({r["point_id"] for r in rows}) == 2 and {r["status"] for r in rows} == {"ok"}
    [array] = job_ids(run_dir)  # one submission: the rerun submitted nothing
    assert sorted(sacct(array)) == [(f"{array}_0", "COMPLETED"), (f"{array}_1", "COMPLETED")]


def test_a_point_cancelled_with_scancel_is_a_failed_row_naming_it(tmp_path):
    """The point is held (tests/held_points.py): it is still running when scancel comes."""
    run_dir = str(tmp_path / "run")
    sweep = write_sweep(tmp_path / "sweep.toml", 19, methods=("giva",), no_wait=True)
    with open(sweep, "a") as f:
        f.write(method_options_toml(held_cache(tmp_path / "cache")))
    run_sweep(make_sweep_config(None, load_sweep_file(sweep)), run_dir, ["test"], log=print)
    [job] = job_ids(run_dir)  # one point: a single job, not an array
    wait_for(lambda: point_processes(19))
    subprocess.run(["scancel", job], check=True)
    [row] = collect_until(run_dir, 1)
    assert row["status"] == "failed"
    assert f"job {job} (slurm) ended CANCELLED" in row["error"] and "scancel" in row["error"], row["error"]
    assert sacct(job)[-1][1].startswith("CANCELLED")


def test_a_point_past_its_time_limit_is_requeued_once_then_a_failed_row_naming_timeout(slurm_timeout_run):
    run_dir, submit = slurm_timeout_run
    assert submit.wait() == 0, submit.stdout.read()
    [row] = collect_until(run_dir, 1)
    [job] = job_ids(run_dir)
    assert row["status"] == "failed"
    assert f"job {job} (slurm) ended TIMEOUT: past its time limit again after one requeue" in row["error"], \
        row["error"]
    assert sacct(job) == [(job, "REQUEUED"), (job, "TIMEOUT")]
