"""The documentation: the site builds in strict mode (a broken link, a missing page or anchor fails), the CLI
reference is what docs/gen_cli.py makes from the parser now, and the README stays short with every link resolving."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
from cli_runs import REPO

README = os.path.join(REPO, "README.md")
README_MAX_LINES = 250


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_cli", os.path.join(REPO, "docs", "gen_cli.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_in_strict_mode(tmp_path):
    mkdocs = shutil.which("mkdocs", path=os.path.dirname(sys.executable)) or shutil.which("mkdocs")
    if mkdocs is None or importlib.util.find_spec("material") is None:
        pytest.skip('mkdocs and mkdocs-material are not installed: pip install -e ".[docs]" (make install has them)')
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "cli" / "index.html").exists() and (tmp_path / "site" / "img").is_dir()


def test_the_cli_reference_is_the_parsers():
    with open(os.path.join(REPO, "docs", "cli.md")) as f:
        assert f.read() == load_generator().cli_reference(), "docs/cli.md is out of date: run python docs/gen_cli.py"


def test_the_cli_reference_names_every_command_and_flag():
    from bench.cli import build_parser

    page = load_generator().cli_reference()
    commands = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    for name, parser in commands.choices.items():
        assert f"\n## {name}\n" in page
        for action in parser._actions:
            for flag in [] if action.dest == "help" else action.option_strings:
                assert f"`{flag}`" in page, flag


def test_the_readme_is_short_and_its_links_resolve():
    with open(README) as f:
        text = f.read()
    assert len(text.splitlines()) <= README_MAX_LINES
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert relative, "the README links no file"
    missing = [t for t in relative if not os.path.exists(os.path.join(REPO, t))]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_checked_in_files_record_no_machine_paths():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    pattern = re.compile(r"(?<![\w.$])/(tmp|work|root|home)/")
    found = []
    for name in files:
        path = os.path.join(REPO, name)
        if name in (".gitignore", "tests/test_docs.py") or not os.path.isfile(path):
            continue
        with open(path, errors="ignore") as f:
            found += [f"{name}:{i}" for i, line in enumerate(f, 1) if pattern.search(line)]
    assert not found, f"absolute machine paths in checked-in files: {found}"
