"""The quick preset (`make bench`) shows learning: every method's accuracy moves beyond its eval set's noise."""

from __future__ import annotations

import pytest

from bench.config.presets import make_sweep_config
from bench.report.tables import noise_points
from bench.results.read import read_rows
from bench.run.sweep import run_sweep

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.slow  # the quick preset, fine-tuned for real
def test_every_method_of_the_quick_preset_learns_beyond_the_eval_noise(tmp_path):
    """Each method at its smallest rank in the preset (the hardest to move), with the preset's model, task and
    train settings: eval accuracy after minus before beyond the 95% binomial half-width of its eval set."""
    quick = make_sweep_config("quick")
    options = {m: {**quick.method_options.get(m, {}), "ranks": [min(quick.ranks_for(m))]} for m in quick.methods}
    config = make_sweep_config("quick", overrides=dict(method_options=options, threads=1, isolate=False, size_ladder=[]))
    run_sweep(config, str(tmp_path), ["test"], log=lambda *_: None)
    rows = read_rows(str(tmp_path / "results.csv"))
    assert len(rows) == len(quick.models) * len(quick.methods)
    for row in rows:
        assert row["status"] == "ok", row["error"]
        before, after, examples = float(row["eval_accuracy_before"]), float(row["eval_accuracy"]), int(row["eval_examples"])
        change_points = 100 * (after - before)
        noise = noise_points("accuracy", (before + after) / 2, examples)
        assert change_points > noise, (row["model"], row["method"], row["rank"], before, after, noise)


def test_the_quick_preset_shows_ranks_measured_and_model_sizes_up_to_7b_traced():
    """`make bench` has both axes: every method measured at two ranks or more, and model sizes from the measured
    model to 7B (the size ladder, traced), each method at each size, so the report draws the size plots."""
    from bench.config.grid import expand_grid
    from bench.models import count_params, get_entry

    points = expand_grid(make_sweep_config("quick"))
    measured = [p for p in points if not p.estimated]
    for method in {p.method for p in points}:
        assert len({p.rank for p in measured if p.method == method}) >= 2, method
        sizes = {count_params(get_entry(p.model)) for p in points if p.method == method}
        assert len(sizes) >= 3 and max(sizes) > 6e9, (method, sorted(sizes))
