"""The history page (`run_bench.py history --html DIR`) in a real headless browser: Debian's chromium loads it from
disk with no console message, and shows the regressions table and one plot per metric. `make test-all` installs
chromium; where it cannot be installed the tests skip with that reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from test_history import TARGET_RUN, run_dirs
from waiting import HANG_GUARD_S

from bench.cli import main
from bench.track.changes import find_changes
from bench.track.history import read_history
from bench.track.page import page_metrics

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium to load the page (apt-get install -y chromium)")]


def load_in_browser(path: str, profile: str) -> tuple[str, list[str]]:
    """The DOM after the page loaded, and every console message the browser logged while loading it."""
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--user-data-dir={profile}", "--dump-dom", f"file://{os.path.abspath(path)}"],
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[str, str]:
    """The page of twelve real runs around the commit that adds lm_head to the targets (exact FLOPs changes)."""
    tmp = tmp_path_factory.mktemp("page")
    history, site = str(tmp / "history.csv"), str(tmp / "site")
    code = main(["history", "regressions", "--append", *run_dirs(range(TARGET_RUN - 6, TARGET_RUN + 6)),
                 "--file", history, "--html", site, "--acknowledged", str(tmp / "none.toml")])
    assert code == 1  # the FLOPs changes are unacknowledged regressions of the latest segment
    return history, os.path.join(site, "index.html")


def test_the_page_loads_with_no_console_message_and_shows_the_table_and_a_plot_per_metric(page, tmp_path):
    history, index = page
    dom, console = load_in_browser(index, str(tmp_path / "profile"))
    assert console == []
    detection = find_changes(read_history(history))
    metrics = page_metrics(detection)
    assert "flops_per_step" in metrics and "step_time_ms_p50" in metrics
    assert re.findall(r'<svg class="plot" data-metric="(\w+)"', dom) == metrics
    tables = re.findall(r'<table class="changes">(.*?)</table>', dom, re.S)
    assert len(tables) == 2 and dom.index("<h2>Regressions</h2>") < dom.index('<svg class="plot"')
    regressions = re.findall(r'<tr class="now">', tables[0])
    assert len(regressions) == len(detection.regressions) > 0
    assert "flops_per_step" in tables[0] and "exact regression" in tables[0]
    links = re.findall(r'<a href="([^"]+)">', dom)
    assert links and all(link.endswith("summary.md") and not link.startswith("/") for link in links)
    with open(index, encoding="utf-8") as f:
        text = f.read()
    assert not re.search(r"<script|<link|src=|https?://(?!www\.w3\.org/2000/svg)", text)  # self-contained


def test_the_browser_check_sees_a_console_error(page, tmp_path):
    """The check above can fail: the same page with a script error is caught."""
    broken = tmp_path / "broken.html"
    with open(page[1], encoding="utf-8") as f:
        broken.write_text(f.read().replace("</body>", "<script>undefined_function()</script></body>"))
    _, console = load_in_browser(str(broken), str(tmp_path / "profile"))
    assert any("undefined_function" in line for line in console)
