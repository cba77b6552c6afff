"""build_report end to end: a small real sweep on disk -> summary.md and plots that open and are not blank.

`small_run_dir` below runs a real tiny sweep (two MLP classifiers, LoRA/VeRA/GiVA at two ranks, two
seeds) through giva and bench.measure and writes it with bench.results, like the harness does. When
tests/conftest.py provides a session fixture of the same name (a real sweep through run_bench), delete
this one and the import of it in test_compare.py.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.image import imread

from bench.config import Point
from bench.measure import MemoryMonitor, StepTimer, summarize_ms
from bench.report import build_report, load_run
from bench.results import (COLUMN_NAMES, META_FILE, RESULTS_FILE, SCHEMA_VERSION, append_row, environment_info,
                           latest_rows, read_rows, utc_now, write_meta)
from giva import adapter_stats, apply_adapter, make_config, save_adapter

# --- a small real sweep -------------------------------------------------------

MODELS = {"mlp-s": 32, "mlp-m": 96}  # name -> hidden width of a 3-layer MLP classifier
RANKS = {"lora": [2, 8], "vera": [8, 32], "giva": [2, 8]}
SEEDS = [0, 1]
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
        options = {"alpha": 2 * rank} if method == "lora" else {}
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
        peak_rss_bytes=train_mem.result.peak_rss_bytes, eval_accuracy_before=before, eval_accuracy=accuracy,
        eval_accuracy_best=max(before, accuracy), eval_loss=eval_loss, train_steps=WARMUP + TIMED,
        train_time_s=train_time_s, started_at=started, point_wall_s=time.perf_counter() - start,
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


@pytest.fixture(scope="session")
def small_run_dir(tmp_path_factory) -> str:
    return make_small_run(str(tmp_path_factory.mktemp("small_run")))


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


def summary_table_lines(summary: str) -> set[tuple[str, str]]:
    """(method, rank) of every results-table line in summary.md."""
    found = set()
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[1].isdigit():
            found.add((cells[0], cells[1]))
    return found


ACCURACY_PLOTS = ["rank_accuracy", "params_accuracy", "time_accuracy"]
ALL_PLOTS = ACCURACY_PLOTS + ["step_time_rank", "memory_rank", "init_overhead"]


def expected_plots(rows: list[dict]) -> list[str]:
    """All plots for a run with accuracy, the profiling ones for a profiling-only run (a real `profile` sweep)."""
    has_accuracy = any(r["status"] == "ok" and r.get("eval_accuracy") for r in rows)
    return ALL_PLOTS if has_accuracy else [p for p in ALL_PLOTS if p not in ACCURACY_PLOTS]


# --- tests --------------------------------------------------------------------


def test_report_of_a_small_run_writes_every_file_and_names_every_point(small_run_dir, tmp_path):
    run_dir = copy_run(small_run_dir, tmp_path / "run")
    rows = latest_rows(read_rows(os.path.join(run_dir, RESULTS_FILE)))
    plots = expected_plots(rows)
    written = build_report([run_dir])

    expected = [os.path.join(run_dir, "summary.md")] + [
        os.path.join(run_dir, "plots", f"{name}.{ext}") for name in plots for ext in ("png", "svg")]
    assert sorted(written) == sorted(expected)
    for path in expected:
        assert os.path.getsize(path) > 0, path
    for name in plots:
        assert_png_not_blank(os.path.join(run_dir, "plots", f"{name}.png"))
        root = assert_svg_parses(os.path.join(run_dir, "plots", f"{name}.svg"))
        text = " ".join(t for t in root.itertext())
        assert "commit" in text, f"{name}.svg has no caption with the commit"

    summary = open(os.path.join(run_dir, "summary.md")).read()
    ok = {(r["method"], r["rank"]) for r in rows if r["status"] == "ok"}
    assert summary_table_lines(summary) == ok
    for model, task in {(r["model"], r["task"]) for r in rows if r["status"] == "ok"}:
        assert f"### {model} · task {task}" in summary
    for name in plots:
        assert f"](plots/{name}.png)" in summary and f"(plots/{name}.svg)" in summary
    for row in rows:
        if row["status"] != "ok":
            assert f"| {row['status']} |" in summary and row["error"][:40] in summary
    meta = json.load(open(os.path.join(run_dir, META_FILE)))
    assert "| commit |" in summary and f"`{' '.join(meta['command'])}`" in summary
    if plots == ALL_PLOTS:
        assert "## Plots skipped\n\nNone." in summary


def test_profiling_only_run_with_failures_gets_the_plots_its_data_allows(small_run_dir, tmp_path):
    run_dir = copy_run(small_run_dir, tmp_path / "profile")
    accuracy = ["eval_accuracy_before", "eval_accuracy", "eval_accuracy_best", "eval_loss", "train_time_s"]

    def to_profile(rows):
        for row in rows:
            for column in accuracy:
                row[column] = ""
        first = next(r for r in rows if r["status"] == "ok")
        rows.append({**{c: "" for c in first}, **{k: first[k] for k in ("schema_version", "point_id", "model", "task",
                     "method", "rank", "seed")}, "status": "failed", "error": "RuntimeError: out of memory on retry"})
        return rows  # the failed retry is now the latest row of that point

    rewrite_rows(run_dir, to_profile)
    written = build_report([run_dir])

    plots = {os.path.basename(p) for p in written if "plots" in p}
    assert plots == {f"{n}.{e}" for n in ("step_time_rank", "memory_rank", "init_overhead") for e in ("png", "svg")}
    for path in written:
        if path.endswith(".png"):
            assert_png_not_blank(path)
    summary = open(os.path.join(run_dir, "summary.md")).read()
    skipped = summary.split("## Plots skipped")[1].split("##")[0]
    titles = ("Eval accuracy vs rank", "Eval accuracy vs trainable parameters", "Eval accuracy vs training wall time")
    for title in titles:
        assert f"- **{title}" in skipped
    assert "eval_accuracy" in skipped and "profiling-only" in skipped
    assert "RuntimeError: out of memory on retry" in summary


def test_a_csv_without_accuracy_columns_at_all_still_reports(small_run_dir, tmp_path):
    run_dir = copy_run(small_run_dir, tmp_path / "narrow")
    keep = ["schema_version", "point_id", "status", "error", "model", "task", "method", "rank", "seed",
            "method_options", "step_time_ms_p50", "step_time_ms_p90"]
    rows = read_rows(os.path.join(run_dir, RESULTS_FILE))
    stale = os.path.join(run_dir, "plots", "rank_accuracy.png")  # as if an earlier report had accuracy
    os.makedirs(os.path.dirname(stale))
    open(stale, "wb").close()
    with open(os.path.join(run_dir, RESULTS_FILE), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keep, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    written = build_report([run_dir])
    assert {os.path.basename(p) for p in written} == {"summary.md", "step_time_rank.png", "step_time_rank.svg"}
    assert not os.path.exists(stale)
    summary = open(os.path.join(run_dir, "summary.md")).read()
    assert "peak_mem_bytes" in summary and "init_total_s" in summary  # the reasons name the missing columns


def test_two_runs_in_one_report_label_lines_by_run(small_run_dir, tmp_path):
    first = copy_run(small_run_dir, tmp_path / "before")
    second = copy_run(small_run_dir, tmp_path / "after")
    with pytest.raises(ValueError, match="out_dir"):
        build_report([first, second])
    out = tmp_path / "both"
    written = build_report([first, second], str(out))
    rows = latest_rows(read_rows(os.path.join(first, RESULTS_FILE)))
    assert len(written) == 1 + 2 * len(expected_plots(rows))
    summary = open(out / "summary.md").read()
    assert "## Run before" in summary and "## Run after" in summary
    assert "· run before" in summary and "· run after" in summary
    method = next(r["method"] for r in rows if r["status"] == "ok")
    legend_text = " ".join(assert_svg_parses(str(out / "plots" / "step_time_rank.svg")).itertext())
    assert f"{method} · before" in legend_text and f"{method} · after" in legend_text


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("\n\n", "is empty"),
    (",".join(COLUMN_NAMES) + "\n", "no rows"),
    ("hello,world\n1,2\n", "lacks the columns schema_version, point_id, status, model, method, rank"),
    ("schema_version,point_id,status,model,method,rank\n1,abc,ok,m,lora\n1,abd,ok,m,lora,8\n", "line 2 has 5 cells"),
    ("schema_version,point_id,status,model,method,rank\n1,abc,done,m,lora,8\n", "status 'done'"),
    ("schema_version,point_id,status,model,method,rank\n1,abc,ok,m,lora,eight\n", "rank 'eight'"),
    ("schema_version,point_id,status,model,method,rank\n99,abc,ok,m,lora,8\n", "schema_version '99'.*not comparable"),
])
def test_a_damaged_or_foreign_csv_gives_an_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / RESULTS_FILE
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        build_report([str(tmp_path)])
    text = str(info.value)
    assert str(path) in text and "\n" not in text
    assert any(word in text for word in ("re-run", "delete", "run it")), text


def test_a_missing_run_and_bad_meta_give_errors(small_run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no results at .*nowhere.*run_bench.py run --preset quick"):
        build_report([str(tmp_path / "nowhere")])
    run_dir = copy_run(small_run_dir, tmp_path / "badmeta")
    with open(os.path.join(run_dir, META_FILE), "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="meta.json is not valid JSON"):
        build_report([run_dir])


def test_a_torn_last_line_is_ignored_with_a_warning(small_run_dir, tmp_path):
    run_dir = copy_run(small_run_dir, tmp_path / "torn")
    n_points = len(latest_rows(read_rows(os.path.join(run_dir, RESULTS_FILE))))
    with open(os.path.join(run_dir, RESULTS_FILE), "a") as f:
        f.write(f"{SCHEMA_VERSION},deadbeef,ok,mlp-s,pla")  # a kill mid-write
    run = load_run(run_dir)
    assert len(run.rows) == n_points and "torn last line" in run.warnings[0]
    build_report([run_dir])
    assert "torn last line" in open(os.path.join(run_dir, "summary.md")).read()


def test_load_run_keeps_the_latest_row_of_a_retried_point(small_run_dir, tmp_path):
    run_dir = copy_run(small_run_dir, tmp_path / "retried")
    rows = read_rows(os.path.join(run_dir, RESULTS_FILE))
    failed_then_ok = [{**rows[0], "status": "failed", "error": "x"}, rows[0]]
    rewrite_rows(run_dir, lambda rs: failed_then_ok + rs[1:])
    run = load_run(run_dir)
    row = run.rows.set_index("point_id").loc[rows[0]["point_id"]]
    assert row["status"] == "ok" and row["trainable_params"] == float(rows[0]["trainable_params"])
    assert np.isnan(run.rows["cuda_max_allocated_bytes"]).all()  # empty cells read as NaN
