"""run_bench.py: run sweeps, list what can be run, report, compare runs, track history."""

from __future__ import annotations

import argparse
import os
import sys

from .config.executor import KINDS

DEFAULT_PRESET = "quick"
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
                        "stsb, csv, ...; `list tasks` names them all)")
    parser.add_argument("--methods", type=_csv_list(str), help="comma-separated: lora,vera,giva and PEFT's as "
                        "peft:<name> (see `list methods`)")
    parser.add_argument("--ranks", type=_csv_list(int), help="comma-separated ranks (a method's own ranks win)")
    parser.add_argument("--seeds", type=_csv_list(int))
    parser.add_argument("--batch-sizes", type=_csv_list(int))
    parser.add_argument("--seq-lens", type=_csv_list(int))
    parser.add_argument("--device", help="auto, cpu or cuda[:N]")
    parser.add_argument("--dtype", help="float32, bfloat16 or float16")
    parser.add_argument("--data-dir", help="folder with sst2/, trec/, emotion/, agnews/, mrpc/, stsb/ (e.g. "
                        "../shared/data); empty: the datasets by name from the Hugging Face hub")
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

    lister = sub.add_parser("list", help="list models, tasks, presets and methods")
    lister.add_argument("what", nargs="?", choices=["models", "tasks", "presets", "methods"], help="default: all")

    report = sub.add_parser("report", help="plots and summary.md from results.csv and meta.json")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", help="output folder (needed for several run directories)")

    compare = sub.add_parser("compare", help="compare two runs; exit 1 on a regression")
    compare.add_argument("baseline", help="baseline run directory or results.csv")
    compare.add_argument("current", help="current run directory or results.csv")
    compare.add_argument("--threshold", action="append", default=[], metavar="METRIC:LIMIT",
                         help="e.g. step_time_ms_p50:10%%, peak_mem_bytes:5%%, eval_accuracy:1pt (repeatable)")

    history = sub.add_parser("history", help="append runs to a history file and plot metrics over commits")
    history.add_argument("--append", nargs="*", default=[], metavar="RUN_DIR", help="runs to add first")
    history.add_argument("--file", default=os.path.join(REPORTS_DIR, "history.csv"))
    history.add_argument("--metrics", type=_csv_list(str), default=["step_time_ms_p50", "init_total_s", "peak_mem_bytes",
                                                                     "flops_per_step", "tensor_peak_bytes"])
    history.add_argument("--out", default=os.path.join(REPORTS_DIR, "history"), help="folder for the plots")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv or ["run"])
    try:
        return COMMANDS[args.command](args, argv)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
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
        data_dir=args.data_dir, threads=args.threads, assume_steps=getattr(args, "assume_steps", None)).items()
        if v is not None}
    if getattr(args, "in_process", False):
        overrides["isolate"] = False
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
    if args.steps is not None:
        base = make_sweep_config(preset, file_values)
        overrides["train"] = {**base.train, "steps": args.steps}
    config = make_sweep_config(preset, file_values, overrides)
    name = (preset or os.path.splitext(os.path.basename(args.config))[0]) + ("-estimate" if args.command == "estimate" else "")
    if args.out is not None and not args.out.strip():
        raise ValueError("--out is empty; give a run directory, or leave --out out for reports/runs/NAME-COMMIT")
    run_dir = args.out or os.path.join(REPORTS_DIR, "runs", f"{name}-{(git_info()['commit'] or 'nogit')[:7]}")
    return config, run_dir


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
        from .report.history import append_history

        print(f"history: {append_history(run_dir, args.history)} rows added to {args.history}")


def cmd_collect(args, argv) -> int:
    from .run.sweep import collect

    rows = collect(args.run_dir)
    print(f"{len(rows)} rows collected into {os.path.join(args.run_dir, 'results.csv')}")
    return finish_run(args.run_dir, args) if rows else 0


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
            config = make_sweep_config(name)
            ranks = "; ".join(describe_axes(config, m) for m in config.methods)
            print(f"  {name:15s} models={','.join(config.models)} tasks={','.join(config.tasks)} {ranks}")
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
    from .report.compare import compare_runs, format_comparison, parse_thresholds

    comparison = compare_runs(args.baseline, args.current, parse_thresholds(args.threshold))
    print(format_comparison(comparison))
    return 1 if comparison.regressions else 0


def cmd_history(args, argv) -> int:
    from .report.history import append_history, plot_history

    for run_dir in args.append:
        print(f"{append_history(run_dir, args.file)} rows added from {run_dir}")
    print("\n".join(plot_history(args.file, args.metrics, args.out)))
    return 0


COMMANDS = {"run": cmd_run, "estimate": cmd_estimate, "collect": cmd_collect, "list": cmd_list, "report": cmd_report,
            "compare": cmd_compare, "history": cmd_history}
