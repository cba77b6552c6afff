"""Bases from another task: the transfer matrix of a run whose data-driven init read other tasks (init_task).

    cells = transfer_cells(ok)    # one row per (matrix, init source, train task): score and change
    lines = format_transfer(cells, several_runs)

A matrix is one method at one rank on one model (and run): its rows are the tasks the init read (an empty
init_task is the point's own task), its columns the tasks trained on. Each cell holds the mean score over seeds and
its change, in points, against the init on the train task itself (the diagonal), over the seeds both ran. The
same-rank points of the methods whose init reads nothing (VeRA: random bases) are reference rows.
"""

from __future__ import annotations

import json

import pandas as pd

from .tables import md_cell, task_metric

CELL_COLUMNS = ["run", "model", "matrix", "source", "reference", "task", "metric", "score", "seeds", "change_points"]


def without_init_task(options: str) -> str:
    """A point's method options, init_task left out: what tells one matrix from another of the same method."""
    try:
        values = json.loads(options) if options else {}
    except json.JSONDecodeError:
        return options
    if not isinstance(values, dict):
        return options
    values.pop("init_task", None)
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()))


def transfer_cells(ok: pd.DataFrame) -> pd.DataFrame:
    """The cells of every transfer matrix in the ok rows; empty where no point names an init_task."""
    rows = ok.dropna(subset=["eval_score"])
    with_init = set(rows.loc[rows["init_task"] != "", "method"])
    if not with_init:
        return pd.DataFrame(columns=CELL_COLUMNS)
    rows = rows.assign(source=rows["init_task"].where(rows["init_task"] != "", rows["task"]),
                       rest=rows["method_options"].map(without_init_task))
    out = []
    for (run, model, method, rest, rank), group in rows[rows["method"].isin(with_init)].groupby(
            ["run", "model", "method", "rest", "rank"], sort=False):
        matrix = f"{method} r{rank}" + (f" ({rest})" if rest else "")
        same_rank = rows[(rows["run"] == run) & (rows["model"] == model) & (rows["rank"] == rank)
                         & ~rows["method"].isin(with_init) & (rows["init_flops"].fillna(0) == 0)]
        own = group[group["source"] == group["task"]]
        sources = [(source, False, points) for source, points in group.groupby("source", sort=False)]
        sources += [(f"{variant} r{rank}", True, points) for variant, points in same_rank.groupby("variant")]
        for source, reference, points in sources:
            for task, cell in points.groupby("task", sort=False):
                scores = cell.groupby("seed")["eval_score"].mean()
                diagonal = own[own["task"] == task].groupby("seed")["eval_score"].mean()
                seeds = scores.index.intersection(diagonal.index)
                change = 100 * (scores[seeds] - diagonal[seeds]).mean() if len(seeds) else float("nan")
                out.append(dict(run=run, model=model, matrix=matrix, source=source, reference=reference, task=task,
                                metric=task_metric(cell), score=scores.mean(), seeds=len(scores),
                                change_points=change))
    return pd.DataFrame(out, columns=CELL_COLUMNS)


def format_transfer(cells: pd.DataFrame, several_runs: bool) -> list[str]:
    """summary.md's section: a table per matrix, init sources as rows, train tasks as columns."""
    if cells.empty:
        return []
    out = ["## Bases from another task (init_task)", "",
           "Rows: the task whose training batches the init read (its own head and loss on the model's body); "
           "columns: the task trained and evaluated, by its own metric. Each cell: mean score over seeds, and in "
           "brackets its change against the init on the train task itself (the diagonal), in points, over the "
           "seeds both ran. Reference rows: the same rank of a method whose init reads no data (VeRA: random "
           "bases).", ""]
    for (run, model, matrix), group in cells.groupby(["run", "model", "matrix"], sort=False):
        tasks = list(dict.fromkeys(group["task"]))
        metrics = group.groupby("task")["metric"].first()
        out += [f"### {model} · {matrix}" + (f" · run {run}" if several_runs else ""), "",
                "| init read | " + " | ".join(f"{t} ({metrics[t]})" for t in tasks) + " | seeds |",
                "|---|" + "---:|" * len(tasks) + "---:|"]
        for (source, reference), row in group.groupby(["source", "reference"], sort=False):
            by_task = row.set_index("task")
            cells_text = []
            for task in tasks:
                if task not in by_task.index:
                    cells_text.append("–")
                elif source == task and not reference:
                    cells_text.append(f"{by_task.loc[task, 'score']:.3f} (own)")
                else:
                    change = by_task.loc[task, "change_points"]
                    cells_text.append(f"{by_task.loc[task, 'score']:.3f}"
                                      + ("" if pd.isna(change) else f" ({change:+.1f})"))
            label = f"{source} (reference)" if reference else source
            out.append(f"| {md_cell(label)} | " + " | ".join(cells_text) + f" | {row['seeds'].max()} |")
        out.append("")
    return out
