"""Every plot the report, `estimate` and `history` write stays legible at the sizes users run.

Each registered plot (bench/report/plots.py PLOTS, and history's) is drawn for a small case (the real run)
and a large one (its rows renamed to 8 models with hub-length names, 6 methods with PEFT's among them, 12 ranks;
a 100-run history), and every page must pass tests/plot_geometry.py's check: no two texts overlap, none leaves
the figure, nothing under 9 pt, no page over MAX_FIGURE_IN. A new plot added to PLOTS is checked here with no
change to this file.
"""

from __future__ import annotations

import math
import os
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from plot_cases import METHODS_3, METHODS_6, MODELS_5, MODELS_8, RANKS_12, expand_run, make_history, with_init_tasks
from plot_geometry import assert_legible, text_problems
from real_run import copy_run, with_load

from bench.report.claims import format_costs
from bench.track.history import read_history
from bench.track.page import PAGE_SERIES, plot_pages
from bench.report.plots import PAGE_PANELS, PLOTS, STYLE, NoData, remove_pages, save_pages
from bench.report.steps import lora_step_ms
from bench.report.summary import make_caption, prepare, run_labels
from bench.results.read import load_run

pytestmark = pytest.mark.xdist_group("real_run")  # one worker waits for the real run (conftest.py), the other goes on

PLOT_NAMES = [name for name, _, _ in PLOTS]
# What `run_bench.py estimate` can plot: its rows have counts, tensor bytes and init FLOPs, no timings and no scores.
INIT_TASK_PLOTS = {"transfer"}  # drawn from runs whose GiVA points read other tasks (init_task)
INIT_TASKS = ["", "trec", "agnews"]  # "": the point's own task
ESTIMATE_PLOTS = {"memory_rank", "memory_breakdown", "flops_overhead", "memory_size", "init_overhead",
                  "init_share_size"}


@pytest.fixture(autouse=True)
def style():
    with matplotlib.rc_context(STYLE):  # as build_report and plot_history draw
        yield


class Cases:
    """Each case's frame and caption as build_report hands them to the plots, and each plot's pages, made once for
    all the tests of this file."""

    def __init__(self, runs: dict[str, str]):
        self.runs, self.prepared, self.made = runs, {}, {}

    def data(self, case: str) -> tuple[pd.DataFrame, str]:
        if case not in self.prepared:
            loaded = [load_run(self.runs[case])]
            labels = run_labels(loaded)
            self.prepared[case] = (prepare(loaded, labels), make_caption(loaded, labels))
        return self.prepared[case]

    def pages(self, case: str, name: str) -> list[Figure]:
        """The plot's figures for the case (its NoData raised again at every call). A plot of GiVA's bases from other
        tasks is drawn for the case with init_task points (CASE-init)."""
        if name in INIT_TASK_PLOTS and f"{case}-init" in self.runs:
            case = f"{case}-init"
        if (case, name) not in self.made:
            try:
                figures = dict((n, plot) for n, _, plot in PLOTS)[name](*self.data(case))
                self.made[case, name] = figures if isinstance(figures, list) else [figures]
            except NoData as e:
                self.made[case, name] = e
        if isinstance(self.made[case, name], NoData):
            raise self.made[case, name]
        return self.made[case, name]


@pytest.fixture(scope="module")
def quiet_run(real_run_dir, tmp_path_factory) -> str:
    """The real run as if timed on a quiet machine: no busy marks, whatever load this machine had."""
    return with_load(copy_run(real_run_dir, tmp_path_factory.mktemp("quiet")), 0.4)


@pytest.fixture(scope="module")
def cases(quiet_run, tmp_path_factory) -> Cases:
    base = tmp_path_factory.mktemp("plot_cases")
    large = expand_run(quiet_run, base / "large", MODELS_8, METHODS_6, RANKS_12)
    return Cases({"small": quiet_run, "small-init": with_init_tasks(quiet_run, base / "small-init", INIT_TASKS),
                  "sizes": expand_run(quiet_run, base / "sizes", MODELS_5, METHODS_3),
                  # the transfer matrices of 8 hub-length model names (a matrix per model and GiVA rank: 8 pages)
                  "large": large, "large-init": with_init_tasks(expand_run(quiet_run, base / "large-3", MODELS_8,
                                                                           METHODS_3), base / "large-init", INIT_TASKS),
                  "estimate": expand_run(quiet_run, base / "estimate", MODELS_5, METHODS_3, estimated=True)})


def panel_titles(fig: Figure) -> list[str]:
    return [" ".join(ax.get_title().split()) for ax in fig.axes if ax.get_visible() and ax.get_title()]


def caption_of(fig: Figure) -> str:
    """The texts of the figure's body and caption strip (title and caption), on one line."""
    return " ".join(" ".join(t.get_text().split()) for sub in fig.subfigs for t in sub.texts)


# --- the report's and estimate's plots ---------------------------------------------


@pytest.mark.parametrize("case", ["small", "large"])
@pytest.mark.parametrize("name", PLOT_NAMES)
def test_every_report_plot_is_legible(cases, case, name):
    for page, fig in enumerate(cases.pages(case, name), 1):
        assert_legible(fig, f"{name} ({case} case) page {page}")


def test_init_overhead_of_the_sizes_ladder_is_legible(cases):
    """The `sizes` preset's five models, whose names and sizes ran together over the bars before."""
    for page, fig in enumerate(cases.pages("sizes", "init_overhead"), 1):
        assert_legible(fig, f"init_overhead (5 models) page {page}")


@pytest.mark.parametrize("name", PLOT_NAMES)
def test_every_plot_of_an_estimate_is_legible_or_says_what_it_lacks(cases, name):
    if name not in ESTIMATE_PLOTS:
        with pytest.raises(NoData):
            cases.pages("estimate", name)
        return
    for page, fig in enumerate(cases.pages("estimate", name), 1):
        assert_legible(fig, f"{name} (estimate, 5 models) page {page}")


def test_what_does_not_fit_a_page_goes_on_further_pages_and_nothing_is_left_out(cases):
    data, _ = cases.data("large")
    panels = set(data["model"] + " · " + data["task"])
    figures = cases.pages("large", "rank_score")
    assert len(figures) == math.ceil(len(panels) / PAGE_PANELS)
    assert sorted(t for fig in figures for t in panel_titles(fig)) == sorted(panels)  # each model once
    for page, fig in enumerate(figures, 1):
        assert len(panel_titles(fig)) <= PAGE_PANELS
        assert f"page {page} of {len(figures)}" in caption_of(fig)

    bars = cases.pages("large", "memory_breakdown")  # 8 models x 6 methods x 12 ranks: 576 bars
    labels = [label.get_text() for fig in bars for ax in fig.axes for label in ax.get_xticklabels()]
    assert len(labels) == len(MODELS_8) * len(METHODS_6) * len(RANKS_12)
    assert len(bars) > 1 and all(f"of {len(bars)}" in caption_of(fig) for fig in bars)

    inits = cases.pages("large", "init_overhead")  # a bar per model and method, at its largest rank
    ticks = [label.get_text() for fig in inits for label in fig.axes[1].get_xticklabels()]
    assert sorted(ticks) == sorted(f"{m} r{max(RANKS_12)}" for m in METHODS_6 for _ in MODELS_8)


def test_a_name_too_long_for_its_bars_is_a_letter_keyed_in_the_caption(cases):
    data, _ = cases.data("large")
    models = ["".join(m.split()) for m in data["model"].unique()]
    letters = 0
    for fig in cases.pages("large", "init_overhead"):
        caption = "".join(caption_of(fig).split())  # the caption may break a name after any separator
        for name in (t.get_text() for t in fig.axes[1].texts):  # the model names under the bars
            if re.fullmatch(r"[A-Z]+", name):
                letters += 1
                assert any(f"{name}:{model}(" in caption for model in models), (name, caption)
    assert letters, "no model name needed a key at this size"


# --- history ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def histories(quiet_run, tmp_path_factory) -> dict[str, pd.DataFrame]:
    base = tmp_path_factory.mktemp("histories")
    two = dict(list(MODELS_8.items())[:2])
    wide = expand_run(quiet_run, base / "wide", two, METHODS_6, [1, 2048])  # 24 series, 12 a page
    made = {"2 runs": make_history(quiet_run, base / "two.csv", 2),
            "24 runs": make_history(quiet_run, base / "twenty-four.csv", 24),
            "100 runs": make_history(quiet_run, base / "hundred.csv", 100),
            "100 runs, 24 series": make_history(wide, base / "wide.csv", 100)}
    return {case: read_history(path).dropna(subset=["step_time_ms_p50"]) for case, path in made.items()}


@pytest.mark.parametrize("case", ["2 runs", "24 runs", "100 runs", "100 runs, 24 series"])
def test_the_history_plot_is_legible(histories, case):
    rows = histories[case]
    figures = plot_pages(rows, "step_time_ms_p50")
    for page, fig in enumerate(figures, 1):
        assert_legible(fig, f"history ({case}) page {page}")
    n_series = rows.groupby(["model", "task", "method", "rank", "method_options"]).ngroups
    assert len(figures) >= math.ceil(n_series / PAGE_SERIES) and (len(figures) == 1) == (n_series <= PAGE_SERIES)
    assert sum(len(fig.axes[0].get_lines()) for fig in figures) == n_series  # each series on one page
    assert all(len(fig.axes[0].get_lines()) <= PAGE_SERIES for fig in figures)


# --- the check itself --------------------------------------------------------------


def blank_figure(**kwargs) -> Figure:
    fig = Figure(**{"figsize": (4, 3), **kwargs})
    FigureCanvasAgg(fig)
    return fig


def test_the_check_finds_overlaps_clipped_text_small_fonts_and_legends_over_text():
    fig = blank_figure()
    fig.text(0.2, 0.5, "first label", fontsize=10)
    fig.text(0.25, 0.5, "second label", fontsize=10)
    fig.text(0.95, 0.1, "past the edge", fontsize=10)
    fig.text(0.1, 0.9, "tiny", fontsize=6)
    problems = text_problems(fig)
    assert any("'first label' overlaps 'second label'" in p for p in problems), problems
    assert any("'past the edge' reaches" in p for p in problems), problems
    assert any("'tiny' is set in 6 pt" in p for p in problems), problems

    fig = blank_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_title("a title under the legend")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 1.12))
    assert any("overlaps the legend" in p for p in text_problems(fig))

    fig = blank_figure(figsize=(9, 12))
    assert any("split it into pages" in p for p in text_problems(fig))


def test_the_check_passes_slanted_labels_side_by_side_and_ignores_what_is_not_drawn():
    fig = blank_figure(layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(8)
    ax.bar(x, x + 1)
    ax.set_xticks(x, [f"method {i} r{2 ** i}" for i in x], rotation=60, ha="right", rotation_mode="anchor")
    hidden = fig.add_subplot(2, 2, 1)
    hidden.set_title("hidden axes' title over everything")
    hidden.set_visible(False)
    ax.text(0.5, 0.5, "", transform=ax.transAxes)
    assert text_problems(fig) == []  # their upright boxes overlap, the slanted texts do not
    ax.set_xticks(x, [f"method {i} r{2 ** i}" for i in x], rotation=15, ha="right", rotation_mode="anchor")
    assert any("overlaps" in p for p in text_problems(fig))  # at a shallow slant they do


# --- pages on disk, and the one step unit -------------------------------------------


def test_pages_are_files_stem_stem_2_and_an_earlier_longer_plots_pages_are_removed(tmp_path):
    stem = str(tmp_path / "plot")
    other = tmp_path / "plot_other.png"  # another plot whose name starts the same
    other.write_bytes(b"")
    written = save_pages([blank_figure(), blank_figure(), blank_figure()], stem)
    assert sorted(os.path.basename(p) for p in written) == sorted(
        f"plot{suffix}.{ext}" for suffix in ("", "-2", "-3") for ext in ("png", "svg"))
    save_pages([blank_figure()], stem)
    assert sorted(os.listdir(tmp_path)) == ["plot.png", "plot.svg", "plot_other.png"]
    remove_pages(stem)
    assert os.listdir(tmp_path) == ["plot_other.png"]


def test_lora_steps_are_lora_at_the_same_rank_or_the_nearest_and_peft_lora_stands_in(cases):
    frame = pd.DataFrame({"run": "r", "model": "m", "task": "t", "status": "ok",
                          "method": ["lora", "lora", "giva", "giva", "giva", "vera"],
                          "rank": [16, 64, 16, 32, 8, 256], "step_time_ms_p50": [10.0, 20.0, 99, 99, 99, 99]})
    assert lora_step_ms(frame, {}).tolist() == [10, 20, 10, 10, 10, 20]  # 32: 16 and 64 as near, the lower
    theirs = frame.assign(method=frame["method"].replace({"lora": "peft:lora"}))
    assert lora_step_ms(theirs, {"peft:lora": {"same_as": "lora"}}).tolist() == [10, 20, 10, 10, 10, 20]
    assert lora_step_ms(theirs, {}).isna().all()  # no LoRA of any kind: no unit

    # init_overhead's "=N" over GiVA's bar and the claim table's init column are the same number
    data, _ = cases.data("small")
    ok = data[data["status"] == "ok"]
    fig = cases.pages("small", "init_overhead")[0]
    labels = [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("=")]
    claims = "\n".join(format_costs(ok, several_runs=False))
    for model, group in ok.groupby("model"):
        giva = group[(group["method"] == "giva") & (group["rank"] == group.loc[group["method"] == "giva", "rank"].max())]
        steps = giva["init_total_s"].mean() / (giva["lora_step_ms"].mean() / 1000)
        label = f"={steps:.2g}" if steps < 10 else f"={steps:.0f}"
        assert label in labels
        row = next(line for line in claims.split(f"#### GiVA's costs: {model} ·", 1)[1].splitlines()
                   if line.startswith(f"| giva | {giva['rank'].iloc[0]} |"))
        assert row.split("|")[4].strip() == f"{steps:.2g}"
    assert "init (LoRA steps)" in claims
