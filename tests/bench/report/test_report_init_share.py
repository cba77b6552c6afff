"""The report's init share, GiVA's cost tables and the init plot, on real rows: the checked-in quick-cpu run
(reports/baselines/quick-cpu: measured gpt2-tiny points, 120 training steps, beside the size ladder's estimated
llama-1b and llama-7b, traced as the profile task of 3 warm-up + 10 timed steps), reported on a copy.

Each share of a run is of one stated length for every point (the report's default, or `report --assume-steps
N`), never of a profile's warm-up and timed steps; a missing number is "–", never nan; a plot's title and
caption say what it draws.
"""

from __future__ import annotations

import math
import os
import re
import shutil

import matplotlib
import pytest
from cli_runs import REPO
from matplotlib.colors import to_rgba

from bench.cli import main
from bench.report.plots import PLOTS, STYLE, NoData, plot_init_overhead, plot_init_share_size
from bench.report.steps import SHARE_STEPS
from bench.report.summary import make_caption, prepare, run_labels
from bench.results.read import META_FILE, RESULTS_FILE, load_run

BASELINE = os.path.join(REPO, "reports", "baselines", "quick-cpu")
NOT_A_NUMBER = re.compile(r"\b(nan|inf)", re.IGNORECASE)  # nan, nanx, inf, inf%: a number that is not one
LADDER = ("llama-1b", "llama-7b")


def copy_baseline(dest) -> str:
    """The run's results.csv and meta.json alone: the report written into the copy is all new."""
    os.makedirs(dest)
    for name in (RESULTS_FILE, META_FILE):
        shutil.copy(os.path.join(BASELINE, name), dest)
    return str(dest)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    """The quick-cpu run reported at the default length, through the CLI as a user reports it."""
    out = copy_baseline(tmp_path_factory.mktemp("report") / "quick-cpu")
    assert main(["report", out]) == 0
    return out


@pytest.fixture(scope="module")
def summary(run_dir) -> str:
    return open(os.path.join(run_dir, "summary.md")).read()


def prepared(run_dir: str, assume_steps: int | None = None):
    runs = [load_run(run_dir)]
    labels = run_labels(runs)
    return prepare(runs, labels, assume_steps), make_caption(runs, labels)


def draw(plot, data, caption):
    with matplotlib.rc_context(STYLE):  # as build_report draws
        figures = plot(data, caption)
    figures = figures if isinstance(figures, list) else [figures]
    for fig in figures:
        fig.canvas.draw()
    return figures


def title_of(fig) -> str:
    return " ".join(" ".join(sub.get_suptitle().split()) for sub in fig.subfigs if sub.get_suptitle())


def caption_of(fig) -> str:
    return " ".join(" ".join(t.get_text().split()) for sub in fig.subfigs for t in sub.texts)


def points_of(ax, marker: str) -> dict[tuple[float, float], bool]:
    """(x, y) of each marker of that shape drawn without a line -> whether it is hollow."""
    out = {}
    for line in ax.get_lines():
        if line.get_marker() == marker and line.get_linestyle() == "None":
            hollow = to_rgba(line.get_markerfacecolor()) == to_rgba("white")
            out.update({(float(x), float(y)): hollow for x, y in zip(line.get_xdata(), line.get_ydata())})
    return out


def drawn_at(points: dict, x: float, y: float):
    """Whether the point drawn nearest (x, y) is hollow; fails where none is drawn there."""
    near = [hollow for (px, py), hollow in points.items() if math.isclose(px, x, rel_tol=1e-9)
            and math.isclose(py, y, rel_tol=1e-6)]
    assert near, f"nothing drawn at ({x:g}, {y:g}); drawn: {sorted(points)}"
    return near[0]


def giva_rows(data):
    return data[(data["status"] == "ok") & (data["method"] == "giva")]


def cost_row(summary: str, model: str, rank: int) -> list[str]:
    """The cells of GiVA's cost-table line at the rank, in the model's section."""
    section = summary.split(f"#### GiVA's costs: {model} ·", 1)[1].split("\n#", 1)[0]
    line = next(line for line in section.splitlines() if line.startswith(f"| giva | {rank} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def cost_header(summary: str, model: str) -> str:
    section = summary.split(f"#### GiVA's costs: {model} ·", 1)[1]
    return next(line for line in section.splitlines() if line.startswith("| GiVA |"))


# --- 1. one run length for every share ---------------------------------------------------------------------------


def test_the_init_share_plot_takes_every_point_at_one_stated_run_length(run_dir):
    """Measured and estimated points alike: FLOPs share init / (init + N steps' FLOPs), wall time init / (init + N
    median steps), N the default fine-tuning length stated in the title and caption; not the measured points' 120
    steps beside the ladder's 13."""
    data, caption = prepared(run_dir)
    (fig,) = draw(plot_init_share_size, data, caption)
    steps = f"{SHARE_STEPS:,}-step fine-tuning"
    assert steps in title_of(fig) and steps in caption_of(fig)
    ax = fig.axes[0]
    flops, times = points_of(ax, "o"), points_of(ax, "s")
    rows = giva_rows(data)
    assert set(rows["model"]) == {"gpt2-tiny", *LADDER}
    for _, row in rows.iterrows():
        share = 100 * row["init_flops"] / (row["init_flops"] + SHARE_STEPS * row["flops_per_step"])
        assert drawn_at(flops, row["model_params"], share) == (row["estimated"] == 1)  # estimated: hollow
        assert share < 1  # GiVA's init, under 1% of a 1,000-step run at every size
        if row["estimated"] != 1:
            time = row["init_total_s"] / (row["init_total_s"] + SHARE_STEPS * row["step_time_ms_p50"] / 1000)
            drawn_at(times, row["model_params"], 100 * time)


def test_the_share_plot_prints_percent_on_its_log_axis(run_dir):
    (fig,) = draw(plot_init_share_size, *prepared(run_dir))
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    labels = [tick.label1.get_text() for tick in ax.yaxis.get_major_ticks() + ax.yaxis.get_minor_ticks()
              if low <= tick.get_loc() <= high and tick.label1.get_text()]
    assert labels and all(re.fullmatch(r"\d+(\.\d+)?%", label) for label in labels), labels
    assert low < 1 < high  # the 1% line in view


def test_assume_steps_sets_the_one_length_and_the_measured_points_own_steps_give_their_own_share(tmp_path):
    """`report --assume-steps 120`: every share of 120 steps; the measured points trained 120, so theirs is the
    row's own init_flops_share, and the ladder's is of 120 steps too, not of its 13."""
    out = copy_baseline(tmp_path / "quick-cpu")
    assert main(["report", out, "--assume-steps", "120"]) == 0
    data, caption = prepared(out, 120)
    (fig,) = draw(plot_init_share_size, data, caption)
    assert "120-step fine-tuning" in title_of(fig)
    flops = points_of(fig.axes[0], "o")
    summary = open(os.path.join(out, "summary.md")).read()
    for _, row in giva_rows(data).iterrows():
        share = row["init_flops"] / (row["init_flops"] + 120 * row["flops_per_step"])
        if row["estimated"] != 1:
            assert row["train_steps"] == 120 and share == pytest.approx(row["init_flops_share"], rel=1e-12)
        drawn_at(flops, row["model_params"], 100 * share)
        assert cost_row(summary, row["model"], row["rank"])[5] == f"{100 * share:.2g}%"
    assert "120-step" in cost_header(summary, "llama-7b")


def test_assume_steps_below_one_is_a_one_line_error(tmp_path, capsys):
    out = copy_baseline(tmp_path / "quick-cpu")
    assert main(["report", out, "--assume-steps", "0"]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert "--assume-steps 0" in error and "1 or more" in error


def test_the_cost_tables_state_one_run_length_never_a_profiles_warmup_and_timed_steps(run_dir, summary):
    data, _ = prepared(run_dir)
    for _, row in giva_rows(data).iterrows():
        cells = cost_row(summary, row["model"], row["rank"])
        assert f"{SHARE_STEPS:,}-step" in cost_header(summary, row["model"])
        flops = row["init_flops"] / (row["init_flops"] + SHARE_STEPS * row["flops_per_step"])
        assert cells[5] == f"{100 * flops:.2g}%", cells
        if row["estimated"] == 1:
            assert cells[4] == "–"  # no init timing
        else:
            time = row["init_total_s"] / (row["init_total_s"] + SHARE_STEPS * row["step_time_ms_p50"] / 1000)
            assert cells[4].rstrip(" †") == f"{100 * time:.2g}%", cells
    assert "of 13" not in summary


# --- 2. a missing number is "–" ----------------------------------------------------------------------------------


def test_a_missing_ratio_is_a_dash_and_nothing_prints_nan(run_dir, summary):
    """The ladder's GiVA has no step time: its ratio to LoRA's is "–", as every missing number in summary.md and
    in the plots' texts."""
    for model in LADDER:
        assert cost_row(summary, model, 8)[2] == "–"
    assert not NOT_A_NUMBER.findall(summary), [line for line in summary.splitlines() if NOT_A_NUMBER.search(line)]
    data, caption = prepared(run_dir)
    for name, _, plot in PLOTS:
        try:
            figures = draw(plot, data, caption)
        except NoData:
            continue
        texts = [t.get_text() for fig in figures for t in fig.findobj(matplotlib.text.Text)]
        assert not [t for t in texts if NOT_A_NUMBER.search(t)], name


# --- 3. the init plot says what it draws -------------------------------------------------------------------------


def test_the_init_plot_says_only_one_model_has_init_timings_and_draws_the_ladders_init_flops_hollow(run_dir, summary):
    data, caption = prepared(run_dir)
    bars, flops = draw(plot_init_overhead, data, caption)
    title, text = title_of(bars), caption_of(bars)
    assert "gpt2-tiny" in title and "only" in title and "vs model size" not in title, title
    assert re.search(r"llama-1b, llama-7b: estimated, no init timing", text), text
    assert "models gpt2-tiny, llama-1b, llama-7b" not in text  # the run's models are not all drawn here
    groups = [t.get_text() for t in bars.axes[1].texts if t.get_text().strip()]
    assert groups and all(name.startswith("gpt2-tiny") for name in groups), groups

    assert "vs model size" in title_of(flops) and "hollow" in title_of(flops)
    assert all(model in caption_of(flops) for model in ("gpt2-tiny", *LADDER))
    points = points_of(flops.axes[0], "o")
    for _, row in giva_rows(data).iterrows():  # LoRA's and VeRA's inits do no work: nothing on a log axis
        assert drawn_at(points, row["model_params"], row["init_flops"]) == (row["estimated"] == 1)
    assert "Init overhead by phase vs model size" not in summary
