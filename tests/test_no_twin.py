"""No test builds a result row itself: the rows tests read are the harness's (tests/real_run.py, tests/data), and a
test that needs another run edits the values of a copy of them, so that a change of the harness's row cannot pass
the report, compare and claims tests unnoticed.

A hand-made row, found by reading each test module's syntax tree:
- a dict display or dict(...) call naming MIN_COLUMNS or more columns of bench/columns.py, one at least measured
  (not a setting, as a sweep's or a Point's keyword arguments are), that does not start from an existing mapping
  ({**row, ...}, dict(row, ...): an edit of a copy);
- results.csv text: a line of a string with MIN_COLUMNS or more column names between its commas;
- any call of append_row.
ALLOWED lists the tests that must build one, each with its reason.
"""

from __future__ import annotations

import ast
import glob
import os
from dataclasses import fields

import pytest

from bench.columns import COLUMN_NAMES, IDENTITY
from bench.config.sweep import Point, SweepConfig

TESTS = os.path.dirname(os.path.abspath(__file__))
COLUMNS = set(COLUMN_NAMES)
# columns that share their names with a sweep's or a point's settings
SETTINGS = set(IDENTITY) | {f.name for f in fields(Point)} | {f.name for f in fields(SweepConfig)}
MIN_COLUMNS = 3  # two columns (status and error, the load pair) are an edit; three make a row
# (module file name, function) -> why it builds a row itself
ALLOWED = {
    ("test_bench_results.py", "test_torn_last_line_is_cut_before_the_next_append"):
        "append_row's own test: a torn last line is cut before the next row, a comma in an error kept",
    ("test_bench_results.py", "test_unknown_column_is_refused"):
        "append_row's refusal of a column outside the schema",
    ("compare_estimate.py", "points_table"):
        "the GPU check's report script (tests/gpu/): pandas aggregations of real rows, named by their columns",
    ("compare_estimate.py", "init_table"):
        "the GPU check's report script (tests/gpu/): pandas aggregations of real rows, named by their columns",
    ("test_bench_results.py", "test_a_complete_ok_row_is_written"):
        "append_row's own test: an ok row naming every schema column is written and reads back",
    ("test_bench_results.py", "test_an_ok_row_missing_columns_is_refused_naming_them"):
        "append_row's refusal of an ok row that lacks schema columns",
    ("test_report.py", "test_a_damaged_or_foreign_csv_gives_an_error_naming_the_file"):
        "the reader's one-line errors on damaged or foreign results.csv text",
    ("test_plot_geometry.py", "test_lora_steps_are_lora_at_the_same_rank_or_the_nearest_and_peft_lora_stands_in"):
        "lora_step_ms's nearest-rank rule on six hand-picked ranks, in a frame of the columns it reads; the test's "
        "second half checks the same number on the real run",
}


def is_copy(node: ast.expr) -> bool:
    """An expression that names an existing mapping (a row, a function's row), not one written out here."""
    return not isinstance(node, (ast.Dict, ast.DictComp))


def row_columns(node: ast.AST) -> set[str]:
    """The columns a dict display or dict(...) call writes out; none where it starts from an existing mapping (an
    edit of a copy: {**row, ...}, dict(row, ...)). A mapping spread in later adds to a row written out here."""
    if isinstance(node, ast.Dict):
        if node.keys and node.keys[0] is None and is_copy(node.values[0]):
            return set()
        names = {key.value for key in node.keys if isinstance(key, ast.Constant)}
        names |= {c.value for key, value in zip(node.keys, node.values) if key is None and not is_copy(value)
                  for c in ast.walk(value) if isinstance(c, ast.Constant)}
        return names & COLUMNS
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args or (node.keywords and node.keywords[0].arg is None):
            return set()
        return {k.arg for k in node.keywords} & COLUMNS
    return set()


def csv_columns(node: ast.AST) -> set[str]:
    """The column names of the string's line that holds the most between its commas."""
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return set()
    return max((set(line.split(",")) & COLUMNS for line in node.value.splitlines()), key=len, default=set())


def is_append_row(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "append_row"


def hand_made_rows(source: str) -> list[tuple[str, int, str]]:
    """(function, line, what) of each hand-made row in a module's source ("<module>" outside any function)."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and function == "<module>":
            function = node.name  # a test and its decorators (parametrize), nested helpers included
        for columns, what in ((row_columns(node), "a dict of columns"), (csv_columns(node), "results.csv text")):
            if len(columns) >= MIN_COLUMNS and columns - SETTINGS:
                found.append((function, node.lineno, f"{what}: {', '.join(sorted(columns))}"))
        if is_append_row(node):
            found.append((function, node.lineno, "a call of append_row"))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(source), "<module>")
    return found


def module_paths() -> list[str]:
    return sorted(glob.glob(os.path.join(TESTS, "**", "*.py"), recursive=True))


def test_no_test_module_builds_a_result_row_itself():
    offenders, used = [], set()
    for path in module_paths():
        name = os.path.basename(path)  # the module, wherever under tests/ it lies
        with open(path) as f:
            for function, line, what in hand_made_rows(f.read()):
                if (name, function) in ALLOWED:
                    used.add((name, function))
                else:
                    offenders.append(f"{name}:{line} ({function}): {what}")
    assert not offenders, ("build these rows with the harness (the real_run_dir fixture) and edit a copy's values "
                           "(tests/real_run.py), or list the test in ALLOWED with its reason:\n" + "\n".join(offenders))
    assert used == set(ALLOWED), f"ALLOWED names tests that build no row: {sorted(set(ALLOWED) - used)}"


@pytest.mark.parametrize("source, what", [
    ('ROW = {"point_id": "a", "status": "ok", "step_time_ms_p50": 1.0}', "a dict of columns"),
    ("def measure():\n    return dict(status='ok', error='', model_params=3, **step)", "a dict of columns"),
    ('{"status": "ok", "point_id": "a", **step, "eval_score": 0.5}', "a dict of columns"),
    ('blank = {**{c: "" for c in first}, **{k: first[k] for k in ("point_id", "model")}, "status": "failed"}',
     "a dict of columns"),
    ('frame = pd.DataFrame({"model": ["m"], "method": ["lora"], "eval_score": [0.8]})', "a dict of columns"),
    ('TEXT = "schema_version,point_id,status,model\\n4,a,ok,m\\n"', "results.csv text"),
    ("def make(run_dir, row):\n    append_row(run_dir, row)", "a call of append_row"),
])
def test_the_check_finds_a_planted_hand_made_row(source, what):
    (found,) = hand_made_rows(source)
    assert found[2].startswith(what)


@pytest.mark.parametrize("source", [
    '{**row, "status": "failed", "error": "boom", "point_id": "x"}',  # an edit of a copy of a real row
    'dict(row, status="failed", error="boom", point_id="x")',
    '{"status": "failed", "error": "boom"}',  # two columns
    'config = dict(models=["llama-2m"], methods=["lora"], ranks=[2])',  # a sweep's settings, not a row
])
def test_the_check_passes_edits_of_a_copy_and_settings(source):
    assert hand_made_rows(source) == []
