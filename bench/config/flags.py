"""How a settings field is named on the command line. bench/cli.py makes a flag of every field of SweepConfig and of
the executors' settings that has a `help` in its metadata:

    threads: int = field(default=0, metadata={"help": "torch threads per point (0 = torch's default)"})

Other metadata keys: `flag` (the option string where it is not --FIELD-NAME), `metavar`, `choices`, and `command`
(the one subcommand that has the flag: run or estimate). A bool field's flag sets the opposite of its default. A
help's {tasks}, {dtypes} and {data_folders} are filled in by the CLI from the registries (cli.registry_names). An
executor setting whose metadata has `refused_elsewhere` (a reason) is an error with another executor.
"""

from __future__ import annotations

from dataclasses import Field


def flag_name(f: Field) -> str:
    """--batch-sizes for batch_sizes, unless the field names its own flag (isolate: --in-process)."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))
