"""FLOPs and tensor bytes (bench/measure/counters.py), `estimate` (bench/run/estimate.py), and compare on them.

Hand counts use FLOPs = 2 x multiply-adds. Models are tiny (one Linear, llama-2m), one thread.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time

import pytest
import torch
import torch.nn as nn

import giva.inject
from bench.columns import COLUMNS
from bench.track.compare import compare_runs
from bench.config.grid import expand_grid
from bench.config.presets import make_sweep_config
from bench.measure.counters import Costs, FrozenSafeMemTracker, trace_costs
from bench.run.rows import cost_columns
from bench.run.estimate import estimate_point
from bench.run.point import run_point
from bench.results.read import RESULTS_FILE, read_rows
from bench.run.sweep import run_sweep
from bench.tasks import setup_task
from bench.config.train import TrainSettings
from bench.run.train import make_optimizer, training_step
from giva import apply_adapter, batch_loss, make_config

METHODS = ["lora", "vera", "giva"]
IN, OUT, TOKENS, R = 24, 40, 16, 4


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("method", METHODS)
def test_flops_of_one_adapted_linear_are_the_hand_count(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, OUT))
    x = torch.randn(TOKENS, IN)  # no grad: the backward computes the adapter's gradients only
    apply_adapter(model, make_config(method, r=R, target_modules=["0"]), data=lambda m: m(x).pow(2).mean())
    costs = trace_costs(model, lambda: model(x).pow(2).mean().backward())
    base = 2 * TOKENS * IN * OUT  # forward only: the frozen weight needs no gradient, x none either
    down, up = 2 * TOKENS * IN * R, 2 * TOKENS * R * OUT  # x A^T (T, r), then (T, r) B^T (T, out)
    if method == "lora":  # backward: dB = dy^T h, dh = dy B, dA = dh^T x
        adapter = down + up + (2 * TOKENS * OUT * R) * 2 + 2 * TOKENS * R * IN
    else:  # VeRA, GiVA: A and B frozen, two vectors folded into the (out, r) matrix: only its gradient dy^T h
        adapter = down + up + 2 * TOKENS * OUT * R
    assert costs.adapter_flops == adapter
    assert costs.flops == base + adapter


def giva_init_hand_count(niter: int, tokens: int) -> int:
    """GiVA's init of the one Linear: forward pass plus the randomized SVD (torch.svd_lowrank's steps), QR and SVD
    by Golub-Van Loan counts. The backward pass forms no weight gradient: G = dy^T x is applied through its factors
    (fewer than TOKENS tokens: each product with G costs 2 T q (in + out)) or formed first where that costs less."""
    def qr(m, n):  # Householder, m >= n, Q formed
        return 2 * (2 * m * n * n - 2 * n**3 // 3)

    q = 4 * R  # sketch width: min(4r, min(out, in))
    factored = tokens < TOKENS
    forward = 2 * tokens * IN * OUT
    form = 0 if factored else 2 * tokens * OUT * IN  # G = dy^T x
    product = 2 * tokens * q * (IN + OUT) if factored else 2 * OUT * IN * q  # G @ (in, q) or G^T @ (out, q)
    sketch = product + qr(OUT, q)  # Q = qr(G omega)
    power = niter * (product + qr(IN, q) + product + qr(OUT, q))
    # svd(Q^T G) through (Q^T G)^T = Q2 R and the SVD of R^T (q, q); then Q U_small and Q2 W
    small_svd = product + qr(IN, q) + (4 + 8 + 9) * q**3 + 2 * OUT * q * q + 2 * IN * q * q
    basis_b = qr(OUT, R)  # Vr: B is a random orthonormal (out, r)
    return forward + form + sketch + power + small_svd + basis_b


def traced_giva_init(tokens: int = TOKENS):
    """The one Linear, GiVA applied under the counters: (model, its input, config, the init's costs)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, OUT))
    x = torch.randn(tokens, IN)  # needs no gradient: the pass back computes none below the layer
    config = make_config("giva", r=R, target_modules=["0"])
    costs = trace_costs(model, lambda: apply_adapter(model, config, data=lambda m: m(x).pow(2).mean()))
    return model, x, config, costs


@pytest.mark.parametrize("tokens", [TOKENS // 2, 4 * TOKENS])
def test_giva_init_flops_are_the_hand_count(tokens):
    _, _, config, costs = traced_giva_init(tokens)
    assert costs.flops == giva_init_hand_count(config.svd_niter, tokens)


def test_init_flops_share_of_a_run_is_the_hand_count():
    """The one Linear with GiVA: init / (init + steps x step), both counted by hand, for a run of 300 steps."""
    model, x, config, init = traced_giva_init()
    step = trace_costs(model, lambda: model(x).pow(2).mean().backward())
    step_by_hand = 2 * TOKENS * IN * OUT + 2 * TOKENS * IN * R + 2 * TOKENS * R * OUT + 2 * TOKENS * OUT * R
    init_by_hand = giva_init_hand_count(config.svd_niter, TOKENS)
    columns = cost_columns(init, step, (TOKENS, IN), 300)
    assert columns["init_flops_share"] == pytest.approx(init_by_hand / (init_by_hand + 300 * step_by_hand), rel=1e-12)
    assert (columns["init_share_steps"], columns["init_share_steps_source"]) == (300, "point")
    assert cost_columns(Costs(), step, (TOKENS, IN), 300)["init_flops_share"] == 0  # an init that does no work (LoRA, VeRA)


def test_a_point_states_the_init_share_of_its_run_and_estimate_the_steps_it_assumes(tmp_path):
    """A planted point trains and evaluates: its init share in wall time and in FLOPs of its own steps; `estimate`
    takes the sweep's steps, or --assume-steps (said in the row); a profile point has no whole run to share."""
    (point,) = expand_grid(make_sweep_config(None, overrides={
        "models": ["gpt2-tiny"], "tasks": ["planted"], "methods": ["giva"], "ranks": [2], "batch_sizes": [2],
        "seq_lens": [16], "warmup_steps": 1, "train": {"steps": 3}, "task_options": {"eval_batches": 1},
        "threads": 1}))
    row = run_point(point, str(tmp_path))
    assert row["status"] == "ok", row["error"]
    assert row["init_share"] == row["init_total_s"] / (row["init_total_s"] + row["train_time_s"])
    assert row["init_flops_share"] == row["init_flops"] / (row["init_flops"] + 3 * row["flops_per_step"])
    assert (row["train_steps"], row["init_share_steps"], row["init_share_steps_source"]) == (3, 3, "point")
    own, assumed = estimate_point(point), estimate_point(dataclasses.replace(point, assume_steps=5000))
    assert (own["init_share_steps"], own["init_share_steps_source"]) == (3, "point")
    assert (assumed["init_share_steps"], assumed["init_share_steps_source"]) == (5000, "assumed")
    assert assumed["init_flops_share"] == assumed["init_flops"] / (assumed["init_flops"] + 5000 * assumed["flops_per_step"])
    assert own.get("init_share") is None and 0 < assumed["init_flops_share"] < own["init_flops_share"] < 1

    _, (profile,) = profile_points(tmp_path, methods=["giva"])
    estimated = estimate_point(profile)  # the profile task times warmup + timed steps, nothing more
    assert (estimated["init_share_steps"], estimated["init_share_steps_source"]) == (1 + 2, "point")


def tiny_llama(method: str):
    setup = setup_task("profile", "llama-2m", batch_size=2, seq_len=16, seed=0)
    batch = next(setup.train_batches)
    apply_adapter(setup.model, make_config(method, r=R), data=[batch] if method == "giva" else None)
    return setup.model, batch


@pytest.mark.parametrize("method", METHODS)
def test_tracked_parameter_gradient_and_optimizer_bytes_are_the_model_s_tensors(method):
    """On a frozen base (plain MemTracker refuses its hooks): the categories equal the sums over the tensors."""
    model, batch = tiny_llama(method)
    opt = make_optimizer(model, [], TrainSettings(steps=1), method)
    trainable = [p for p in model.parameters() if p.requires_grad]
    tracker = FrozenSafeMemTracker()
    tracker.track_external(model, opt.optimizer, batch)
    with tracker:
        batch_loss(model, batch, None).backward()
        after_backward = tracker.get_tracker_snapshot("current")
        opt.optimizer.step()
        after_step = tracker.get_tracker_snapshot("current")
    (snapshot,) = after_backward.values()
    assert snapshot["Parameter"] == sum(p.numel() * p.element_size() for p in model.parameters())
    assert snapshot["Gradient"] == sum(p.grad.numel() * p.grad.element_size() for p in trainable) > 0
    (snapshot,) = after_step.values()
    state = [t for s in opt.optimizer.state.values() for t in s.values()]
    assert snapshot["Optstate"] == sum(t.numel() * t.element_size() for t in state)
    # AdamW: two fp32 moments per trainable parameter, and a 4-byte step count per tensor
    assert snapshot["Optstate"] == 8 * sum(p.numel() for p in trainable) + 4 * len(trainable)


def profile_points(tmp_path, **overrides):
    config = make_sweep_config(None, overrides={"models": ["llama-2m"], "tasks": ["profile"], "ranks": [R],
                                                "batch_sizes": [4], "seq_lens": [32], "warmup_steps": 1,
                                                "timed_steps": 2, "threads": 1, "isolate": False, **overrides})
    return config, expand_grid(config)


def test_estimate_agrees_with_a_real_run_of_the_same_point(tmp_path):
    """FLOPs equal, tensor peaks (step and init) within 5%, counts equal, for each method. Of the operator-level
    counts, copies and dtype conversions are equal too; operator calls and allocations are not: torch takes other
    paths for fake tensors (clip_grad_norm_'s foreach kernels only for plain tensors; transformers' attention mask
    where its values cannot be read)."""
    _, points = profile_points(tmp_path)
    assert sorted(p.method for p in points) == sorted(METHODS)
    for point in points:
        real, estimated = run_point(point, str(tmp_path)), estimate_point(point)
        assert real["status"] == estimated["status"] == "ok", (real["error"], estimated["error"])
        assert (real["estimated"], estimated["estimated"]) == (0, 1)
        for column in ("flops_per_step", "adapter_flops_per_step", "init_flops", "trainable_params",
                       "adapter_buffer_bytes", "optimizer_state_bytes", "tensor_params_bytes", "copies_per_step",
                       "copy_bytes_per_step", "dtype_conversions_per_step", "init_copies", "init_copy_bytes",
                       "init_dtype_conversions"):
            assert estimated[column] == real[column], (point.method, column)
        for column in ("tensor_peak_bytes", "init_tensor_peak_bytes", "tensor_activations_bytes"):
            assert abs(estimated[column] / real[column] - 1) < 0.05, (point.method, column)
        assert real["init_flops"] > 0 if point.method == "giva" else real["init_flops"] == 0
        if point.method == "giva":  # exact means exact: a second real run traces the same counts
            again = run_point(point, str(tmp_path))
            exact = [c.name for c in COLUMNS if c.compare == "exact"]
            assert {c: again[c] for c in exact} == {c: real[c] for c in exact}


def test_estimate_of_a_text_task_traces_the_task_s_own_batches(tmp_path, data_dir):
    """MiniLM (pretrained) on a csv task made from SST-2's dev file: a text batch is as long as its longest text
    (padding="longest"), the head has the data's classes, GiVA's gradient pass reads the first batch. The estimate
    traces those same batches, so every method's FLOPs and tensor peaks (init included) are the real point's within
    5% (before: the step 1.6x and GiVA's init 1.2x, tracing batch_size x seq_len and a 4-class head)."""
    options = {"train_file": os.path.join(data_dir, "sst2", "dev.tsv"), "text_column": "content",
               "label_column": "label", "max_eval_examples": 8}
    config = make_sweep_config(None, overrides=dict(
        models=["minilm"], tasks=["csv"], methods=METHODS, ranks=[R], batch_sizes=[4], seq_lens=[64],
        warmup_steps=1, threads=1, isolate=False, task_options=options, train={"steps": 2, "eval_every": 0}))
    for point in expand_grid(config):
        real, estimated = run_point(point, str(tmp_path)), estimate_point(point)
        assert real["status"] == estimated["status"] == "ok", (real["error"], estimated["error"])
        batch, length = map(int, real["cost_trace_batch"].split("x"))
        assert batch == 4 and length < 64 and estimated["cost_trace_batch"] == real["cost_trace_batch"]
        assert estimated["trainable_params"] == real["trainable_params"], point.method  # a 2-class head
        for column in ("flops_per_step", "adapter_flops_per_step", "init_flops", "tensor_peak_bytes",
                       "init_tensor_peak_bytes", "tensor_activations_bytes"):
            if real[column] or estimated[column]:
                assert abs(estimated[column] / real[column] - 1) < 0.05, (point.method, column)
        assert real["init_flops"] > 0 if point.method == "giva" else real["init_flops"] == 0


def test_a_bad_point_is_a_failed_row_naming_it_and_the_estimate_goes_on(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    config, _ = profile_points(tmp_path, models=["llama-2m", str(broken), "minilm"], methods=["lora"],
                               seq_lens=[1024])
    rows = run_sweep(config, str(tmp_path / "run"), ["test"], log=lambda _: None, estimated=True)
    by_model = {r["model"]: r for r in rows}
    assert by_model["llama-2m"]["status"] == "ok"  # rotary positions: any length
    assert by_model[str(broken)]["status"] == "failed"
    assert by_model[str(broken)]["error"].startswith(f"{broken}/profile/lora/r{R}")
    assert by_model["minilm"]["status"] == "failed" and "longer than the 512 positions" in by_model["minilm"]["error"]
    assert len(read_rows(str(tmp_path / "run" / RESULTS_FILE))) == 3
    with pytest.raises(ValueError, match="holds an estimate"):
        run_sweep(config, str(tmp_path / "run"), ["test"])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="traces run in processes of their own on 2 cores or more")
def test_deep_traces_run_in_processes_of_their_own_deepest_first_each_with_its_timeout(tmp_path, monkeypatch):
    """Enough layers to trace (sweep.PARALLEL_TRACE_LAYERS): the traces run in forked processes, one per core, the
    deepest model first. llama-70b's traces are stopped (SIGSTOP) as soon as they are forked, as a hung trace: they
    run past the point timeout whatever the machine's speed and end as failed rows naming it, which only a trace in a
    process of its own can; llama-2m's finish, under a timeout of 10 times their trace here (10 s at least), with the
    counts of a trace in this process."""
    from bench.run.executors import worker
    from bench.run.sweep import PARALLEL_TRACE_LAYERS

    _, points = profile_points(tmp_path, models=["llama-2m", "llama-70b"], methods=["lora", "vera"], isolate=True)
    estimate_point(points[0])  # the first trace here imports what the fork server has imported before it forks
    start = time.perf_counter()
    here = {p.method: estimate_point(p) for p in points if p.model == "llama-2m"}
    timeout_s = max(10, math.ceil(10 * (time.perf_counter() - start) / len(here)))
    config, _ = profile_points(tmp_path, models=["llama-2m", "llama-70b"], methods=["lora", "vera"], isolate=True,
                               point_timeout_s=timeout_s)
    assert 2 * 2 < PARALLEL_TRACE_LAYERS <= 2 * (2 + 80)  # llama-2m alone would trace here
    started, start_forked = [], worker._start_forked

    def start_stopped(argv, log_path, model, env):
        proc = start_forked(argv, log_path, model, env)
        started.append((model, proc is not None))  # None: a fresh process runs it, not a forked one
        if model == "llama-70b" and proc is not None:
            os.kill(proc.pid, signal.SIGSTOP)
        return proc

    monkeypatch.setattr(worker, "_start_forked", start_stopped)
    rows = run_sweep(config, str(tmp_path / "run"), ["test"], log=lambda _: None, estimated=True)
    assert started[:2] == [("llama-70b", True)] * 2 and sorted(started[2:]) == [("llama-2m", True)] * 2, started
    assert len(rows) == 4
    for row in rows:
        if row["model"] == "llama-70b":
            assert row["status"] == "failed" and f"point_timeout_s={timeout_s};" in row["error"], row
        else:
            assert row["status"] == here[row["method"]]["status"] == "ok", row["error"]
            assert all(row[c] == here[row["method"]][c] for c in (
                "flops_per_step", "init_flops", "tensor_peak_bytes", "init_tensor_peak_bytes", "trainable_params"))


def test_compare_flags_a_one_layer_change_of_the_targets_exactly(tmp_path, monkeypatch):
    """Same sweep, a 'code change' that leaves one layer (the last v_proj) unadapted: FLOPs and bytes say so."""
    config, _ = profile_points(tmp_path, methods=["lora"])
    run_sweep(config, str(tmp_path / "before"), ["test"], log=lambda _: None, estimated=True)
    find_targets = giva.inject.find_targets
    dropped = "model.layers.1.self_attn.v_proj"
    monkeypatch.setattr(giva.inject, "find_targets",
                        lambda *a, **k: {n: m for n, m in find_targets(*a, **k).items() if n != dropped})
    run_sweep(config, str(tmp_path / "after"), ["test"], log=lambda _: None, estimated=True)
    c = compare_runs(str(tmp_path / "before"), str(tmp_path / "after"))
    changed = {ch.metric: ch for ch in c.regressions}
    assert {"flops_per_step", "adapter_flops_per_step", "tensor_params_bytes", "trainable_params",
            "tensor_optimizer_bytes"} <= set(changed)
    assert all(ch.verdict == "changed" and ch.better == "exact" for ch in c.regressions)
    tokens, width = 4 * 32, 128  # v_proj of llama-2m: 128 -> 128 (4 kv heads of 32)
    # LoRA on a layer whose input needs a gradient: forward 2Tr(in+out), backward dB, dh, dA and dx: 4Tr(in+out)
    assert changed["flops_per_step"].baseline - changed["flops_per_step"].current == 6 * tokens * R * 2 * width
    assert changed["tensor_params_bytes"].baseline - changed["tensor_params_bytes"].current == 4 * R * 2 * width
    assert f"({-6 * tokens * R * 2 * width:+,} FLOPs" in changed["flops_per_step"].note


def test_estimate_cli_refuses_bad_input_in_one_line_before_anything_runs(tmp_path, capsys):
    from bench.cli import main

    out = tmp_path / "never"
    assert main(["estimate", "--models", "llama-2m", "--dtype", "float8", "--out", str(out)]) == 2
    assert main(["estimate", "--models", "no-such-model", "--out", str(out)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "unknown dtype 'float8'" in errors[0] and "unknown model 'no-such-model'" in errors[1]
    assert not out.exists()


def test_a_size_ladder_is_traced_beside_the_measured_points_and_drawn_by_size(tmp_path):
    """size_ladder: its models traced by `estimate` in the same run (each method at its first rank, as the profile
    task), after the measured points; the report draws the tensor peak against model size from both."""
    from bench.report.summary import build_report

    config, _ = profile_points(tmp_path, methods=["lora", "giva"], ranks=[R, 2 * R], size_ladder=["llama-12m"])
    with pytest.raises(ValueError, match="in both models .* and size_ladder"):
        make_sweep_config(None, {**config.to_dict(), "size_ladder": ["llama-2m"]})
    run_dir = str(tmp_path / "run")
    rows = run_sweep(config, run_dir, ["test"], log=lambda _: None)
    measured = [r for r in rows if not r["estimated"]]
    traced = [r for r in rows if r["estimated"]]
    assert [(r["model"], r["method"], r["rank"]) for r in rows] == [
        ("llama-2m", "lora", R), ("llama-2m", "lora", 2 * R), ("llama-2m", "giva", R), ("llama-2m", "giva", 2 * R),
        ("llama-12m", "lora", R), ("llama-12m", "giva", R)]  # the ladder last, at each method's first rank
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert all(r["step_time_ms_p50"] > 0 and r["executor"] == "local" for r in measured)
    assert all(r["task"] == "profile" and r["executor"] == "estimate" and r["step_time_ms_p50"] is None
               and r["tensor_peak_bytes"] > max(m["tensor_peak_bytes"] for m in measured) for r in traced)
    written = build_report([run_dir])
    assert os.path.join(run_dir, "plots", "memory_size.png") in written
    summary = open(os.path.join(run_dir, "summary.md")).read()
    assert "(2 of them estimated: the size ladder" in summary and "### llama-12m · task profile" in summary
