"""The run directory: one driver at a time, resume of only what is whole and of this schema, storage errors as
one line, exit 1 when no point succeeded. Real sweeps on llama-2m, real files, real tmpfs mounts."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from cli_runs import REPO, run_cli, run_main
from held_points import held_cache, method_options_toml
from waiting import HANG_GUARD_S, wait_for

from bench.config.presets import make_sweep_config
from bench.columns import COLUMN_NAMES, SCHEMA_VERSION
from bench.results.read import read_rows
from bench.results.rundir import lock_run_dir
from bench.run.sweep import run_sweep

# Points in the driver's process (isolate = false): these tests are about the driver (its lock, its writes, its
# resume), and a fresh process per point would add its imports, about 6 s, to every point.
SWEEP = ('models = ["llama-2m"]\ntasks = ["profile"]\nmethods = ["lora", "vera"]\nranks = [2, 4]\n'
         'batch_sizes = [2]\nseq_lens = [16]\nwarmup_steps = 1\ntimed_steps = 2\nthreads = 1\nisolate = false\n')


def tiny_sweep(**overrides):
    values = dict(models=["llama-2m"], tasks=["profile"], methods=["lora", "vera"], ranks=[2, 4], batch_sizes=[2],
                  seq_lens=[16], warmup_steps=1, timed_steps=2, threads=1, isolate=False)
    values.update(overrides)
    return make_sweep_config(None, values)


def quiet(*_):
    pass


def one_line_error(result, code=2):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 4-point run (in process); copy it before changing it."""
    run_dir = str(tmp_path_factory.mktemp("finished") / "run")
    rows = run_sweep(tiny_sweep(), run_dir, ["test"], log=quiet)
    assert [r["status"] for r in rows] == ["ok"] * 4, [r["error"] for r in rows]
    return run_dir


def copy_of(run_dir, tmp_path):
    dest = str(tmp_path / "run")
    shutil.copytree(run_dir, dest)
    return dest


def ids(run_dir):
    return [r["point_id"] for r in read_rows(os.path.join(run_dir, "results.csv"))]


def test_a_second_driver_is_refused_naming_the_first_and_rows_are_written_once(tmp_path):
    """The first driver is stopped (SIGSTOP) once it holds the lock, so it still holds it when the second starts,
    whatever the machine's speed; it goes on (SIGCONT) once the second is refused."""
    (tmp_path / "sweep.toml").write_text(SWEEP)
    args = ["run", "--config", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "run"), "--no-report"]
    first = subprocess.Popen([sys.executable, "run_bench.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "run" / ".lock"
    assert wait_for(lambda: lock.exists() and str(first.pid) in lock.read_text(), first), first.communicate()
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = run_cli(*args)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate()
    assert first.returncode == 0, err
    line = one_line_error(second)
    assert "in use by another sweep" in line and f"pid {first.pid}" in line, line
    assert len(ids(tmp_path / "run")) == 4 and len(set(ids(tmp_path / "run"))) == 4


def test_reading_commands_work_while_a_driver_holds_the_lock(finished_run, tmp_path):
    run_dir = copy_of(finished_run, tmp_path)
    with lock_run_dir(run_dir):
        result = run_cli("report", run_dir)
        assert result.returncode == 0, result.stderr
        with pytest.raises(ValueError, match=f"pid {os.getpid()}"):
            run_sweep(tiny_sweep(), run_dir, ["test"], log=quiet)


def test_torn_last_row_is_moved_out_and_its_point_runs_again(finished_run, tmp_path):
    run_dir = copy_of(finished_run, tmp_path)
    path = os.path.join(run_dir, "results.csv")
    with open(path) as f:
        lines = f.readlines()
    with open(path, "w") as f:  # the header, 3 rows, and 200 bytes cut off the end (a kill mid-write)
        f.write("".join(lines[:4])[:-200])
    messages = []
    rows = run_sweep(tiny_sweep(), run_dir, ["test"], log=messages.append)
    assert len(rows) == 2  # the torn point and the one never written
    assert sorted(ids(run_dir)) == sorted(ids(finished_run))  # every point exactly once
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n") and all(len(line.split(",")) >= len(COLUMN_NAMES) for line in text.splitlines()[1:])
    torn = [m for m in messages if "cut short" in m]
    assert len(torn) == 1, messages
    copies = [n for n in os.listdir(run_dir) if n.startswith("results.csv.torn-")]
    assert len(copies) == 1 and open(os.path.join(run_dir, copies[0])).read() == "".join(lines[:4])[:-200]


@pytest.mark.parametrize("damage, message", [
    ("meta_v1", f"written with results schema 1 and this code writes schema {SCHEMA_VERSION}"),
    ("old_rows", f"the columns of results schema 1 and this code writes schema {SCHEMA_VERSION}"),
    ("no_meta", "has no meta.json beside it"),
    ("no_header", "has no header line"),
])
def test_a_run_dir_this_code_cannot_extend_is_refused_in_one_line(finished_run, tmp_path, damage, message):
    run_dir = copy_of(finished_run, tmp_path)
    csv_path, meta_path = os.path.join(run_dir, "results.csv"), os.path.join(run_dir, "meta.json")
    if damage == "meta_v1":
        meta = json.load(open(meta_path))
        json.dump({**meta, "schema_version": 1}, open(meta_path, "w"))
    elif damage == "old_rows":  # a schema-1 file: fewer columns, version 1 in every row
        lines = open(csv_path).read().splitlines()
        old = [",".join(line.split(",")[:-3]) for line in lines]
        old[1:] = ["1" + line[len(str(SCHEMA_VERSION)):] for line in old[1:]]
        open(csv_path, "w").write("\n".join(old) + "\n")
    elif damage == "no_meta":
        os.remove(meta_path)
    else:
        lines = open(csv_path).readlines()
        open(csv_path, "w").write("".join(lines[1:]))
    before = open(csv_path).read()
    config = os.path.join(str(tmp_path), "sweep.toml")
    open(config, "w").write(SWEEP)
    line = one_line_error(run_main("run", "--config", config, "--out", run_dir, "--no-report"))
    assert message in line, line
    assert open(csv_path).read() == before  # nothing recorded was touched


def test_a_sweep_where_no_point_succeeded_exits_1_and_says_so(tmp_path):
    # A checkpoint folder whose config.json names no architecture passes the checks and fails in each point.
    (tmp_path / "broken-model").mkdir()
    (tmp_path / "broken-model" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    (tmp_path / "sweep.toml").write_text(
        f'models = ["{tmp_path / "broken-model"}"]\ntasks = ["profile"]\nmethods = ["lora"]\nranks = [2, 4]\n'
        'batch_sizes = [2]\nseq_lens = [16]\nthreads = 1\n')
    result = run_cli("run", "--config", str(tmp_path / "sweep.toml"), "--in-process", "--out", str(tmp_path / "run"))
    assert result.returncode == 1, result.stderr
    assert "no point succeeded (2 failed, 0 skipped)" in result.stderr.strip().splitlines()[-1]
    assert [r["status"] for r in read_rows(str(tmp_path / "run" / "results.csv"))] == ["failed", "failed"]


NAMESPACE_RUN = """
set -u
mount -t tmpfs -o size={size} tmpfs "$MNT"
{python} run_bench.py run --config "$SWEEP" --out "$MNT/run" --no-report > "$MNT/../first.out" 2> "$MNT/../first.err" &
driver=$!
until [ "$(cat "$MNT/run/results.csv" 2>/dev/null | wc -l)" -ge 3 ]; do sleep 0.1; done
{break_it}
exec 3>"$CACHE/meta.json"; rm "$CACHE/meta.json"; exec 3>&-
wait $driver; echo "first=$?" > "$MNT/../first.rc"
cp -r "$MNT/run" "$MNT/../after-first"
{repair}
{python} run_bench.py run --config "$SWEEP" --out "$MNT/run" --no-report > "$MNT/../second.out" 2> "$MNT/../second.err"
echo "second=$?" > "$MNT/../second.rc"
cp -r "$MNT/run" "$MNT/../after-second"
"""


@pytest.mark.parametrize("case", ["read-only", "full"])
def test_storage_failure_stops_with_one_line_and_a_plain_rerun_finishes(tmp_path, case):
    """A real tmpfs in a private mount namespace: made read-only, or filled, after the two LoRA rows, while the
    first GiVA point is held (tests/held_points.py; the script releases it as held_points.release does)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs unprivileged user and mount namespaces (unshare -rm)")
    cache = held_cache(tmp_path / "cache")
    (tmp_path / "sweep.toml").write_text(SWEEP.replace('"vera"', '"giva"') + method_options_toml(cache))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    break_it, repair = {
        # a read-only bind mount over the run dir (the driver's open lock file keeps the tmpfs itself writable)
        "read-only": ('mount --bind "$MNT/run" "$MNT/run" && mount -o remount,bind,ro "$MNT/run"', 'umount "$MNT/run"'),
        "full": ('dd if=/dev/zero of="$MNT/filler" bs=64k 2>/dev/null; true', 'rm "$MNT/filler"'),
    }[case]
    script = NAMESPACE_RUN.format(size="8m", python=sys.executable, break_it=break_it, repair=repair)
    env = {**os.environ, "MNT": str(mnt), "SWEEP": str(tmp_path / "sweep.toml"), "CACHE": cache}
    subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=env, timeout=HANG_GUARD_S, check=True)
    first_err = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "first=2", first_err
    last = [line for line in first_err.splitlines() if line.startswith("run_bench.py")]
    assert len(last) == 1 and "cannot write to run directory" in last[0] and "Traceback" not in first_err, first_err
    assert ("Read-only file system" if case == "read-only" else "No space left on device") in last[0]
    kept = read_rows(str(tmp_path / "after-first" / "results.csv"))
    assert [r["method"] for r in kept] == ["lora", "lora"] and all(r["status"] == "ok" for r in kept)
    assert (tmp_path / "second.rc").read_text().strip() == "second=0", (tmp_path / "second.err").read_text()
    rows = read_rows(str(tmp_path / "after-second" / "results.csv"))
    assert rows[:len(kept)] == kept  # nothing written before was lost or rewritten
    assert len(rows) == 4 and len({r["point_id"] for r in rows}) == 4 and {r["status"] for r in rows} == {"ok"}
