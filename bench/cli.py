"""run_bench.py: run sweeps, list what can be run, report, compare runs, track history.

Each subcommand is one Command (COMMANDS, at the end): its help, the function that adds its arguments, and the one
that runs it. The flags of a sweep's settings are made from the fields of SweepConfig and of the executors'
Settings (their `help` metadata: bench/config/flags.py), so the command line cannot drift from the config.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import get_args, get_origin, get_type_hints

from .config.flags import flag_name

DEFAULT_PRESET = "quick"
# The one rule for relative paths, stated in --help (the checks and every point follow it: config/grid.py).
RELATIVE_PATHS = ("A relative path (--data-dir, a model folder, the csv task's train_file and eval_file; in a preset or "
                  "sweep file too) is resolved from the directory run_bench.py is started in, by the checks and by "
                  "every point.")
REPORTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reports")


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


@dataclass(frozen=True)
class Command:
    """A subcommand: its name and help, the function that adds its arguments, and the one that runs it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, list[str]], int]


def _csv_list(kind):
    def parse(text):
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    return parse


def add_field_flags(group, settings_class, command: str, names: dict) -> list[str]:
    """A flag for each field of the dataclass that has a help (for `command`, where it names one); each flag's value
    goes to the field's name, None where the flag is not given. `names` fills the help's {placeholders}. Returns the
    fields that got one."""
    types = get_type_hints(settings_class)
    flagged = []
    for f in fields(settings_class):
        if "help" not in f.metadata or f.metadata.get("command", command) != command:
            continue
        kind = types[f.name]
        options = {key: f.metadata[key] for key in ("metavar", "choices") if key in f.metadata}
        if kind is bool:  # the flag sets the other value
            options.update(action="store_const", const=not f.default)
        else:
            options["type"] = _csv_list(get_args(kind)[0]) if get_origin(kind) is list else kind
        group.add_argument(flag_name(f), dest=f.name, default=None, help=f.metadata["help"].format(**names), **options)
        flagged.append(f.name)
    return flagged


def registry_names() -> dict:
    """What the sweep flags' help names from the registries (config/sweep.py's {placeholders})."""
    from .models import DTYPES
    from .tasks import TASK_NAMES
    from .tasks.textdata import LOCAL_FILES

    return {"tasks": ", ".join(TASK_NAMES), "dtypes": ", ".join(DTYPES),
            "data_folders": ", ".join(f"{name}/" for name in LOCAL_FILES)}


def add_sweep_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """What `run` and `estimate` share: the sweep (preset or file), its settings' flags, and the run directory."""
    from .config.presets import PRESETS
    from .config.sweep import SweepConfig

    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", help=f"named sweep: {', '.join(PRESETS)} (`list presets`); default "
                        f"{DEFAULT_PRESET}")
    source.add_argument("--config", metavar="FILE", help="sweep file (TOML) with SweepConfig keys (a preset's file "
                        "in bench/presets/ is one)")
    parser.add_argument("--out", metavar="RUN_DIR", help="run directory; default reports/runs/NAME-COMMIT")
    sweep = parser.add_argument_group("sweep", "SweepConfig's fields, over the preset's or the sweep file's. "
                                      + RELATIVE_PATHS)
    flagged = add_field_flags(sweep, SweepConfig, command, registry_names())
    # train is a table (TrainSettings); its steps has a flag of its own
    sweep.add_argument("--steps", type=int, help="training steps per accuracy point (train.steps)")
    parser.add_argument("--no-report", action="store_true", help="skip plots and summary.md at the end")
    parser.set_defaults(sweep_fields=flagged, executor_fields=[])


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """`run`'s executor flags: --executor (the [executor] table's kind) and every executor's Settings fields."""
    from .run.executors import DEFAULT_EXECUTOR, EXECUTORS

    group = parser.add_argument_group("executor", "where points run (also an [executor] table in the sweep file; "
                                      "docs/executors.md)")
    group.add_argument("--executor", dest="kind", choices=list(EXECUTORS), help="; ".join(
        f"{name}{' (default)' if name == DEFAULT_EXECUTOR else ''}: {executor.summary}"
        for name, executor in EXECUTORS.items()))
    flagged = [flag for executor in EXECUTORS.values()
               for flag in add_field_flags(group, executor.Settings, "run", {})]
    parser.set_defaults(executor_fields=["kind", *flagged])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line. With `only` (a command's name, or anything else for none), the other commands' arguments
    are left out: they import the registries their help names (the tasks' imports torch)."""
    parser = Parser(prog="run_bench.py", description="Benchmark LoRA, VeRA and GiVA: init overhead, step time, memory, "
                    "parameters and accuracy, across methods, ranks and models. No subcommand = `run --preset quick`.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for command in COMMANDS.values():
        command_parser = sub.add_parser(command.name, help=command.help)
        if only in (None, command.name):
            command.add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command_line = argv or ["run"]
    args = build_parser(only=command_line[0]).parse_args(command_line)
    try:
        return COMMANDS[args.command].run(args, argv)
    except (ValueError, FileNotFoundError, NotADirectoryError, ImportError) as e:
        print(f"run_bench.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("run_bench.py: interrupted; rows written so far are kept, rerun the same command to resume", file=sys.stderr)
        return 130


def sweep_config(args):
    """The SweepConfig of `run` or `estimate`: preset or file, then the command line, checked against the
    registries; and its run directory."""
    from .config.presets import load_sweep_file, make_sweep_config
    from .results.environment import git_info
    from .run.validate import check_config

    overrides = {name: getattr(args, name) for name in args.sweep_fields if getattr(args, name) is not None}
    file_values = load_sweep_file(args.config) if args.config else {}
    executor_flags = {name: getattr(args, name) for name in args.executor_fields if getattr(args, name) is not None}
    if executor_flags:
        executor_table = file_values.get("executor", {})
        if not isinstance(executor_table, dict):
            raise ValueError(f"the sweep file's executor must be a table ([executor]), got {executor_table!r}")
        overrides["executor"] = {**executor_table, **executor_flags}
    preset = None if args.config else (args.preset or DEFAULT_PRESET)
    base = make_sweep_config(preset, file_values)
    notes = []
    if args.steps is not None:
        overrides["train"] = {**base.train, "steps": args.steps}
    if args.ranks is not None:  # the command line wins over the preset's or file's per-method ranks
        own = {m: options["ranks"] for m, options in base.method_options.items() if "ranks" in options}
        if own:
            overrides["method_options"] = {m: {k: v for k, v in options.items() if k != "ranks"}
                                           for m, options in base.method_options.items()}
            replaced = ", ".join(f"{m} {ranks}" for m, ranks in own.items())
            notes.append(f"--ranks {','.join(map(str, args.ranks))} replaces the per-method ranks of the "
                         f"{'sweep file' if args.config else 'preset'} ({replaced})")
    config = make_sweep_config(preset, file_values, overrides)
    check_config(config)
    name = (preset or os.path.splitext(os.path.basename(args.config))[0]) + ("-estimate" if args.command == "estimate" else "")
    if args.out is not None and not args.out.strip():
        raise ValueError("--out is empty; give a run directory, or leave --out out for reports/runs/NAME-COMMIT")
    run_dir = args.out or os.path.join(REPORTS_DIR, "runs", f"{name}-{(git_info()['commit'] or 'nogit')[:7]}")
    print(f"sweep: {describe_sweep(config)}" + "".join(f"\nnote: {note}" for note in notes))
    return config, run_dir


def describe_sweep(config) -> str:
    """The resolved grid in one line: models, tasks, each method's ranks (and init tasks) as they will run."""
    ranks = "; ".join(describe_axes(config, m) for m in config.methods)
    ladder = f" size_ladder={','.join(config.size_ladder)} (estimated)" if config.size_ladder else ""
    return f"models={','.join(config.models)} tasks={','.join(config.tasks)} {ranks}{ladder}"


def run_arguments(parser) -> None:
    add_sweep_arguments(parser, "run")
    parser.add_argument("--retry-failed", action="store_true", help="run failed points of the run directory again")
    parser.add_argument("--history", metavar="CSV", nargs="?", const=os.path.join(REPORTS_DIR, "history.csv"),
                        help="append the run's results to a history file (default reports/history.csv)")
    add_executor_arguments(parser)


def cmd_run(args, argv) -> int:
    from .run.sweep import run_sweep

    config, run_dir = sweep_config(args)
    rows = run_sweep(config, run_dir, ["run_bench.py", *argv], retry_failed=args.retry_failed)
    print(f"{len(rows)} points run; results in {os.path.join(run_dir, 'results.csv')}")
    if config.executor.get("no_wait"):
        return 0
    return finish_run(run_dir, args)


def estimate_arguments(parser) -> None:
    add_sweep_arguments(parser, "estimate")


def cmd_estimate(args, argv) -> int:
    from .run.sweep import run_sweep

    config, run_dir = sweep_config(args)
    rows = run_sweep(config, run_dir, ["run_bench.py", *argv], estimated=True)
    failed = sum(row["status"] != "ok" for row in rows)
    print(f"{len(rows)} points estimated ({failed} failed); results in {os.path.join(run_dir, 'results.csv')}")
    return finish_run(run_dir, args)


def finish_run(run_dir: str, args) -> int:
    """Report and history for a run with rows; exit 1 when no point of the run succeeded."""
    from .results.read import RESULTS_FILE, latest_rows, read_rows

    rows = latest_rows(read_rows(os.path.join(run_dir, RESULTS_FILE)))
    if not any(r["status"] == "ok" for r in rows):
        statuses = [r["status"] for r in rows]
        print(f"no point succeeded ({statuses.count('failed')} failed, {statuses.count('skipped')} skipped); "
              "see the errors above and in logs/", file=sys.stderr)
        return 1
    if not getattr(args, "no_report", False):
        from .report import build_report

        written = build_report([run_dir])
        print(f"report: {os.path.join(run_dir, 'summary.md')} ({len(written)} files)")
    if getattr(args, "history", None):
        from .track.history import append_history

        print(f"history: {append_history(run_dir, args.history)} rows added to {args.history}")
    return 0


def collect_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR")


def cmd_collect(args, argv) -> int:
    from .run.sweep import collect

    rows = collect(args.run_dir)
    print(f"{len(rows)} rows collected into {os.path.join(args.run_dir, 'results.csv')}")
    return finish_run(args.run_dir, args) if rows else 0


def bisect_arguments(parser) -> None:
    parser.add_argument("good", metavar="GOOD", help="a commit where the metric is as it should be")
    parser.add_argument("bad", metavar="BAD", help="a later commit (GOOD is its ancestor) where it changed")
    sweep = parser.add_mutually_exclusive_group(required=True)
    sweep.add_argument("--preset", help="named sweep, as each commit defines it (e.g. counts)")
    sweep.add_argument("--config", metavar="FILE", help="sweep file (TOML), the same for every commit")
    parser.add_argument("--metric", required=True, help="an exact count (flops_per_step, tensor_peak_bytes, ...) or "
                        "step_time_ms_p50 (run at each step, alternately with GOOD)")
    parser.add_argument("--repeats", type=int, default=3, help="timings: runs per commit and side (default 3)")


def cmd_bisect(args, argv) -> int:
    from .track.bisect import bisect, format_bisect

    result = bisect(args.good, args.bad, args.metric, args.preset, args.config, args.repeats,
                    log=lambda line: print(line, file=sys.stderr))
    print(format_bisect(result))
    return 0 if result.first else 1


def ab_arguments(parser) -> None:
    from .track.ab import BUDGET_MIN, PRESET
    from .track.rules import AB_MIN_EFFECT

    parser.add_argument("base", metavar="BASE", help="the commit to compare against (e.g. main)")
    parser.add_argument("head", metavar="HEAD", help="the commit under test (e.g. HEAD)")
    sweep = parser.add_mutually_exclusive_group()
    sweep.add_argument("--preset", help=f"named sweep of timing-only points, this checkout's file in bench/presets/ "
                       f"(default {PRESET})")
    sweep.add_argument("--config", metavar="FILE", help="sweep file (TOML), the same for both commits")
    parser.add_argument("--budget", type=float, default=BUDGET_MIN, metavar="MINUTES", help="stop after the round "
                        f"that would pass this many minutes (default {BUDGET_MIN:g})")
    parser.add_argument("--max-rounds", type=int, metavar="N", help="stop after N rounds even when points are "
                        "undecided (default: the budget alone)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arms' order in each round (default 0)")
    parser.add_argument("--min-effect", default=f"{AB_MIN_EFFECT:.0%}", metavar="PERCENT", help="the smallest "
                        "step-time change that counts as slower or faster; same = inside +- it (default %(default)s)")
    parser.add_argument("--out", metavar="DIR", help="write DIR/ab.csv (every process's value per point) and "
                        "DIR/ab.json (commits, sweep, seed, machine, versions, verdicts)")


def cmd_ab(args, argv) -> int:
    from .columns import parse_limit
    from .track.ab import exit_code, format_gate, run_gate

    limit = parse_limit(args.min_effect)
    if limit is None or not limit[1]:
        raise ValueError(f"--min-effect {args.min_effect!r} is not a percentage; write e.g. 5%")
    result = run_gate(args.base, args.head, args.preset, args.config, args.budget, args.seed, limit[0], args.out,
                      args.max_rounds, log=lambda line: print(line, file=sys.stderr))
    print(format_gate(result))
    return exit_code(result)


def counts_arguments(parser) -> None:
    parser.add_argument("--update", action="store_true", help="write the baseline anew; commit it with the change "
                        "that moved the counts")


def cmd_counts(args, argv) -> int:
    from .track.counts import BASELINE, PRESET, count_rows, diff_counts, failure_message, read_counts, write_counts

    if args.update:
        rows = count_rows()
        write_counts(rows)
        print(f"{BASELINE}: {len(rows)} points of the `{PRESET}` preset written; commit it with the change")
        return 0
    baseline = read_counts()  # a missing or foreign baseline fails before the trace
    differences = diff_counts(baseline, count_rows())
    if differences:
        print(failure_message(differences))
        return 1
    print(f"the exact counts of {len(baseline)} points equal {BASELINE}")
    return 0


def list_arguments(parser) -> None:
    parser.add_argument("what", nargs="?", choices=["models", "tasks", "presets", "methods"], help="default: all")


def cmd_list(args, argv) -> int:
    from .adapters import method_names
    from .config.presets import PRESETS, make_sweep_config
    from .models import REGISTRY, count_params
    from .tasks import TASK_NAMES

    if args.what in (None, "models"):
        print("models (or any transformers hub id / local path):")
        for entry in REGISTRY.values():
            params = f"{count_params(entry) / 1e6:8.1f}M" if entry.source == "random" else "        "
            print(f"  {entry.name:14s} {entry.family:6s} {entry.source:8s} {params}  {entry.note}")
    if args.what in (None, "tasks"):
        print("tasks: " + ", ".join(TASK_NAMES))
    if args.what in (None, "presets"):
        print("presets:")
        for name in PRESETS:
            print(f"  {name:15s} {describe_sweep(make_sweep_config(name))}")
    if args.what in (None, "methods"):
        ours, peft = method_names()
        print("methods: " + ", ".join(ours))
        if peft is None:
            print("PEFT's methods (peft:<name>): install PEFT to list them (pip install -e \".[peft]\")")
        else:
            print("PEFT's methods: " + ", ".join(peft))
    return 0


def describe_axes(config, method: str) -> str:
    """A method's ranks, and the tasks its init reads where it names some: `giva r=8 init_task=sst2,trec`."""
    from .tasks.init_task import InitTask

    inits = [InitTask.parse(v).label for v in config.init_tasks_for(method) if v is not None]
    return (f"{method} r={','.join(map(str, config.ranks_for(method)))}"
            + (f" init_task={','.join(inits)}" if inits else ""))


def report_arguments(parser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", help="output folder (needed for several run directories)")
    parser.add_argument("--assume-steps", type=int, metavar="N", help="the fine-tuning length, in training steps, "
                        "that every init share in the report is of; default: the one the rows' `estimate "
                        "--assume-steps` assumed, else 1000")


def cmd_report(args, argv) -> int:
    from .report import build_report

    written = build_report(args.run_dirs, args.out, args.assume_steps)
    print("\n".join(written))
    return 0


def compare_arguments(parser) -> None:
    parser.add_argument("baseline", help="baseline run directory or results.csv")
    parser.add_argument("current", help="current run directory or results.csv")
    from .track.rules import DEFAULT_THRESHOLDS

    parser.add_argument("--threshold", action="append", default=[], metavar="METRIC:LIMIT",
                        help="a metric's limit, repeatable; the defaults: "
                        + ", ".join(str(t) for t in DEFAULT_THRESHOLDS.values()).replace("%", "%%"))
    parser.add_argument("--across-loads", action="store_true", help="judge timing regressions of points one run "
                        "timed on a busy machine (1-minute load above its cores) and the other on a quiet one; "
                        "without it they are listed as not judged and compare exits 3 when nothing else regressed")
    parser.add_argument("--across-machines", action="store_true", help="judge the timings and memory readings of "
                        "runs timed on two machines (processor, device or torch threads differ); without it they "
                        "are listed as not comparable and compare exits 3 when nothing else regressed")


def cmd_compare(args, argv) -> int:
    from .track.compare import compare_and_print

    return compare_and_print(args.baseline, args.current, args.threshold, across_loads=args.across_loads,
                             across_machines=args.across_machines)


HISTORY_PLOTS = ["step_time_ms_p50", "init_total_s", "peak_mem_bytes", "flops_per_step", "tensor_peak_bytes"]


def history_arguments(parser) -> None:
    from .columns import HISTORY_METRICS
    from .track.rules import MIN_EFFECT

    parser.add_argument("action", nargs="?", choices=["plot", "regressions"], default="plot",
                        help="plot (default): PNG/SVG plots of --metrics; regressions: the change points of every "
                        "series and metric, exit 1 when an unacknowledged regression holds in the latest segment, 3 "
                        "when nothing did but a series changed machines too recently to judge its timings")
    parser.add_argument("--append", nargs="*", default=[], metavar="RUN_DIR", help="runs to add first")
    parser.add_argument("--file", default=os.path.join(REPORTS_DIR, "history.csv"),
                        help="the history CSV (default reports/history.csv)")
    parser.add_argument("--html", metavar="DIR", help="write DIR/index.html: the regressions table and one plot per "
                        "metric with its fitted segments (self-contained; the PNG/SVG plots are not written then)")
    parser.add_argument("--json", action="store_true", help="regressions: print JSON instead of the table")
    parser.add_argument("--acknowledged", metavar="TOML", default=os.path.join(REPORTS_DIR, "acknowledged.toml"),
                        help="intended changes (series, metric, commit, reason); default reports/acknowledged.toml")
    parser.add_argument("--threshold", action="append", default=[], metavar="METRIC:LIMIT",
                        help="minimum effect of a noisy metric's change, repeatable; the defaults: "
                        + ", ".join(str(t) for t in MIN_EFFECT.values()).replace("%", "%%"))
    parser.add_argument("--series", metavar="GLOB", help="only the series whose name matches (e.g. '*giva r8*')")
    parser.add_argument("--machine", metavar="HOST/DEVICE", help="only the runs of one machine (e.g. 'vm/cpu')")
    parser.add_argument("--metrics", type=_csv_list(str), default=HISTORY_PLOTS, help="comma-separated metrics to "
                        f"plot, of {', '.join(HISTORY_METRICS)} (default {','.join(HISTORY_PLOTS)})")
    parser.add_argument("--out", default=os.path.join(REPORTS_DIR, "history"), help="folder for the plots")


def cmd_history(args, argv) -> int:
    from .track.acknowledged import read_acknowledged
    from .track.rules import parse_thresholds
    from .track.history import append_history, read_history, select_series
    from .track.page import plot_history

    thresholds = parse_thresholds(args.threshold)  # bad input fails before anything is written
    acknowledged = read_acknowledged(args.acknowledged)
    if args.append:
        print(f"{append_history(args.append, args.file)} rows added from {len(args.append)} run(s) to {args.file}",
              file=sys.stderr if args.json else sys.stdout)
    if args.action == "plot" and not args.html:
        print("\n".join(plot_history(args.file, args.metrics, args.out)))
        return 0
    from .track.changes import find_changes
    from .track.verdict import exit_code, format_verdict, verdict_json

    detection = find_changes(select_series(read_history(args.file), args.series, args.machine), thresholds,
                             acknowledged)
    if args.html:
        from .track.page import write_page

        print(f"page: {write_page(detection, args.html)}", file=sys.stderr if args.json else sys.stdout)
    if args.action == "plot":
        return 0
    if args.json:
        import json

        print(json.dumps(verdict_json(detection), indent=1, default=float))
    else:
        print(format_verdict(detection))
    return exit_code(detection)


COMMANDS = {command.name: command for command in [
    Command("run", "run a sweep into a run directory (resumes if it exists)", run_arguments, cmd_run),
    Command("estimate", "predict FLOPs and tensor memory of a sweep's points without running them (FakeTensorMode: "
            "shapes only, any model size)", estimate_arguments, cmd_estimate),
    Command("collect", "record the rows of jobs submitted with `run --no-wait` (safe to repeat)", collect_arguments,
            cmd_collect),
    Command("bisect", "the first commit of GOOD..BAD where a metric changed, in temporary git worktrees (exact "
            "metrics by estimate: seconds per commit)", bisect_arguments, cmd_bisect),
    Command("ab", "the PR gate: BASE and HEAD in temporary worktrees, paired short processes in seeded order until "
            "each point is slower, faster or the same; exit 0 same or faster, 1 slower, 3 undecided within the "
            "budget", ab_arguments, cmd_ab),
    Command("counts", "the exact counts (FLOPs, tensor bytes, parameters, copies, allocations, syncs, operator "
            "calls) of the `counts` preset, estimated, against reports/count_baseline.csv; exit 1 on a difference",
            counts_arguments, cmd_counts),
    Command("list", "list models, tasks, presets and methods", list_arguments, cmd_list),
    Command("report", "plots and summary.md from results.csv and meta.json", report_arguments, cmd_report),
    Command("compare", "compare two runs; exit 1 on a regression, 3 when the only regressions are timings taken at "
            "different loads or on two machines", compare_arguments, cmd_compare),
    Command("history", "append runs to a history over commits; plot it, find its change points and regressions "
            "(exit 1 on one), write its page", history_arguments, cmd_history),
]}
