"""The profiling harness end to end: real tiny models, real subprocesses, real files."""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest
from cli_runs import REPO, run_cli, run_main
from held_points import held_cache, method_options_toml, release
from waiting import wait_for

from bench.config.presets import make_sweep_config
from bench.columns import COLUMN_NAMES, SCHEMA_VERSION
from bench.results.read import read_rows
from bench.run.sweep import run_sweep


def tiny_sweep(**overrides):
    values = dict(models=["llama-2m"], tasks=["profile"], methods=["lora", "giva"], ranks=[2, 4],
                  batch_sizes=[2], seq_lens=[16], warmup_steps=1, timed_steps=3, isolate=False)
    values.update(overrides)
    return make_sweep_config(None, values)


def llama2m_layer_shapes():
    """(out, in) of the default Llama targets of llama-2m: q, k, v (128x128), up (512x128), down (128x512)."""
    return [(128, 128)] * 3 + [(512, 128), (128, 512)]


def test_small_sweep_writes_schema_rows_with_formula_counts(tmp_path):
    rows = run_sweep(tiny_sweep(), str(tmp_path), ["test"], log=lambda *_: None)
    assert len(rows) == 4
    with open(tmp_path / "results.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == COLUMN_NAMES
    written = read_rows(str(tmp_path / "results.csv"))
    assert len(written) == 4 and {r["status"] for r in written} == {"ok"}, [r["error"] for r in written]
    layers = 2  # decoder layers in llama-2m
    for row in written:
        r = int(row["rank"])
        shapes = llama2m_layer_shapes()
        per_layer = [r * (o + i) for o, i in shapes] if row["method"] == "lora" else [r + o for o, _ in shapes]
        assert int(row["trainable_params"]) == layers * sum(per_layer)
        assert int(row["adapted_layers"]) == layers * len(shapes)
        assert int(row["schema_version"]) == SCHEMA_VERSION
        for column in ("init_total_s", "step_time_ms_p50", "step_time_ms_p90", "tokens_per_s", "peak_mem_bytes",
                       "adapter_file_bytes", "init_peak_mem_bytes", "point_wall_s"):
            assert float(row[column]) > 0, column
        assert float(row["step_time_ms_p90"]) >= float(row["step_time_ms_p50"])
        assert len(row["step_times_ms"].split(";")) == int(row["timed_steps"]) == 3
        assert row["peak_mem_source"] == "rss"
        if row["method"] == "giva":
            assert float(row["init_grad_s"]) > 0 and float(row["init_svd_s"]) > 0
            assert int(row["adapter_buffer_bytes"]) == 4 * layers * sum(r * (o + i) for o, i in shapes)
        else:
            assert float(row["init_grad_s"]) == 0 and int(row["adapter_buffer_bytes"]) == 0
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["config"]["models"] == ["llama-2m"] and meta["environment"]["versions"]["torch"]
    assert "commit" in meta["environment"] and meta["ended_at"]
    # how busy the machine was: each point's load and preemptions, the run's highest load against the cores
    steal_reported = open("/proc/stat").readline().split()[0] == "cpu"
    for row in written:
        assert float(row["load_avg_1m_start"]) >= 0 and float(row["load_avg_1m_end"]) >= 0
        assert int(row["ctx_switches_involuntary"]) >= 0
        assert float(row["cpu_steal_s"]) >= 0 if steal_reported else row["cpu_steal_s"] == ""
    load = meta["load"]
    highest = max(float(r[c]) for r in written for c in ("load_avg_1m_start", "load_avg_1m_end"))
    assert load["cpu_count"] == os.cpu_count() and load["load_avg_1m_max"] >= highest
    assert load["busy"] == (load["load_avg_1m_max"] > os.cpu_count())


def test_a_method_s_own_train_settings_override_the_sweep_s(tmp_path):
    """method_options.<m>.train sets that method's lr (the others keep their defaults); the row records it."""
    config = tiny_sweep(tasks=["planted"], ranks=[2], task_options={"k": 2, "eval_batches": 1},
                        train={"steps": 3, "eval_every": 0}, method_options={"giva": {"train": {"lr": 0.05}}})
    run_sweep(config, str(tmp_path), ["test"], log=lambda *_: None)
    rows = {r["method"]: r for r in read_rows(str(tmp_path / "results.csv"))}
    assert {r["status"] for r in rows.values()} == {"ok"}, [r["error"] for r in rows.values()]
    assert float(rows["giva"]["lr"]) == 0.05 and float(rows["lora"]["lr"]) == 1e-3
    assert rows["giva"]["head_lr"] == rows["lora"]["head_lr"] == ""  # nothing but the adapter trains
    assert int(rows["giva"]["train_steps"]) == int(rows["lora"]["train_steps"]) == 3
    assert json.loads(rows["giva"]["method_options"]) == {}  # train settings are not adapter options
    for bad, message in [({"giva": {"train": {"lrr": 1.0}}}, "unknown train setting 'lrr'"),
                         ({"giva": {"train": {"lr": -1.0}}}, "lr=-1.0 must be positive"),
                         ({"giva": {"train": 0.05}}, "method_options.giva.train must be a table")]:
        with pytest.raises(ValueError, match=message):
            tiny_sweep(method_options=bad)


def test_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path):
    # A checkpoint whose config.json names no architecture passes the checks before the run and fails in its
    # point (in this process): the row says why and the next point runs.
    (tmp_path / "broken-model").mkdir()
    (tmp_path / "broken-model" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    config = tiny_sweep(models=[str(tmp_path / "broken-model"), "llama-2m"], methods=["lora"], ranks=[2])
    rows = run_sweep(config, str(tmp_path / "run"), ["test"], log=lambda *_: None)
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert "no-such-architecture" in rows[0]["error"]


def test_too_large_model_is_skipped_with_reason(tmp_path):
    config = tiny_sweep(models=["llama-7b", "llama-2m"], methods=["lora"], ranks=[2], dtype="float32")
    rows = run_sweep(config, str(tmp_path), ["test"], log=lambda *_: None)
    if rows[0]["status"] != "skipped":
        pytest.skip("this machine has room for a 7B model in fp32")
    assert "GiB" in rows[0]["error"] and rows[1]["status"] == "ok"


def test_isolated_point_crash_becomes_failed_row(tmp_path):
    # A checkpoint folder whose config.json names no architecture fails inside the point's own process.
    (tmp_path / "broken-model").mkdir()
    (tmp_path / "broken-model" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    config = tiny_sweep(models=[str(tmp_path / "broken-model"), "llama-2m"], methods=["lora"], ranks=[2],
                        isolate=True)
    rows = run_sweep(config, str(tmp_path / "run"), ["test"], log=lambda *_: None)
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert rows[0]["error"]


def test_sigkilled_sweep_resumes_with_every_point_once(tmp_path):
    """The driver is killed while its GiVA points are held (tests/held_points.py), after the four points before them
    are written; released, the rerun runs the two GiVA points only."""
    run_dir = tmp_path / "run"
    args = ["run", "--config", str(tmp_path / "sweep.toml"), "--out", str(run_dir), "--no-report"]
    cache = held_cache(tmp_path / "cache")
    (tmp_path / "sweep.toml").write_text(
        'models = ["llama-2m"]\ntasks = ["profile"]\nmethods = ["lora", "vera", "giva"]\nranks = [2, 4]\n'
        "batch_sizes = [2]\nseq_lens = [16]\nwarmup_steps = 1\ntimed_steps = 2\n"
        "isolate = false\n"  # the driver's resume is the subject: points in its process, no 6-s import each
        + method_options_toml(cache))
    proc = subprocess.Popen([sys.executable, "run_bench.py", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    results = run_dir / "results.csv"
    assert wait_for(lambda: len(read_rows(str(results))) >= 4, proc), "the driver ended before the GiVA points"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_rows(str(results))
    assert [r["method"] for r in before] == ["lora", "lora", "vera", "vera"], "kill the sweep part way"
    release(cache)
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert "already done" in done.stdout
    rows = read_rows(str(results))
    ids = [r["point_id"] for r in rows]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert all(r["status"] == "ok" for r in rows)
    assert rows[: len(before)] == before  # nothing written before the kill was lost or rewritten


def test_list_names_every_model_task_preset_and_a_preset_s_own_ranks():
    from bench.config.presets import PRESETS
    from bench.models import REGISTRY
    from bench.tasks import TASK_NAMES

    result = run_main("list")
    assert result.returncode == 0, result.stderr
    for name in [*REGISTRY, *TASK_NAMES, *PRESETS]:
        assert name in result.stdout, name
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("accuracy-quick"))
    config = make_sweep_config("accuracy-quick")
    for method in config.methods:
        assert f"{method} r={','.join(map(str, config.ranks_for(method)))}" in line, line


@pytest.mark.parametrize("args, message", [
    (["run", "--models", "no-such-model"], "unknown model"),
    (["run", "--methods", "dora"], "unknown method"),
    (["run", "--preset", "nope"], "unknown preset"),
    (["run", "--ranks", "0"], "positive integer"),
    (["run", "--frobnicate"], "unrecognized arguments"),
    (["run", "--tasks", "imagenet-22k"], "unknown task"),
    (["run", "--tasks", "cifar100", "--models", "vit-tiny"], "could not be loaded from the Hugging Face hub"),
])
def test_bad_input_one_line_error_exit_2(args, message, tmp_path):
    hub = "--models" in args and "vit-tiny" in args  # the hub's libraries read offline mode as they are imported
    result = (run_cli if hub else run_main)(*args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_bad_sweep_files_and_output_dirs(tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("models = [\n")
    unknown_key = tmp_path / "unknown.toml"
    unknown_key.write_text('modles = ["llama-2m"]\n')
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    cases = [
        (["run", "--config", str(bad_toml), "--out", str(tmp_path / "a")], "does not parse"),
        (["run", "--config", str(unknown_key), "--out", str(tmp_path / "b")], "unknown sweep key 'modles'"),
        (["run", "--config", str(tmp_path / "missing.toml")], "not found"),
        (["run", "--preset", "profile-quick", "--out", str(blocker / "run")], "cannot write to run directory"),
    ]
    for args, message in cases:
        result = run_main(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_run_dir_of_another_config_is_refused(tmp_path):
    run_sweep(tiny_sweep(methods=["lora"], ranks=[2]), str(tmp_path), ["test"], log=lambda *_: None)
    with pytest.raises(ValueError, match="different config"):
        run_sweep(tiny_sweep(methods=["lora"], ranks=[4]), str(tmp_path), ["test"], log=lambda *_: None)
    result = run_main("run", "--preset", "profile-quick", "--out", str(tmp_path))
    assert result.returncode == 2 and "different config" in result.stderr


def test_the_sweep_seed_seeds_the_adapters_random_parts_unless_fixed(tmp_path, tiny_llama, lm_batches):
    """Sweep seeds 0, 1 give GiVA different random B (and VeRA different projections), the same seed the same;
    a seed the sweep file sets is kept; the row records the seed used."""
    import copy
    import json

    import torch

    from bench.config.grid import expand_grid
    from bench.adapters import make_adapter
    from giva import apply_adapter

    def built(**overrides):
        points = expand_grid(tiny_sweep(methods=["giva", "vera"], ranks=[2], seeds=[0, 1, 0], **overrides))
        layers = {}
        for point in points:
            model = copy.deepcopy(tiny_llama)
            adapter = make_adapter(point.method, point.rank, json.loads(point.adapter_options), seed=point.seed)
            apply_adapter(model, adapter.config, data=lm_batches)
            layer = model.giva_adapter.layers["model.layers.0.self_attn.q_proj"]
            layers.setdefault(point.method, []).append(layer.giva_B if point.method == "giva" else layer.vera_B)
        return layers

    seeded = built()
    for B0, B1, B0_again in seeded.values():
        assert torch.equal(B0, B0_again) and not torch.allclose(B0, B1)
    fixed = built(method_options={"giva": {"seed": 5}, "vera": {"projection_seed": 5}})
    for B0, B1, B0_again in fixed.values():
        assert torch.equal(B0, B1) and torch.equal(B0, B0_again)

    config = tiny_sweep(methods=["giva", "lora", "vera"], ranks=[2], seeds=[3],
                        method_options={"vera": {"projection_seed": 9}})
    run_sweep(config, str(tmp_path), ["test"], log=lambda *_: None)
    rows = {r["method"]: r for r in read_rows(str(tmp_path / "results.csv"))}
    assert [rows[m]["adapter_seed"] for m in ("giva", "vera", "lora")] == ["3", "9", ""]


def test_bad_model_paths_and_unreachable_hub_ids_fail_before_any_point(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from bench.run.checks import check_inputs

    (tmp_path / "no_config").mkdir()
    (tmp_path / "weights.safetensors").write_bytes(b"0")
    cases = [(str(tmp_path / "missing"), "does not exist; give an existing checkpoint folder"),
             ("./missing/model", "does not exist"),
             (str(tmp_path / "no_config"), "has no config.json"),
             (str(tmp_path / "weights.safetensors"), "is a file; give the folder"),
             ("no-such-model", "unknown model 'no-such-model'")]
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    cases.append(("someorg/not-cached", r"the hub \(http://127.0.0.1:9\) is unreachable"))
    for model, message in cases:
        with pytest.raises(ValueError, match=message):
            check_inputs(tiny_sweep(models=[model]))  # paths fail at validation already
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="not in the Hugging Face cache and HF_HUB_OFFLINE is set"):
        check_inputs(tiny_sweep(models=["someorg/not-cached"]))

    # The CLI: one line, exit 2, nothing run (before: every point waited ~30 s on the hub, then failed).
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = run_cli("run", "--models", "someorg/not-cached", "--tasks", "profile", "--out", str(tmp_path / "run"),
                     env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "HF_HUB_OFFLINE" in result.stderr and not (tmp_path / "run").exists()


def test_command_line_ranks_replace_per_method_ranks_say_so_and_a_finished_run_exits_0(tmp_path, capsys):
    """--ranks wins over a sweep's per-method ranks (a preset's or a file's: the same merge), the printed sweep says
    so, and a command that ran its points returns 0 (not None)."""
    from bench.cli import main

    sweep = tmp_path / "own_ranks.toml"
    sweep.write_text('models = ["llama-2m"]\nmethods = ["lora", "vera"]\nbatch_sizes = [2]\nseq_lens = [16]\n'
                     '[method_options.vera]\nranks = [64, 256]\nd_initial = 0.5\n')
    out = tmp_path / "run"
    assert main(["estimate", "--config", str(sweep), "--ranks", "4", "--out", str(out), "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert "lora r=4; vera r=4" in printed, printed
    assert "note: --ranks 4 replaces the per-method ranks of the sweep file (vera [64, 256])" in printed
    rows = read_rows(str(out / "results.csv"))
    assert sorted((r["method"], r["rank"], r["status"]) for r in rows) == [("lora", "4", "ok"), ("vera", "4", "ok")]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["method_options"] == {"vera": {"d_initial": 0.5}}  # the other options stay


def test_relative_paths_are_resolved_from_where_the_sweep_starts_by_the_checks_and_the_points(
        tmp_path, monkeypatch, minilm_dir, data_dir):
    """A model folder and the csv task's file given relative to the current directory: the checks read them from
    there and so does the point, in its own process (which starts in the repository)."""
    from bench.cli import main

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "mini").symlink_to(minilm_dir)
    with open(os.path.join(data_dir, "mrpc", "train.tsv"), encoding="utf-8") as f:
        (work / "data" / "pairs.tsv").write_text("".join(f.readlines()[:41]), encoding="utf-8")  # header + 40
    (work / "sweep.toml").write_text(
        'models = ["mini"]\ntasks = ["csv"]\nmethods = ["lora"]\nranks = [2]\nbatch_sizes = [4]\nseq_lens = [16]\n'
        'warmup_steps = 1\nthreads = 1\ntrain = {steps = 2, eval_every = 0}\n'
        '[task_options]\ntrain_file = "data/pairs.tsv"\ntext_column = "#1 String"\n'
        'text_pair_column = "#2 String"\nlabel_column = "Quality"\nmax_eval_examples = 8\n')
    monkeypatch.chdir(work)
    assert main(["run", "--config", "sweep.toml", "--out", "run", "--no-report"]) == 0
    (row,) = read_rows(str(work / "run" / "results.csv"))
    assert row["status"] == "ok", row["error"]
    assert row["model"] == "mini" and int(row["eval_examples"]) > 0  # the file was read in the point's process
    from bench.cli import RELATIVE_PATHS, build_parser

    run_help = " ".join(build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    assert " ".join(RELATIVE_PATHS.split()) in run_help


def test_a_cpu_point_s_peak_memory_follows_its_live_tensors(tmp_path):
    """A real point in its own process on CPU with malloc_mmap_threshold gets MALLOC_MMAP_THRESHOLD_ (recorded in
    meta.json), so the growth of its RSS during training is the tensors that grew (the traced step's peak less the
    parameters and buffers already resident): 1.06x here, 1.40x without the threshold, when glibc's kept heap counts
    too."""
    config = make_sweep_config(None, dict(models=["llama-2m"], tasks=["profile"], methods=["lora"], ranks=[8],
                                          batch_sizes=[8], seq_lens=[128], warmup_steps=1, timed_steps=2, threads=1,
                                          malloc_mmap_threshold=65536))
    (row,) = run_sweep(config, str(tmp_path / "on"), ["test"], log=lambda *_: None)
    assert row["status"] == "ok", row["error"]
    grown = row["tensor_peak_bytes"] - row["tensor_params_bytes"] - row["tensor_buffers_bytes"]
    assert 0.9 < row["mem_growth_bytes"] / grown < 1.2, (row["mem_growth_bytes"], grown)
    assert json.loads((tmp_path / "on" / "meta.json").read_text())["cpu_point_env"] == {"MALLOC_MMAP_THRESHOLD_": "65536"}
    # from the command line, the same points (a measurement setting, not a point's); off by default
    from bench.cli import build_parser, sweep_config

    args = build_parser().parse_args(["run", "--preset", "profile-quick", "--malloc-mmap-threshold", "65536"])
    on, _ = sweep_config(args)
    assert on.malloc_mmap_threshold == 65536 and on.config_hash() == make_sweep_config("profile-quick").config_hash()
    assert make_sweep_config("profile-quick").malloc_mmap_threshold == 0


def test_the_warm_up_before_the_init_runs_a_backward_pass_and_leaves_no_gradient_and_every_flag():
    """bench/run/point.py warm_up: one forward and backward pass whose gradient reaches the first layer, on a model
    with trainable and frozen parameters; afterwards no parameter has a gradient and every flag is as it was."""
    from bench.run.point import warm_up
    from bench.tasks import setup_task

    setup = setup_task("profile", "llama-2m", batch_size=2, seq_len=8, seed=0)
    model = setup.model
    for layer in model.model.layers[1:]:
        layer.requires_grad_(False)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    assert len(set(flags.values())) == 2
    reached = []

    def on_output(module, args, output):
        if output.requires_grad:
            output.register_hook(lambda grad: reached.append(grad.shape))

    model.model.layers[0].self_attn.q_proj.register_forward_hook(on_output)
    warm_up(model, next(setup.train_batches), setup.loss_fn)
    assert reached == [(2, 8, model.config.hidden_size)]
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())


def test_size_ladder_on_the_command_line_replaces_the_preset_s_and_an_empty_one_traces_none(tmp_path):
    """--size-ladder: the quick preset's ladder (llama-1b, llama-7b) replaced by the models given, or by none."""
    args = ["estimate", "--models", "llama-2m", "--tasks", "profile", "--methods", "lora", "--ranks", "2",
            "--batch-sizes", "2", "--seq-lens", "16", "--threads", "1", "--no-report"]
    for ladder, models in (("", {"llama-2m"}), ("llama-12m", {"llama-2m", "llama-12m"})):
        out = tmp_path / (ladder or "none")
        result = run_main(*args, "--size-ladder", ladder, "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert ("size_ladder=llama-12m (estimated)" in result.stdout) == bool(ladder), result.stdout
        assert {r["model"] for r in read_rows(str(out / "results.csv"))} == models
    both = run_main(*args[:1], "--models", "llama-1b", *args[3:], "--out", str(tmp_path / "both"))
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1, both.stderr
    assert "llama-1b is in both models (measured) and size_ladder (estimated)" in both.stderr
    assert "--size-ladder on the command line" in both.stderr
