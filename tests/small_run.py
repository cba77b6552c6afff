"""A small real sweep written to disk the way the harness writes one, for the report and compare tests.

make_small_run() trains two MLP classifiers with LoRA/VeRA/GiVA at two ranks and two
seeds through giva and bench.measure and writes the rows with bench.results: real
measurements, seconds instead of the minutes a model sweep takes. It adds one point
that really fails (a bad option) and, without CUDA, one skipped point. conftest.py
serves it as the session fixture `small_run_dir`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET

import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.image import imread

from bench.adapters import harness_options
from bench.config.sweep import Point
from bench.run.rows import cost_columns
from bench.measure.counters import trace_costs
from bench.measure.memory import MemoryMonitor
from bench.measure.clocks import StepTimer, summarize_ms
from bench.results.read import META_FILE, RESULTS_FILE
from bench.columns import SCHEMA_VERSION
from bench.results.write import append_row, write_meta
from bench.results.environment import environment_info, utc_now
from giva import adapter_stats, apply_adapter, make_config, save_adapter

# --- a small real sweep -------------------------------------------------------

MODELS = {"mlp-s": 32, "mlp-m": 96}  # name -> hidden width of a 3-layer MLP classifier
RANKS = {"lora": [2, 8], "vera": [8, 64], "giva": [1, 8]}  # GiVA r1 meets VeRA and LoRA at 8r, r8 LoRA at r
# GIVA_SMALL_RUN_SEEDS=2,3 makes the same sweep with other seeds: a test of the report or of compare must pass
# whatever numbers the run gives (on another machine, or with other seeds), so it asserts what the code promises.
SEEDS = [int(s) for s in os.environ.get("GIVA_SMALL_RUN_SEEDS", "0,1").split(",")]
BATCH, FEATURES, WARMUP, TIMED = 32, 16, 2, 12


def make_mlp(hidden: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 2))


def planted_data(seed: int, n: int = 256):
    """Inputs (n, FEATURES) and labels from a planted linear rule."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=generator)
    w = torch.randn(FEATURES, generator=torch.Generator().manual_seed(1234))
    return x, (x @ w > 0).long()


def accuracy_and_loss(model, x, y) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(x)
    return (logits.argmax(-1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


def make_point(model: str, method: str, rank: int, seed: int, device: str = "cpu",
               options: dict | None = None) -> Point:
    if options is None:
        options = harness_options(method, rank, {})
    return Point(model=model, task="planted", method=method, rank=rank, seed=seed, batch_size=BATCH, seq_len=1,
                 dtype="float32", device=device, warmup_steps=WARMUP, timed_steps=TIMED, threads=1, data_dir="",
                 adapter_options=json.dumps(options, sort_keys=True), task_options="{}", train="{}")


def identity(point: Point) -> dict:
    return dict(point_id=point.point_id, model=point.model, task=point.task, method=point.method, rank=point.rank,
                method_options=point.adapter_options, seed=point.seed, batch_size=point.batch_size,
                seq_len=point.seq_len, dtype=point.dtype, device=point.device)


def measure(point: Point, run_dir: str) -> dict:
    """One point for real: adapt (timed), train with timed steps, evaluate, save the adapter."""
    started, start = utc_now(), time.perf_counter()
    device = torch.device("cpu")
    model = make_mlp(MODELS[point.model], point.seed)
    model_params = sum(p.numel() for p in model.parameters())
    x_train, y_train = planted_data(point.seed)
    x_eval, y_eval = planted_data(100 + point.seed)
    config = make_config(point.method, r=point.rank, target_modules=["0", "2"], trainable_modules=["4"],
                         **json.loads(point.adapter_options))
    data = (lambda m: F.cross_entropy(m(x_train[:BATCH]), y_train[:BATCH])) if point.method == "giva" else None
    with MemoryMonitor(device) as init_mem:
        t0 = time.perf_counter()
        apply_adapter(model, config, data=data)
        init_total_s = time.perf_counter() - t0
    stats = adapter_stats(model)
    with tempfile.TemporaryDirectory(dir=run_dir) as tmp:
        adapter_file_bytes = os.path.getsize(save_adapter(model, tmp))
    before, _ = accuracy_and_loss(model, x_eval, y_eval)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    timer, curve = StepTimer(device), []
    with MemoryMonitor(device) as train_mem:
        t_train = time.perf_counter()
        for step in range(WARMUP + TIMED):
            i = (step * BATCH) % len(x_train)
            timer.start()
            loss = F.cross_entropy(model(x_train[i:i + BATCH]), y_train[i:i + BATCH])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            timer.stop()
        train_time_s = time.perf_counter() - t_train

    def one_step(i: int = 0):
        loss = F.cross_entropy(model(x_train[i:i + BATCH]), y_train[i:i + BATCH])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step_costs = trace_costs(model, one_step, (optimizer,))  # untimed, after the timed steps, as bench.train does
    fresh = make_mlp(MODELS[point.model], point.seed)
    init_costs = trace_costs(fresh, lambda: apply_adapter(fresh, config, data=data))
    accuracy, eval_loss = accuracy_and_loss(model, x_eval, y_eval)
    curve = [dict(step=WARMUP + TIMED, eval_accuracy=accuracy, eval_loss=eval_loss)]
    os.makedirs(os.path.join(run_dir, "curves"), exist_ok=True)
    with open(os.path.join(run_dir, "curves", f"{point.point_id}.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "eval_accuracy", "eval_loss"])
        writer.writeheader()
        writer.writerows(curve)
    step = summarize_ms(timer.times_ms()[WARMUP:])
    optimizer_state_bytes = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                                if torch.is_tensor(t))
    return dict(
        status="ok", error="", model_params=model_params, trainable_params=stats["trainable_params"],
        adapter_params=stats["adapter_params"], total_params=stats["total_params"],
        adapted_layers=stats["adapted_layers"], rank_min=stats["rank_min"], rank_max=stats["rank_max"],
        capped_layers=stats["capped_layers"], adapter_buffer_bytes=stats["adapter_buffer_bytes"],
        optimizer_state_bytes=optimizer_state_bytes, adapter_file_bytes=adapter_file_bytes,
        init_total_s=init_total_s, init_grad_s=stats["init_grad_s"], init_svd_s=stats["init_svd_s"],
        init_inject_s=stats["init_inject_s"], init_peak_mem_bytes=init_mem.result.peak_bytes,
        init_mem_growth_bytes=init_mem.result.growth_bytes, warmup_steps=WARMUP, timed_steps=TIMED, **step,
        tokens_per_s=BATCH / (step["step_time_ms_p50"] / 1000.0), peak_mem_bytes=train_mem.result.peak_bytes,
        mem_growth_bytes=train_mem.result.growth_bytes, peak_mem_source=train_mem.result.source,
        peak_rss_bytes=train_mem.result.peak_rss_bytes, eval_metric="accuracy", eval_score_before=before,
        eval_score=accuracy, eval_score_best=max(before, accuracy), eval_scores=json.dumps({"accuracy": accuracy}),
        eval_examples=len(y_eval), eval_accuracy_before=before, eval_accuracy=accuracy,
        eval_accuracy_best=max(before, accuracy), eval_loss=eval_loss, train_steps=WARMUP + TIMED,
        train_time_s=train_time_s, started_at=started, point_wall_s=time.perf_counter() - start, estimated=0,
        init_share=init_total_s / (init_total_s + train_time_s),
        **cost_columns(init_costs, step_costs, (BATCH, FEATURES), WARMUP + TIMED),
    )


def make_small_run(run_dir: str) -> str:
    """The sweep above, plus one point that really fails (a bad option) and, without CUDA, one skipped point."""
    os.makedirs(run_dir, exist_ok=True)
    config = dict(models=list(MODELS), tasks=["planted"], methods=list(RANKS), ranks=RANKS, seeds=SEEDS,
                  batch_sizes=[BATCH], warmup_steps=WARMUP, timed_steps=TIMED)
    meta = dict(schema_version=SCHEMA_VERSION, command=["tests/test_report.py", "small_run_dir"], config=config,
                config_hash="test-small-run", environment={**environment_info("cpu"), "torch_threads": 1},
                started_at=utc_now())
    write_meta(run_dir, meta)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads on 2 busy cores spin: 100x slower QR, noisy steps
    try:
        for model in MODELS:
            for method, ranks in RANKS.items():
                for rank in ranks:
                    for seed in SEEDS:
                        point = make_point(model, method, rank, seed)
                        append_row(run_dir, {**identity(point), **measure(point, run_dir)})
    finally:
        torch.set_num_threads(threads)
    bad = make_point("mlp-s", "giva", 4, 0, options={"basis": "Vx"})
    try:
        measure(bad, run_dir)
        raise AssertionError("basis Vx should fail")
    except ValueError as e:
        append_row(run_dir, {**identity(bad), "status": "failed", "error": f"ValueError: {e}"})
    if not torch.cuda.is_available():
        gpu = make_point("mlp-m", "lora", 8, 0, device="cuda:0")
        append_row(run_dir, {**identity(gpu), "status": "skipped",
                             "error": "device 'cuda:0' asked for but torch sees no CUDA device"})
    write_meta(run_dir, {**meta, "ended_at": utc_now()})
    return run_dir


# --- helpers ------------------------------------------------------------------


def copy_run(run_dir: str, dest) -> str:
    """A copy of results.csv and meta.json only (no earlier report), to change and report on."""
    dest = str(dest)
    os.makedirs(dest, exist_ok=True)
    for name in (RESULTS_FILE, META_FILE):
        shutil.copy(os.path.join(run_dir, name), dest)
    return dest


def rewrite_rows(run_dir: str, change) -> None:
    """Rewrite results.csv through change(rows) -> rows (header kept)."""
    path = os.path.join(run_dir, RESULTS_FILE)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    rows = change(rows)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def assert_png_not_blank(path: str) -> None:
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600, image.shape
    assert image[..., :3].var() > 0, f"{path} is blank"


def assert_svg_parses(path: str) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return root
