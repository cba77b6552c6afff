"""The command line is made from the config: every SweepConfig and executor Settings field has a flag and every flag
a field (but the few listed here, each with its reason), --help names what the registries hold, and a preset is a
sweep file that --config reads the same way."""

from __future__ import annotations

import os
from dataclasses import fields

import pytest

from bench.cli import COMMANDS, build_parser, sweep_config
from bench.columns import HISTORY_METRICS
from bench.config.presets import PRESETS, PRESETS_DIR, load_sweep_file, make_sweep_config
from bench.config.sweep import SweepConfig
from bench.run.executors import EXECUTORS
from bench.tasks import TASK_NAMES

# SweepConfig fields without a flag: tables, set in a preset or sweep file
TABLE_FIELDS = {"method_options": "per-method options, a table per method",
                "task_options": "a table of TaskOptions",
                "train": "a table of TrainSettings; --steps sets its steps",
                "executor": "a table; --executor sets its kind, the executor flags its other keys"}
# Flags of run or estimate that set no field of SweepConfig or of an executor's Settings
COMMAND_FLAGS = {"help": "argparse's", "preset": "which sweep", "config": "which sweep", "out": "the run directory",
                 "steps": "train.steps", "no_report": "what happens after the run",
                 "retry_failed": "which points run", "history": "what happens after the run",
                 "kind": "the [executor] table's kind: --executor"}


def command_parser(name: str):
    return build_parser(only=name)._subparsers._group_actions[0].choices[name]


def flags(name: str) -> dict[str, str]:
    """{dest: option string} of a command's flags."""
    return {action.dest: action.option_strings[0] for action in command_parser(name)._actions if action.option_strings}


def test_every_sweep_field_has_a_flag_and_every_flag_a_field():
    executor_fields = {f.name for executor in EXECUTORS.values() for f in fields(executor.Settings)}
    sweep_fields = {f.name for f in fields(SweepConfig)}
    flagged = set(flags("run")) | set(flags("estimate"))
    assert sweep_fields - flagged == set(TABLE_FIELDS)
    assert flagged - sweep_fields - executor_fields == set(COMMAND_FLAGS)
    assert {"isolate", "malloc_mmap_threshold"} <= set(flags("run")) - set(flags("estimate"))
    assert "assume_steps" in set(flags("estimate")) - set(flags("run"))
    assert flags("run")["isolate"] == "--in-process" and flags("run")["kind"] == "--executor"


def test_every_executor_setting_has_a_flag_of_its_name():
    run = flags("run")
    for name, executor in EXECUTORS.items():
        for f in fields(executor.Settings):
            assert run.get(f.name) == "--" + f.name.replace("_", "-"), (name, f.name)


def helps(name: str) -> dict[str, str]:
    """{dest: help} of a command's arguments."""
    return {action.dest: action.help for action in command_parser(name)._actions}


def test_help_names_every_task_executor_preset_and_history_metric():
    run, history = helps("run"), helps("history")
    assert all(f" {task}," in run["tasks"] or run["tasks"].endswith(f" {task}") for task in TASK_NAMES)
    assert [part.split()[0].rstrip(":") for part in run["kind"].split("; ")] == list(EXECUTORS)
    assert all(executor.summary in run["kind"] for executor in EXECUTORS.values())
    assert all(f" {preset}," in run["preset"] or f" {preset} (" in run["preset"] for preset in PRESETS)
    assert all(f" {metric}," in history["metrics"] or f" {metric} (" in history["metrics"]
               for metric in HISTORY_METRICS)


def test_the_parser_holds_every_command_once():
    listed = build_parser()._subparsers._group_actions[0].choices
    assert list(listed) == list(COMMANDS)


def test_flags_become_the_config_s_values(capsys):
    args = command_parser("run").parse_args(
        ["--preset", "profile-quick", "--in-process", "--steps", "5", "--ranks", "2", "--size-ladder", "",
         "--executor", "pool", "--workers", "2", "--allow-shared-timing", "--timed-steps", "4"])
    args.command = "run"
    config, _ = sweep_config(args)
    assert config.isolate is False and config.train == {"steps": 5} and config.ranks == [2]
    assert config.size_ladder == [] and config.timed_steps == 4
    assert config.executor == {"kind": "pool", "workers": 2, "allow_shared_timing": True}
    assert "sweep: models=llama-2m,llama-12m" in capsys.readouterr().out


def test_no_wait_with_another_executor_says_it_needs_slurm():
    from bench.run.executors import executor_settings

    with pytest.raises(ValueError, match=r"--no-wait needs --executor slurm \(the other executors run with the driver\)"):
        executor_settings({"kind": "pool", "no_wait": True})
    kind, settings = executor_settings({"kind": "pool", "workers": 3, "slurm_partition": "gpu"})
    assert kind == "pool" and settings == EXECUTORS["pool"].Settings(workers=3)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_is_a_sweep_file_that_config_reads_alike(preset):
    path = os.path.join(PRESETS_DIR, f"{preset}.toml")
    assert make_sweep_config(None, load_sweep_file(path)) == make_sweep_config(preset)
