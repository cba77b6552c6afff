"""The CI guard of exact counts: the `counts` preset's FLOPs, tensor bytes and parameters, estimated (shapes only,
on CPU tensors: the same on any machine), equal reports/count_baseline.csv; a change fails with the command that
updates the baseline."""

from __future__ import annotations

import csv

import pytest

from bench.track.counts import BASELINE, EXACT, UPDATE, count_rows, diff_counts, failure_message, read_counts

pytestmark = pytest.mark.xdist_group("counts")  # one worker: the counts are traced once


@pytest.fixture(scope="module")
def counts() -> list[dict]:
    return count_rows()


def test_the_exact_counts_equal_the_checked_in_baseline(counts):
    differences = diff_counts(read_counts(), counts)
    assert not differences, failure_message(differences)
    assert len(counts) == 6 and all(row["flops_per_step"] and row["tensor_peak_bytes"] for row in counts)


def test_a_moved_count_fails_naming_the_point_its_size_and_the_command(counts, tmp_path):
    moved = [dict(row) for row in counts]
    moved[0]["flops_per_step"] = str(int(moved[0]["flops_per_step"]) + 1000)
    del moved[-1]
    differences = diff_counts(counts, moved)
    assert differences == [f"{counts[-1]['point']}: in the baseline, no longer in the `counts` preset",
                           f"{counts[0]['point']}: flops_per_step {counts[0]['flops_per_step']} -> "
                           f"{moved[0]['flops_per_step']} (+1,000, {1000 / int(counts[0]['flops_per_step']):+.2%})"]
    assert UPDATE in failure_message(differences)


def test_a_baseline_of_other_columns_is_refused_with_the_command(tmp_path):
    path = tmp_path / "count_baseline.csv"
    with open(BASELINE, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["point_id", "point", *EXACT[:-1]], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match=UPDATE):
        read_counts(str(path))
    with pytest.raises(FileNotFoundError, match=UPDATE):
        read_counts(str(tmp_path / "none.csv"))
