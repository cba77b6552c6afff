"""results.csv writing: schema doc in step, whole rows only, atomic rewrite."""

import os

import pytest
from cli_runs import REPO

from bench.columns import COLUMN_NAMES, SCHEMA_VERSION, schema_markdown
from bench.results.environment import repo_relative
from bench.results.read import done_point_ids, read_results, read_rows
from bench.results.rundir import repair_torn_tail
from bench.results.write import append_row, drop_failed_rows


def test_schema_doc_matches_the_code():
    with open(os.path.join(REPO, "bench", "SCHEMA.md")) as f:
        assert f.read() == schema_markdown(), "regenerate: python -m bench.columns > bench/SCHEMA.md"


def test_required_columns_are_in_the_schema():
    required = ["model", "method", "rank", "seed", "status", "error", "trainable_params", "init_total_s",
                "init_grad_s", "init_svd_s", "init_peak_mem_bytes", "step_time_ms_p50", "step_time_ms_p90",
                "peak_mem_bytes", "adapter_file_bytes", "task", "eval_accuracy", "eval_accuracy_best", "eval_loss",
                "train_steps", "train_time_s"]
    assert [c for c in required if c not in COLUMN_NAMES] == []


def test_torn_last_line_is_cut_before_the_next_append(tmp_path):
    """What a kill -9 mid-write can leave: the run directory's repair (run at every sweep's start) moves it out."""
    append_row(str(tmp_path), {"point_id": "a", "status": "skipped", "error": "x, with a comma", "method": "lora",
                               "rank": 2})
    path = tmp_path / "results.csv"
    with open(path, "a") as f:
        f.write(f"{SCHEMA_VERSION},b,ok,partial line without newl")
    assert read_results(str(path)).torn_line == 3
    messages = []
    repair_torn_tail(str(path), messages.append)
    assert "cut short" in messages[0] and read_results(str(path)).torn_line is None
    append_row(str(tmp_path), {"point_id": "c", "status": "failed", "error": "boom", "method": "lora", "rank": 2})
    rows = read_rows(str(path))
    assert [r["point_id"] for r in rows] == ["a", "c"]
    assert rows[0]["error"] == "x, with a comma"
    assert done_point_ids(str(tmp_path)) == {"a", "c"}
    assert drop_failed_rows(str(tmp_path)) == 1
    assert [r["point_id"] for r in read_rows(str(path))] == ["a"]


def complete_row(point_id: str) -> dict:
    """An ok row naming every column (schema_version is append_row's), the unmeasured ones None."""
    return {**dict.fromkeys(c for c in COLUMN_NAMES if c != "schema_version"), "point_id": point_id, "status": "ok",
            "error": "", "method": "giva", "rank": 8, "step_time_ms_p50": 12.5}


def test_a_complete_ok_row_is_written(tmp_path):
    append_row(str(tmp_path), complete_row("a"))
    [row] = read_rows(str(tmp_path / "results.csv"))
    assert (row["point_id"], row["status"], row["rank"], row["step_time_ms_p50"]) == ("a", "ok", "8", "12.5")
    assert row["schema_version"] == str(SCHEMA_VERSION) and row["peak_mem_bytes"] == ""  # None: not measured


def test_an_ok_row_missing_columns_is_refused_naming_them(tmp_path):
    """A builder that forgets a column must not write a row whose empty cell reads as 'not measured'."""
    append_row(str(tmp_path), complete_row("a"))
    row = complete_row("b")
    del row["peak_mem_bytes"], row["eval_loss"]
    with pytest.raises(ValueError, match="ok row 'b' lacks the schema columns peak_mem_bytes, eval_loss: ") as e:
        append_row(str(tmp_path), row)
    assert "\n" not in str(e.value)
    assert [r["point_id"] for r in read_rows(str(tmp_path / "results.csv"))] == ["a"]  # nothing of b written


def test_unknown_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match="outside the schema"):
        append_row(str(tmp_path), {"point_id": "a", "step_time": 3})
    assert not (tmp_path / "results.csv").exists()


def test_the_checked_in_baselines_keep_their_point_ids():
    """Point's fields and the point_id hash are what resume and compare match on: the presets still make the points
    the baselines in reports/baselines/ hold."""
    from bench.config.grid import expand_grid
    from bench.config.presets import make_sweep_config
    from bench.results.read import latest_rows

    for preset, folder in (("quick", "quick-cpu"), ("accuracy-quick", "accuracy-quick-cpu")):
        rows = latest_rows(read_rows(os.path.join(REPO, "reports", "baselines", folder, "results.csv")))
        assert {p.point_id for p in expand_grid(make_sweep_config(preset))} == {r["point_id"] for r in rows}, preset



def test_a_folder_inside_the_repository_is_shown_relative_to_it_and_one_outside_as_given(tmp_path):
    """What a report writes as its run's folder: no path of the machine for a run kept in the repository."""
    assert repo_relative(os.path.join(REPO, "reports", "baselines", "quick-cpu")) == os.path.join("reports", "baselines",
                                                                                                  "quick-cpu")
    assert repo_relative(str(tmp_path)) == str(tmp_path)
