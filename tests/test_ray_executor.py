"""The ray executor on a real local Ray cluster (one per module, 2 CPUs), tiny llama-2m profile points."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
psutil = pytest.importorskip("psutil")

from bench.config.presets import make_sweep_config  # noqa: E402
from bench.results.read import read_rows  # noqa: E402
from bench.run.sweep import run_sweep  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for the module; drivers in subprocesses join it by its address."""
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def sweep(seq_len, **overrides):
    values = dict(models=["llama-2m"], tasks=["profile"], methods=["lora", "vera"], ranks=[2], batch_sizes=[2],
                  seq_lens=[seq_len], warmup_steps=1, timed_steps=2, threads=1)
    values.update(overrides)
    return make_sweep_config(None, values)


def key(row):
    return row["point_id"], row["status"], row.get("trainable_params")


def point_processes(seq_len):
    """Point processes alive now whose point has this seq_len (each test uses its own)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "bench.run.point" in cmd and len(cmd) > cmd.index("bench.run.point") + 1:
            try:
                with open(cmd[cmd.index("bench.run.point") + 1]) as f:
                    point = json.load(f)
            except (OSError, ValueError):
                continue
            if point.get("seq_len") == seq_len and point.get("model") == "llama-2m" and point.get("batch_size") == 2:
                found.append(proc)
    return found


def test_ray_gives_the_local_rows_and_a_crashing_point_fails_alone(cluster, tmp_path):
    # A checkpoint whose config.json names no architecture: the point's process fails on its Ray worker; the
    # others run.
    (tmp_path / "broken-model").mkdir()
    (tmp_path / "broken-model" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    models = ["llama-2m", str(tmp_path / "broken-model")]
    local = run_sweep(sweep(16, models=models, isolate=False), str(tmp_path / "local"), ["test"], log=print)
    on_ray = run_sweep(sweep(16, models=models, executor={"kind": "ray"}), str(tmp_path / "ray"), ["test"], log=print)
    assert sorted(map(key, on_ray)) == sorted(map(key, local))
    assert sorted(r["status"] for r in on_ray) == ["failed", "failed", "ok", "ok"], [r["error"] for r in on_ray]
    written = read_rows(str(tmp_path / "ray" / "results.csv"))
    assert {r["executor"] for r in written} == {"ray"} and all(r["host"] for r in written)
    assert {r["device"] for r in written if r["status"] == "ok"} == {"cpu"}  # "auto", resolved on the worker


def test_sigkilled_ray_driver_rerun_records_every_point_once(cluster, tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text('models = ["llama-2m"]\ntasks = ["profile"]\nmethods = ["lora", "vera"]\nranks = [2, 4]\n'
                      "batch_sizes = [2]\nseq_lens = [17]\nwarmup_steps = 1\ntimed_steps = 2\nthreads = 1\n")
    args = ["run", "--config", str(config), "--out", str(tmp_path / "run"), "--no-report", "--executor", "ray",
            "--ray-address", cluster]
    driver = subprocess.Popen([sys.executable, "run_bench.py", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    results = tmp_path / "run" / "results.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not read_rows(str(results)):
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    before = read_rows(str(results))
    assert 1 <= len(before) < 4, "kill the driver part way"
    deadline = time.time() + 60  # Ray ends a dead driver's tasks, and with them their point processes
    while time.time() < deadline and point_processes(17):
        time.sleep(0.5)
    assert not point_processes(17), "points of the killed driver still run"
    rerun = subprocess.run([sys.executable, "run_bench.py", *args], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    rows = read_rows(str(results))
    assert rows[:len(before)] == before
    assert len(rows) == 4 and len({r["point_id"] for r in rows}) == 4 and {r["status"] for r in rows} == {"ok"}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_driver_leaves_no_point_running(cluster, tmp_path, stop):
    """Points that would run for minutes: SIGTERM makes the driver cancel its tasks; after SIGKILL, Ray ends
    the dead driver's tasks and the point processes die with their workers."""
    (tmp_path / "sweep.toml").write_text('models = ["llama-2m"]\ntasks = ["profile"]\nmethods = ["lora"]\n'
                                         "ranks = [2, 4]\nbatch_sizes = [2]\nseq_lens = [18]\nthreads = 1\n"
                                         "timed_steps = 100000\n")
    args = ["run", "--config", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "run"), "--no-report",
            "--executor", "ray", "--ray-address", cluster]
    driver = subprocess.Popen([sys.executable, "run_bench.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(point_processes(18)) < 2:
        time.sleep(0.2)
    assert len(point_processes(18)) == 2, "the two points did not start"
    driver.send_signal(stop)
    _, err = driver.communicate(timeout=60)
    if stop == signal.SIGTERM:
        assert driver.returncode == 130 and "rerun the same command to resume" in err, err
    deadline = time.time() + 30
    while time.time() < deadline and point_processes(18):
        time.sleep(0.2)
    assert not point_processes(18), "the driver stopped but its points still run"


def test_unreachable_ray_address_is_one_line_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "run_bench.py", "run", "--preset", "profile-quick", "--executor", "ray",
                             "--ray-address", "127.0.0.1:9", "--out", str(tmp_path / "run")], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no Ray cluster answers at '127.0.0.1:9'" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path / "run") == [".lock"]  # no meta.json, no results.csv
