"""Write docs/cli.md, the command-line reference, from the parser `run_bench.py` itself uses (bench.cli.build_parser).

    python docs/gen_cli.py           # rewrite docs/cli.md
    python docs/gen_cli.py --check   # exit 1 when docs/cli.md differs from what the parser gives now

tests/test_docs.py fails when the file and the parser disagree, so a new flag or a changed help needs this run.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH = 110  # usage lines wrap here
CLI_PAGE = os.path.join(ROOT, "docs", "cli.md")
HEADER = """# Command-line reference

Generated from `run_bench.py`'s own parser by `docs/gen_cli.py`; do not edit by hand. `giva-bench` (the console
script `pip install` makes) takes the same arguments. With no subcommand, `run_bench.py` runs `run --preset quick`.
Bad input is one line on stderr and exit 2, before anything runs.
"""


def cell(text: str) -> str:
    """Text made safe for one cell of a Markdown table."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def argument_name(action: argparse.Action) -> str:
    if action.option_strings:
        flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
        if action.nargs == 0:
            return flags
        value = action.metavar or (("{" + ",".join(map(str, action.choices)) + "}") if action.choices
                                   else action.dest.upper())
        shown = {None: value, "?": f"[{value}]", "*": f"[{value} ...]", "+": f"{value} ..."}.get(action.nargs, value)
        return f"{flags} `{shown}`"
    return f"`{action.metavar or action.dest}`" + (" ..." if action.nargs in ("+", "*") else "")


def usage(parser: argparse.ArgumentParser) -> str:
    """The parser's usage line, wrapped at a fixed width (not the terminal's), so the page does not depend on it."""
    formatter = argparse.HelpFormatter(parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def argument_table(parser: argparse.ArgumentParser) -> list[str]:
    """One table per argument group (its title and description above it), the help option left out."""
    formatter = argparse.HelpFormatter(parser.prog, width=WIDTH)
    lines = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        if group.title not in ("positional arguments", "options"):
            lines += [f"**{group.title}**" + (f": {cell(group.description)}" if group.description else ""), ""]
        lines += ["| argument | meaning |", "|---|---|"]
        lines += [f"| {argument_name(a)} | {cell(formatter._expand_help(a) if a.help else '')} |" for a in actions]
        lines.append("")
    return lines


def cli_reference() -> str:
    """docs/cli.md's text, from the parser as it is now."""
    sys.path.insert(0, ROOT)
    from bench.cli import COMMANDS, build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = [HEADER, "| command | what it does |", "|---|---|"]
    lines += [f"| [`{name}`](#{name}) | {cell(COMMANDS[name].help)} |" for name in commands.choices]
    lines.append("")
    for name, sub in commands.choices.items():
        lines += [f"## {name}", "", cell(COMMANDS[name].help).rstrip(".") + ".", "",
                  f"```text\n{usage(sub)}\n```", ""]
        lines += argument_table(sub)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    check = "--check" in sys.argv[1:]
    text = cli_reference()
    if check:
        with open(CLI_PAGE) as f:
            if f.read() != text:
                print(f"{CLI_PAGE} differs from the parser: run python docs/gen_cli.py", file=sys.stderr)
                return 1
        return 0
    with open(CLI_PAGE, "w") as f:
        f.write(text)
    print(f"wrote {CLI_PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
