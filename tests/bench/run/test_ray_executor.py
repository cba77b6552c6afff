"""The ray executor on a Ray cluster started as users start one: `ray start --head` and a worker node, each its own
process on this machine, the sweep attaching by address; tiny llama-2m profile points."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest
from cli_runs import REPO, run_cli
from held_points import held_cache, method_options_toml, release
from waiting import HANG_GUARD_S, wait_for

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
psutil = pytest.importorskip("psutil")

from point_processes import point_processes  # noqa: E402

from bench.config.presets import make_sweep_config  # noqa: E402
from bench.results.read import read_rows  # noqa: E402
from bench.run.sweep import run_sweep  # noqa: E402

pytestmark = pytest.mark.xdist_group("ray")  # one worker: one Ray cluster at a time

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


class RayCluster:
    """A head node that runs nothing (`ray start --head --num-cpus 0`) and worker nodes of 2 CPUs (`ray start
    --address HEAD`), each a `ray start --block` process of its own. stop() ends those processes, and their Ray
    processes (GCS, raylets, workers) end with them: Ray ties them to the `ray start` that spawned them. `ray stop`
    is not used: it ends every Ray process of this machine's user, other test sessions' included."""

    def __init__(self, temp_dir: str):
        self.temp_dir, self.processes = temp_dir, []
        with socket.socket() as s:  # a free port outside Ray's worker port range (10002-19999)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        self.head = self._start("head", "--head", "--port", str(port), "--num-cpus", "0", "--temp-dir", temp_dir,
                                "--include-dashboard", "false")
        self.worker = self.start_worker()

    def start_worker(self) -> subprocess.Popen:
        return self._start(f"worker{len(self.processes)}", "--address", self.address, "--num-cpus", "2")

    def _start(self, name: str, *args) -> subprocess.Popen:
        """`ray start --block ARGS`, once it says it is up. Ray gives a node 30 s to register, which a loaded
        machine can miss ("timed out during startup"): that is tried again, twice at most."""
        log_path = os.path.join(self.temp_dir, f"ray-start-{name}.log")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",  # workers import this checkout:
               "PYTHONPATH": os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)}
        for attempt in range(3):
            with open(log_path, "w") as log:
                proc = subprocess.Popen([RAY, "start", "--block", "--object-store-memory", str(100 * 2**20),
                                         "--dashboard-agent-listen-port", "0", *args], stdout=log,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
            if wait_for(lambda: "block forever" in open(log_path).read(), proc):
                self.processes.append(proc)
                return proc
            proc.kill()
            proc.wait()
            if "timed out during startup" not in open(log_path).read():
                break
        self.stop()
        raise AssertionError(f"ray start ({name}) did not come up:\n{open(log_path).read()[-3000:]}")

    def ray_processes(self) -> list[psutil.Process]:
        """The processes of the nodes started here, alive now."""
        found = []
        for proc in self.processes:
            try:
                found += [proc_ for proc_ in psutil.Process(proc.pid).children(recursive=True)]
                found.append(psutil.Process(proc.pid))
            except psutil.NoSuchProcess:
                pass
        return found

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head and one worker node for the module; every process they started is gone after it. Ray 2.60 turns
    token authentication on by default: the nodes and the drivers (this process, its subprocesses) share a token of
    the module's own, not ~/.ray/auth_token."""
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex()}
    previous = {name: os.environ.get(name) for name in token}
    os.environ.update(token)
    try:
        # a short folder of its own: Ray's socket paths under it must stay within AF_UNIX's 107 bytes, which
        # pytest's tmp folders (under pytest-xdist: .../popen-gw0/...) and Ray's session names together exceed
        temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        cluster = RayCluster(temp_dir)
        yield cluster
        processes = cluster.ray_processes()
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    _, alive = psutil.wait_procs(processes, timeout=HANG_GUARD_S)
    assert not alive, f"Ray processes left running: {[p.pid for p in alive]}"


@pytest.fixture(scope="module")
def cluster(ray_cluster) -> str:
    """The cluster's address, as users pass it (--ray-address)."""
    return ray_cluster.address


def sweep(seq_len, **overrides):
    values = dict(models=["llama-2m"], tasks=["profile"], methods=["lora", "vera"], ranks=[2], batch_sizes=[2],
                  seq_lens=[seq_len], warmup_steps=1, timed_steps=2, threads=1)
    values.update(overrides)
    return make_sweep_config(None, values)


def key(row):
    return row["point_id"], row["status"], row.get("trainable_params")


def test_ray_gives_the_local_rows_and_a_crashing_point_fails_alone(cluster, tmp_path):
    # A checkpoint whose config.json names no architecture: the point's process fails on its Ray worker; the
    # others run.
    (tmp_path / "broken-model").mkdir()
    (tmp_path / "broken-model" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    models = ["llama-2m", str(tmp_path / "broken-model")]
    run_sweep(sweep(16, models=models, isolate=False), str(tmp_path / "local"), ["test"], log=print)
    (tmp_path / "sweep.toml").write_text(f'models = {json.dumps(models)}\ntasks = ["profile"]\n'
                                         'methods = ["lora", "vera"]\nranks = [2]\nbatch_sizes = [2]\n'
                                         "seq_lens = [16]\nwarmup_steps = 1\ntimed_steps = 2\nthreads = 1\n")
    on_ray = run_cli("run", "--config", str(tmp_path / "sweep.toml"), "--no-report", "--executor", "ray",
                     "--ray-address", cluster, "--out", str(tmp_path / "ray"))
    assert on_ray.returncode == 0, on_ray.stderr
    local, written = (read_rows(str(tmp_path / name / "results.csv")) for name in ("local", "ray"))
    assert sorted(map(key, written)) == sorted(map(key, local))
    assert sorted(r["status"] for r in written) == ["failed", "failed", "ok", "ok"], [r["error"] for r in written]
    assert {r["executor"] for r in written} == {"ray"} and all(r["host"] for r in written)
    assert {r["device"] for r in written if r["status"] == "ok"} == {"cpu"}  # "auto", resolved on the worker


def test_sigkilled_ray_driver_rerun_records_every_point_once(cluster, tmp_path):
    """The driver is killed once two of its three points are written, the third (GiVA) held (tests/held_points.py);
    Ray ends the held point with the dead driver's tasks, and the rerun, released, runs that point only."""
    cache = held_cache(tmp_path / "cache")
    config = tmp_path / "sweep.toml"
    config.write_text('models = ["llama-2m"]\ntasks = ["profile"]\nmethods = ["lora", "vera", "giva"]\n'
                      "ranks = [2]\nbatch_sizes = [2]\nseq_lens = [17]\nwarmup_steps = 1\ntimed_steps = 2\n"
                      "threads = 1\n" + method_options_toml(cache))
    args = ["run", "--config", str(config), "--out", str(tmp_path / "run"), "--no-report", "--executor", "ray",
            "--ray-address", cluster]
    driver = subprocess.Popen([sys.executable, "run_bench.py", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    results = tmp_path / "run" / "results.csv"
    assert wait_for(lambda: len(read_rows(str(results))) == 2 and point_processes(17), driver), "the driver ended"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    before = read_rows(str(results))
    assert sorted(r["method"] for r in before) == ["lora", "vera"], "kill the driver part way"
    wait_for(lambda: not point_processes(17))  # Ray ends a dead driver's tasks, and with them their point processes
    release(cache)
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    rows = read_rows(str(results))
    assert rows[:len(before)] == before
    assert len(rows) == 3 and len({r["point_id"] for r in rows}) == 3 and {r["status"] for r in rows} == {"ok"}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_driver_leaves_no_point_running(cluster, tmp_path, stop):
    """Points that would never end by themselves (held, tests/held_points.py): SIGTERM makes the driver cancel its
    tasks; after SIGKILL, Ray ends the dead driver's tasks and the point processes die with their workers."""
    (tmp_path / "sweep.toml").write_text('models = ["llama-2m"]\ntasks = ["profile"]\nmethods = ["giva"]\n'
                                         "ranks = [2, 4]\nbatch_sizes = [2]\nseq_lens = [18]\nthreads = 1\n"
                                         + method_options_toml(held_cache(tmp_path / "cache")))
    args = ["run", "--config", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "run"), "--no-report",
            "--executor", "ray", "--ray-address", cluster]
    driver = subprocess.Popen([sys.executable, "run_bench.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: len(point_processes(18)) == 2, driver), "the two points did not start"
    driver.send_signal(stop)
    _, err = driver.communicate()
    if stop == signal.SIGTERM:
        assert driver.returncode == 130 and "rerun the same command to resume" in err, err
    wait_for(lambda: not point_processes(18))


def test_a_worker_node_killed_mid_point_gives_a_failed_row_naming_it_and_the_rerun_completes(ray_cluster, tmp_path):
    """The worker node's raylet is killed while its point runs (a node lost; the point held, tests/held_points.py);
    on a new node, --retry-failed runs the point again, released. Last in the module: it replaces the module's
    worker node."""
    run_dir = str(tmp_path / "run")
    cache = held_cache(tmp_path / "cache")
    (tmp_path / "sweep.toml").write_text('models = ["llama-2m"]\ntasks = ["profile"]\nmethods = ["giva"]\n'
                                         "ranks = [2]\nbatch_sizes = [2]\nseq_lens = [23]\nwarmup_steps = 1\n"
                                         "timed_steps = 2\nthreads = 1\n" + method_options_toml(cache))
    args = ["run", "--config", str(tmp_path / "sweep.toml"), "--out", run_dir, "--no-report", "--executor", "ray",
            "--ray-address", ray_cluster.address]
    driver = subprocess.Popen([sys.executable, "run_bench.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: point_processes(23), driver), "the point did not start"
    [raylet] = [p for p in psutil.Process(ray_cluster.worker.pid).children(recursive=True) if p.name() == "raylet"]
    raylet.kill()
    _, err = driver.communicate()
    assert driver.returncode == 1, err  # no point succeeded
    [row] = read_rows(os.path.join(run_dir, "results.csv"))
    assert row["status"] == "failed" and row["error"].startswith("Ray task failed:"), row["error"]
    assert "dead" in row["error"] or "died" in row["error"], row["error"]  # the node (or the worker on it)
    ray_cluster.worker = ray_cluster.start_worker()
    release(cache)
    rerun = run_cli(*args, "--retry-failed")
    assert rerun.returncode == 0, rerun.stderr
    [again] = read_rows(os.path.join(run_dir, "results.csv"))  # the failed row gave way to the new one
    assert again["status"] == "ok" and again["point_id"] == row["point_id"]


def test_unreachable_ray_address_is_one_line_exit_2(tmp_path):
    result = run_cli("run", "--preset", "profile-quick", "--executor", "ray", "--ray-address", "127.0.0.1:9",
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "no Ray cluster answers at '127.0.0.1:9'" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path / "run") == [".lock"]  # no meta.json, no results.csv
