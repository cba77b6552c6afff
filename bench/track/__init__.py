"""Regression tracking: is the code slower, bigger or less accurate than it was?

    rules.py         the one statistical rule: thresholds, minimum effects, the bootstrap interval, judge()
    compare.py       two runs, point by point (`run_bench.py compare`)
    machine.py       the machine that timed a run (processor, device, threads): timings are judged within one
    history.py       the history store over commits: appended from run folders, read back typed
    changes.py       change points of every series of a history (numerics only, no I/O)
    acknowledged.py  intended changes, which do not fail the verdict
    verdict.py       `history regressions`: the table, JSON and exit code
    page.py          what a history shows people: its plots and its HTML page
    bisect.py        the first commit where a metric changed, in temporary worktrees
    ab.py            the PR gate: two commits in paired short processes, decided adaptively
    worktrees.py     commits checked out in temporary worktrees, each running its own run_bench.py
    counts.py        the exact counts of the `counts` preset against their checked-in baseline

Reads results.csv, meta.json and the history file; only counts.py (it traces), bisect.py and ab.py (they run
commits, through worktrees.py) go further.
"""
