"""run_bench.py: run sweeps, list what can be run, report, compare runs, track history."""

from __future__ import annotations

import argparse
import os
import sys

from .config.executor import KINDS

DEFAULT_PRESET = "quick"
# The one rule for relative paths, stated in --help (the checks and every point follow it: config/grid.py).
RELATIVE_PATHS = ("A relative path (--data-dir, a model folder, the csv task's train_file and eval_file; in a preset or "
                  "sweep file too) is resolved from the directory run_bench.py is started in, by the checks and by "
                  "every point.")
REPORTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reports")


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _csv_list(kind):
    def parse(text):
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    return parse


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """What `run` and `estimate` share: the sweep (preset or file), its overrides, and the run directory."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", help=f"named sweep (see `list`); default {DEFAULT_PRESET}")
    source.add_argument("--config", metavar="FILE", help="sweep file (TOML) with SweepConfig keys")
    parser.add_argument("--out", metavar="RUN_DIR", help="run directory; default reports/runs/NAME-COMMIT")
    parser.add_argument("--models", type=_csv_list(str), help="comma-separated model names, hub ids or paths")
    parser.add_argument("--tasks", type=_csv_list(str), help="comma-separated tasks (profile, planted, sst2, mrpc, "
                        "stsb, csv, digits, images, cifar100, gen:arithmetic, gen:gsm8k, gen:csv, ...; `list tasks` "
                        "names them all)")
    parser.add_argument("--methods", type=_csv_list(str), help="comma-separated: lora,vera,giva and PEFT's as "
                        "peft:<name> (see `list methods`)")
    parser.add_argument("--ranks", type=_csv_list(int), help="comma-separated ranks for every method; replaces a "
                        "preset's or sweep file's per-method ranks")
    parser.add_argument("--size-ladder", type=_csv_list(str), metavar="MODELS", help="comma-separated models traced "
                        "by `estimate` beside the measured ones, each method at its first rank (the quick preset's: "
                        "llama-1b,llama-7b); --size-ladder '' traces none")
    parser.add_argument("--seeds", type=_csv_list(int))
    parser.add_argument("--batch-sizes", type=_csv_list(int))
    parser.add_argument("--seq-lens", type=_csv_list(int))
    parser.add_argument("--device", help="auto, cpu or cuda[:N]")
    parser.add_argument("--dtype", help="float32, bfloat16 or float16")
    parser.add_argument("--data-dir", help="folder with sst2/, trec/, emotion/, agnews/, mrpc/, stsb/ (e.g. "
                        "../shared/data); empty: the datasets by name from the Hugging Face hub. " + RELATIVE_PATHS)
    parser.add_argument("--steps", type=int, help="training steps per accuracy point")
    parser.add_argument("--threads", type=int, help="torch threads per point (0 = default)")
    parser.add_argument("--no-report", action="store_true", help="skip plots and summary.md at the end")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="run_bench.py", description="Benchmark LoRA, VeRA and GiVA: init overhead, step time, memory, "
                    "parameters and accuracy, across methods, ranks and models. No subcommand = `run --preset quick`.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    run = sub.add_parser("run", help="run a sweep into a run directory (resumes if it exists)")
    add_sweep_arguments(run)
    run.add_argument("--in-process", action="store_true", help="run points in this process (faster start, "
                     "memory readings shared between points, a crash ends the sweep)")
    run.add_argument("--retry-failed", action="store_true", help="run failed points of the run directory again")
    run.add_argument("--malloc-mmap-threshold", type=int, metavar="BYTES", help="MALLOC_MMAP_THRESHOLD_ of point "
                     "processes on CPU: 65536 makes RSS (peak_mem_bytes) follow the live tensors but slows each step "
                     "(1.75-1.9x on MiniLM); default 0, glibc's own, whose kept heap lets RSS run past them")
    run.add_argument("--history", metavar="CSV", nargs="?", const=os.path.join(REPORTS_DIR, "history.csv"),
                     help="append the run's results to a history file (default reports/history.csv)")
    ex = run.add_argument_group("executor", "where points run (also an [executor] table in the sweep file; "
                                "README: Running on a cluster)")
    ex.add_argument("--executor", choices=KINDS, help="local (default): one point at a "
                    "time here; pool: several at once here; ray: Ray tasks; slurm: a SLURM job array (submitit)")
    ex.add_argument("--workers", type=int, help="pool: points at once (default one per GPU, or cores // threads)")
    ex.add_argument("--allow-shared-timing", action="store_true", default=None,
                    help="pool: let workers x threads exceed the cores (timings not comparable; recorded per row)")
    ex.add_argument("--ray-address", help="ray: host:port of a running cluster (default $RAY_ADDRESS, else a local "
                    "cluster for the run)")
    ex.add_argument("--ray-num-cpus", type=int, help="ray: CPUs of the local cluster (default all)")
    ex.add_argument("--slurm-cluster", choices=["slurm", "local"], help="slurm: 'local' tries it on this machine "
                    "with submitit's local jobs")
    ex.add_argument("--slurm-partition")
    ex.add_argument("--slurm-gpus-per-task", type=int, help="default 1 when --device is cuda, else 0")
    ex.add_argument("--slurm-time-min", type=int, help="job time limit (default point_timeout_s + 5 min)")
    ex.add_argument("--slurm-array-parallelism", type=int, help="jobs at once (default 256; 1 for local jobs)")
    ex.add_argument("--no-wait", action="store_true", default=None, help="slurm: submit and return; gather the rows "
                    "with `collect RUN_DIR`")

    estimate = sub.add_parser("estimate", help="predict FLOPs and tensor memory of a sweep's points without running "
                              "them (FakeTensorMode: shapes only, any model size)")
    add_sweep_arguments(estimate)
    estimate.add_argument("--assume-steps", type=int, metavar="N", help="the fine-tuning length, in training steps, "
                          "that each row's init_flops_share (the init's share of the run's FLOPs) assumes; default: "
                          "each point's own (its train steps)")

    collect = sub.add_parser("collect", help="record the rows of jobs submitted with `run --no-wait` (safe to repeat)")
    collect.add_argument("run_dir", metavar="RUN_DIR")

    bisect = sub.add_parser("bisect", help="the first commit of GOOD..BAD where a metric changed, in temporary git "
                            "worktrees (exact metrics by estimate: seconds per commit)")
    bisect.add_argument("good", metavar="GOOD", help="a commit where the metric is as it should be")
    bisect.add_argument("bad", metavar="BAD", help="a later commit (GOOD is its ancestor) where it changed")
    sweep = bisect.add_mutually_exclusive_group(required=True)
    sweep.add_argument("--preset", help="named sweep, as each commit defines it (e.g. counts)")
    sweep.add_argument("--config", metavar="FILE", help="sweep file (TOML), the same for every commit")
    bisect.add_argument("--metric", required=True, help="an exact count (flops_per_step, tensor_peak_bytes, ...) or "
                        "step_time_ms_p50 (run at each step, alternately with GOOD)")
    bisect.add_argument("--repeats", type=int, default=3, help="timings: runs per commit and side (default 3)")

    add_ab_arguments(sub.add_parser("ab", help="the PR gate: BASE and HEAD in temporary worktrees, paired short "
                                    "processes in seeded order until each point is slower, faster or the same; exit "
                                    "0 same or faster, 1 slower, 3 undecided within the budget"))

    counts = sub.add_parser("counts", help="the exact counts (FLOPs, tensor bytes, parameters) of the `counts` "
                            "preset, estimated, against reports/count_baseline.csv; exit 1 on a difference")
    counts.add_argument("--update", action="store_true", help="write the baseline anew; commit it with the change "
                        "that moved the counts")

    lister = sub.add_parser("list", help="list models, tasks, presets and methods")
    lister.add_argument("what", nargs="?", choices=["models", "tasks", "presets", "methods"], help="default: all")

    report = sub.add_parser("report", help="plots and summary.md from results.csv and meta.json")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", help="output folder (needed for several run directories)")

    compare = sub.add_parser("compare", help="compare two runs; exit 1 on a regression, 3 when the only "
                             "regressions are timings taken at different loads")
    compare.add_argument("baseline", help="baseline run directory or results.csv")
    compare.add_argument("current", help="current run directory or results.csv")
    compare.add_argument("--threshold", action="append", default=[], metavar="METRIC:LIMIT",
                         help="e.g. step_time_ms_p50:10%%, peak_mem_bytes:5%%, eval_accuracy:1pt (repeatable)")
    compare.add_argument("--across-loads", action="store_true", help="judge timing regressions of points one run "
                         "timed on a busy machine (1-minute load above its cores) and the other on a quiet one; "
                         "without it they are listed as not judged and compare exits 3 when nothing else regressed")

    history = sub.add_parser("history", help="append runs to a history over commits; plot it, find its change points "
                             "and regressions (exit 1 on one), write its page")
    history.add_argument("action", nargs="?", choices=["plot", "regressions"], default="plot",
                         help="plot (default): PNG/SVG plots of --metrics; regressions: the change points of every "
                         "series and metric, exit 1 when an unacknowledged regression holds in the latest segment")
    history.add_argument("--append", nargs="*", default=[], metavar="RUN_DIR", help="runs to add first")
    history.add_argument("--file", default=os.path.join(REPORTS_DIR, "history.csv"),
                         help="the history CSV (default reports/history.csv)")
    history.add_argument("--html", metavar="DIR", help="write DIR/index.html: the regressions table and one plot per "
                         "metric with its fitted segments (self-contained; the PNG/SVG plots are not written then)")
    history.add_argument("--json", action="store_true", help="regressions: print JSON instead of the table")
    history.add_argument("--acknowledged", metavar="TOML", default=os.path.join(REPORTS_DIR, "acknowledged.toml"),
                         help="intended changes (series, metric, commit, reason); default reports/acknowledged.toml")
    history.add_argument("--threshold", action="append", default=[], metavar="METRIC:LIMIT",
                         help="minimum effect of a noisy metric's change, e.g. step_time_ms_p50:5%% (the default)")
    history.add_argument("--series", metavar="GLOB", help="only the series whose name matches (e.g. '*giva r8*')")
    history.add_argument("--machine", metavar="HOST/DEVICE", help="only the runs of one machine (e.g. 'vm/cpu')")
    history.add_argument("--metrics", type=_csv_list(str), default=["step_time_ms_p50", "init_total_s", "peak_mem_bytes",
                                                                     "flops_per_step", "tensor_peak_bytes"])
    history.add_argument("--out", default=os.path.join(REPORTS_DIR, "history"), help="folder for the plots")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv or ["run"])
    try:
        return COMMANDS[args.command](args, argv)
    except (ValueError, FileNotFoundError, NotADirectoryError, ImportError) as e:
        print(f"run_bench.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("run_bench.py: interrupted; rows written so far are kept, rerun the same command to resume", file=sys.stderr)
        return 130


EXECUTOR_FLAGS = ("executor", "workers", "allow_shared_timing", "ray_address", "ray_num_cpus", "slurm_cluster",
                  "slurm_partition", "slurm_gpus_per_task", "slurm_time_min", "slurm_array_parallelism", "no_wait")


def sweep_config(args):
    """The SweepConfig of `run` or `estimate`: preset or file, then the command line; and its run directory."""
    from .config.presets import load_sweep_file, make_sweep_config
    from .results.environment import git_info

    overrides = {k: v for k, v in dict(
        models=args.models, tasks=args.tasks, methods=args.methods, ranks=args.ranks, seeds=args.seeds,
        batch_sizes=args.batch_sizes, seq_lens=args.seq_lens, device=args.device, dtype=args.dtype,
        data_dir=args.data_dir, threads=args.threads, assume_steps=getattr(args, "assume_steps", None),
        size_ladder=args.size_ladder).items()
        if v is not None}
    if getattr(args, "in_process", False):
        overrides["isolate"] = False
    if getattr(args, "malloc_mmap_threshold", None) is not None:
        overrides["malloc_mmap_threshold"] = args.malloc_mmap_threshold
    file_values = load_sweep_file(args.config) if args.config else {}
    # `run`'s executor flags (`estimate` has none), by ExecutorSettings field; --executor sets `kind`
    executor_flags = {("kind" if flag == "executor" else flag): getattr(args, flag) for flag in EXECUTOR_FLAGS
                      if getattr(args, flag, None) is not None}
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


def cmd_run(args, argv) -> int:
    from .run.sweep import run_sweep

    config, run_dir = sweep_config(args)
    rows = run_sweep(config, run_dir, ["run_bench.py", *argv], retry_failed=args.retry_failed)
    print(f"{len(rows)} points run; results in {os.path.join(run_dir, 'results.csv')}")
    if config.executor.get("no_wait"):
        return 0
    return finish_run(run_dir, args)


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


def cmd_collect(args, argv) -> int:
    from .run.sweep import collect

    rows = collect(args.run_dir)
    print(f"{len(rows)} rows collected into {os.path.join(args.run_dir, 'results.csv')}")
    return finish_run(args.run_dir, args) if rows else 0


def cmd_bisect(args, argv) -> int:
    from .track.bisect import bisect, format_bisect

    result = bisect(args.good, args.bad, args.metric, args.preset, args.config, args.repeats,
                    log=lambda line: print(line, file=sys.stderr))
    print(format_bisect(result))
    return 0 if result.first else 1


def add_ab_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE", help="the commit to compare against (e.g. main)")
    parser.add_argument("head", metavar="HEAD", help="the commit under test (e.g. HEAD)")
    sweep = parser.add_mutually_exclusive_group()
    sweep.add_argument("--preset", help="named sweep of timing-only points, as this checkout defines it (default ab)")
    sweep.add_argument("--config", metavar="FILE", help="sweep file (TOML), the same for both commits")
    parser.add_argument("--budget", type=float, default=10.0, metavar="MINUTES", help="stop after the round that "
                        "would pass this many minutes (default 10)")
    parser.add_argument("--max-rounds", type=int, metavar="N", help="stop after N rounds even when points are "
                        "undecided (default: the budget alone)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arms' order in each round (default 0)")
    parser.add_argument("--min-effect", default="5%", metavar="PERCENT", help="the smallest step-time change "
                        "that counts as slower or faster; same = inside +- it (default 5%%)")
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


def cmd_report(args, argv) -> int:
    from .report import build_report

    written = build_report(args.run_dirs, args.out)
    print("\n".join(written))
    return 0


def cmd_compare(args, argv) -> int:
    from .track.compare import compare_and_print

    return compare_and_print(args.baseline, args.current, args.threshold, across_loads=args.across_loads)


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


COMMANDS = {"run": cmd_run, "estimate": cmd_estimate, "collect": cmd_collect, "list": cmd_list, "report": cmd_report,
            "compare": cmd_compare, "history": cmd_history, "counts": cmd_counts,
            "bisect": cmd_bisect, "ab": cmd_ab}
