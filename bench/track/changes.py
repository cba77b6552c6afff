"""Change points of every series of a history, per metric, and why each timing moved.

    detection = find_changes(read_history("reports/history.csv"), acknowledged=read_acknowledged(path))
    detection.changes        # every change point, drift included
    detection.regressions    # the unacknowledged ones that hold in the latest segment: `history regressions` exits 1

Observations. A series' runs are grouped by commit, in first-parent order: runs of one commit are pooled (a re-run
sharpens the commit), a run of a dirty tree stays on its own, and so do runs of another machine (the history's
`timed_on`: processor, device and torch threads).

Exact counts (FLOPs, tensor bytes, parameters, file bytes, operator-level counts): every difference between
consecutive observations is a change point, named with its size; more is a regression, less an improvement. The
operator-level counts (copies, allocations, syncs, operator calls) are not compared across a change of the torch
version that counted them (counts_torch): a change of counter, not of code, noted as such.

Noisy metrics (step time, init time, memory read as RSS, the task's score): an observation's value is the median
of its raw samples (every step time of every seed and run for step time; the rows' values otherwise), on a log
scale where the threshold is relative. The noise sigma is the largest MAD / sqrt(2) of the differences of runs 1 to
MIN_RUNS apart (runs that drift together make consecutive differences understate it). A run more than
OUTLIER_SIGMAS sigmas from both its nearest runs, on the same side, is an outlier: left out of the segmentation and
the trend, kept in the segments' medians. ruptures' KernelCPD (linear kernel: least squares, penalty
2 sigma^2 ln n) proposes change points at least MIN_RUNS observations apart, so a spike is not a change; a proposed
point stays only where Student's t-test between the segments on its two sides, its pooled deviation no less than
sigma, gives p < ALPHA, the least significant dropped first (E-Divisive's significance test, as Otava runs it). A
segment boundary is reported as a change point when both the whole segments and the MIN_RUNS observations on
either side differ by the minimum effect (MIN_EFFECT: 5% for step time, compare's thresholds and noise floors
otherwise), and the jump beyond either segment's trend does too: a segment trends where Spearman gives p < 0.01
and its Theil-Sen line moves by the minimum effect across it (ordered jitter far below it is no slope). Steps under
the minimum still split segments, and drift catches their sum: the latest segment is judged against the best
earlier segment since the last acknowledged commit of that series and metric, reported where the whole 99%
bootstrap interval of their ratio clears the minimum effect. An acknowledgement covers the exact changes at its
commit and the noisy ones placed less than MIN_RUNS commits from it (a noisy change point is located to within a
few commits).
Runs taken on a busy machine (meta.json load.busy: the 1-minute load average above the cores; a run without load
records counts as quiet) are left out of the noisy metrics: their timings are not faithful. Timings and memory
readings (is_machine_reading, and step_ms_per_gflop) are judged within the runs of one machine only: a series timed
on several is split into one fit per machine, and only the latest machine's can hold a current regression. A series
with fewer than 2 * MIN_RUNS quiet commits (on its latest machine, for those) is not judged on them, and says so;
where a change of machine left the latest one too few, its timings are "not comparable" (`history regressions`
exits 3 when nothing regressed). Exact counts and accuracy use every run.

Why a timing moved: a timing or memory change is *explained* when the exact count that predicts it
(`explained_by` in bench/columns.py: FLOPs for step time, init FLOPs for init time, tensor bytes for memory; and for
the timings the operator-level counts: copies, bytes copied, dtype conversions, allocations, synchronisations,
operator calls, kernel launches) moved at the same commit range, with the ratio the work predicts beside the ratio
observed and the operator-level counts' sizes ("+48 copies per step, +12.6 MiB copied per step"), and
*efficiency* when none moved. Step time per GFLOP of the step (step_ms_per_gflop) is judged as a series of its own, so a deliberate
change of shape is not read as a slowdown and a change beyond what the FLOPs predict is. An explained change does
not fail the verdict: its count change does (acknowledge the commit), and the per-GFLOP series judges the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import ruptures
from scipy import special, stats

from ..columns import BY_NAME, COMPARED, COUNTED_BY
from .acknowledged import Acknowledgement
from .rules import EXACT, MIN_EFFECT, Threshold, bootstrap_ratio_ci, judge, noise_floor, parse_times

MIN_RUNS = 3  # observations a segment needs: one or two odd runs are never a change
OUTLIER_SIGMAS = 4.0  # a run this many noise sigmas from both its neighbours is an outlier
ALPHA = 0.001  # a segment boundary stays when the t-test between its two sides gives p below this
PER_GFLOP = "step_ms_per_gflop"  # the derived series: step time per GFLOP of the step (time per unit of work)
NOISY = [c.name for c in COMPARED if c.compare != "exact" and c.history and c.name != "tokens_per_s"]  # 1/step time
TIMING = ("step_time_ms_p50", "init_total_s", PER_GFLOP)


@dataclass
class Observation:
    """The runs of one series at one commit (a dirty run on its own)."""

    commit: str
    position: int
    dirty: bool
    busy: bool  # every run of it was taken on a busy machine
    run_dirs: list[str]
    ended_at: str
    machine: str = ""  # the machine that timed its runs (history's timed_on)


@dataclass
class Segment:
    start: int  # observation indices [start, end) of the observations used (busy ones left out, or another
    # machine's, may lie between)
    end: int
    value: float  # median of its observations' values


@dataclass
class Change:
    series: str
    metric: str
    kind: str  # exact, explained, efficiency, accuracy or drift
    direction: str  # regression or improvement
    index: int  # the first observation after the change
    commit_before: str  # the change landed in (commit_before, commit_after]
    commit_after: str
    before: float
    after: float
    ci: tuple[float, float] | None = None  # 99% bootstrap interval of after / before (noisy metrics)
    predicted: float | None = None  # explained: the ratio the exact count predicts
    explanation: str = ""
    latest: bool = False  # it holds in the latest segment of its series and metric
    acknowledged: str = ""  # the reason, where acknowledged

    @property
    def ratio(self) -> float:
        return self.after / self.before if self.before else math.inf

    @property
    def counts(self) -> bool:
        """Fails the verdict when latest and unacknowledged: an explained change is judged by its count change."""
        return self.direction == "regression" and self.kind != "explained"

    @property
    def current_regression(self) -> bool:
        return self.latest and self.counts and not self.acknowledged


@dataclass
class MetricFit:
    values: np.ndarray  # per observation (NaN: none)
    used: np.ndarray  # bool per observation: in the fit (busy ones left out)
    segments: list[Segment]


@dataclass
class SeriesFit:
    name: str
    machine: str
    observations: list[Observation]
    metrics: dict[str, MetricFit] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    not_comparable: list[str] = field(default_factory=list)  # machine readings left unjudged by a change of machine

    @property
    def timed_on(self) -> list[str]:
        """The machines that timed the series, each once, in the order of their last commit: the latest last."""
        return list(dict.fromkeys(o.machine for o in reversed(self.observations)))[::-1]


@dataclass
class Detection:
    series: dict[str, SeriesFit]
    changes: list[Change]
    thresholds: dict[str, Threshold]
    warnings: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.current_regression]

    @property
    def not_comparable(self) -> dict[str, SeriesFit]:
        """The series whose latest machine has too few commits to judge its timings since the machine changed."""
        return {name: fit for name, fit in self.series.items() if fit.not_comparable}


def find_changes(history: pd.DataFrame, thresholds: dict[str, Threshold] | None = None,
                 acknowledged: list[Acknowledgement] = ()) -> Detection:
    """Every series of a history (read_history's frame), every exact and noisy metric it holds."""
    limits = {**MIN_EFFECT, **(thresholds or {})}
    limits[PER_GFLOP] = Threshold(PER_GFLOP, limits["step_time_ms_p50"].limit, relative=True)
    detection = Detection({}, [], limits)
    for name, rows in history.groupby("series", sort=True):
        fit, changes = fit_series(name, rows, limits, acknowledged)
        detection.series[name] = fit
        detection.changes += changes
        detection.warnings += [f"{name}: {note}" for note in fit.notes]
    return detection


def fit_series(name: str, rows: pd.DataFrame, limits: dict[str, Threshold],
               acknowledged: list[Acknowledgement]) -> tuple[SeriesFit, list[Change]]:
    rows = rows.assign(observation=rows["commit"] + np.where(rows["dirty"] == 1, "+" + rows["run_dir"], "") + " @"
                       + rows["timed_on"], quiet=rows["busy"] != 1).reset_index(drop=True)
    grouped = rows.groupby("observation", sort=False)
    info = grouped.agg(position=("commit_position", "min"), ended=("run_ended_at", "min"), commit=("commit", "first"),
                       dirty=("dirty", "first"), quiet=("quiet", "any"), machine=("timed_on", "first")
                       ).sort_values(["position", "ended"])
    order = info.index
    run_dirs = rows["run_dir"].to_numpy()
    observations = [Observation(o.commit, int(o.position), bool(o.dirty), not o.quiet,
                                sorted(set(run_dirs[grouped.indices[key]])), o.ended, o.machine)
                    for key, o in zip(order, info.itertuples())]
    fit = SeriesFit(name, rows["machine"].iloc[0], observations)

    def ack(change: Change) -> Change:
        for a in acknowledged:
            if a.matches(change.series, change.metric, change.commit_after) or (
                    change.kind != "exact" and any(abs(change.index - i) < MIN_RUNS for i in
                                                   ack_indices(a, name, change.metric, observations))):
                change.acknowledged = a.reason
        return change

    exact = {}
    firsts, distinct = grouped[EXACT].first().loc[order], grouped[EXACT].nunique().loc[order]
    counters = grouped[COUNTED_BY].first().loc[order].to_numpy()
    for metric in EXACT:
        values = firsts[metric].to_numpy(dtype=float)
        if np.isnan(values).all():
            continue
        for obs in np.flatnonzero(distinct[metric].to_numpy() > 1):
            fit.notes.append(f"{metric} takes {distinct[metric].iloc[obs]} values at commit "
                             f"{observations[obs].commit[:8]}: not deterministic")
        metric_changes = exact_changes(name, metric, values, observations,
                                       counters if BY_NAME[metric].torch_counted else None)
        fit.notes += [c.explanation for c in metric_changes if c.kind == "counter"]
        exact[metric] = [ack(c) for c in metric_changes if c.kind != "counter"]
        edges = [0, *(c.index for c in exact[metric]), len(values)]
        fit.metrics[metric] = MetricFit(values, ~np.isnan(values), [
            Segment(a, b, float(np.nanmedian(values[a:b]))) for a, b in zip(edges[:-1], edges[1:])])
    changes = [c for metric_changes in exact.values() for c in metric_changes]
    not_judged = []  # noisy metrics with too few quiet commits (timings of a busy machine are not faithful)
    raw = raw_step_times(rows)
    machines = np.array([o.machine for o in observations])
    quiet = ~np.array([o.busy for o in observations])  # busy runs are left out
    source = rows["peak_mem_source"].iloc[-1]
    for metric in NOISY + [PER_GFLOP]:
        if metric == "eval_accuracy" and (rows["eval_metric"] == "accuracy").all():
            continue  # the same number as eval_score: judged once, as that
        values = observation_values(rows, grouped, order, metric, raw)
        if np.isfinite(values).sum() < 2 * MIN_RUNS:
            continue
        floor = noise_floor(metric, {"peak_mem_source": source}, {"peak_mem_source": source}) \
            if metric in BY_NAME else 0.0
        # timings and memory readings: one fit per machine, the latest last; other metrics: one across machines
        groups = [machines == m for m in fit.timed_on] if machine_reading(metric) else [np.ones(len(machines), bool)]
        fit.metrics[metric] = MetricFit(values, np.zeros(len(values), bool), [])  # plotted, judged where used
        for same in groups:
            used = np.isfinite(values) & quiet & same
            if used.sum() < 2 * MIN_RUNS:
                if same[-1]:  # the latest machine's runs: its timings now are not judged
                    (fit.not_comparable if len(groups) > 1 else not_judged).append(metric)
                continue
            metric_changes = noisy_changes(name, metric, values, used, observations, limits[metric], floor, exact,
                                           acknowledged, fit)
            for change in metric_changes:
                change.latest = change.latest and bool(same[-1])  # another machine's runs hold nothing now
            changes += [ack(c) for c in metric_changes]
    if not_judged:
        fit.notes.append(f"fewer than {2 * MIN_RUNS} commits with quiet runs (the others ran on a busy machine): "
                         f"not judged: {', '.join(not_judged)}")
    if len(fit.timed_on) > 1:
        counts = ", ".join(f"{m} ({sum(o.machine == m for o in observations)} commits)" for m in fit.timed_on)
        fit.notes.append(f"timed on {len(fit.timed_on)} machines, timings and memory readings judged within each: "
                         f"{counts}" + (f"; too few commits on the latest to judge: {', '.join(fit.not_comparable)}"
                                        if fit.not_comparable else ""))
    return fit, changes


def machine_reading(metric: str) -> bool:
    """A metric the machine shapes (a timing or memory reading, or step time per GFLOP): judged within one machine."""
    return metric == PER_GFLOP or BY_NAME[metric].is_machine_reading


def ack_indices(a: Acknowledgement, series: str, metric: str, observations: list[Observation]) -> list[int]:
    """The observations of an acknowledged commit (for this series and metric). A noisy change point is placed to
    within a few commits, so an acknowledgement covers those less than MIN_RUNS commits from it."""
    if not a.matches(series, metric, a.commit):
        return []
    return [i for i, o in enumerate(observations) if o.commit.startswith(a.commit)]


def raw_step_times(rows: pd.DataFrame) -> list[np.ndarray]:
    """Every row's raw step times (its median alone where it has none)."""
    out = []
    for times, p50 in zip(rows["step_times_ms"], rows["step_time_ms_p50"]):
        values = parse_times(times) if times else np.array([])
        out.append(values if len(values) else np.array([p50], dtype=float))
    return out


def observation_values(rows: pd.DataFrame, grouped, order, metric: str, raw: list[np.ndarray]) -> np.ndarray:
    """A noisy metric per observation: the median of its raw samples (every step time of its rows, per GFLOP of the
    step for PER_GFLOP), or of its rows' values where there are no raw samples."""
    if metric not in ("step_time_ms_p50", PER_GFLOP):
        return grouped[metric].median().loc[order].to_numpy(dtype=float)
    gflops = rows["flops_per_step"].to_numpy(dtype=float) / 1e9
    values = []
    for key in order:
        samples = [raw[i] / gflops[i] if metric == PER_GFLOP else raw[i] for i in grouped.indices[key]]
        pooled = np.concatenate(samples) if samples else np.array([])
        pooled = pooled[np.isfinite(pooled)]
        values.append(np.median(pooled) if len(pooled) else np.nan)
    return np.array(values, dtype=float)


def exact_changes(series: str, metric: str, values: np.ndarray, observations: list[Observation],
                  counters: np.ndarray | None = None) -> list[Change]:
    """Every difference between consecutive observations; counters (the torch version that counted each, for an
    operator-level count): a difference across two versions is of kind "counter", not a change of the code."""
    unit = BY_NAME[metric].unit
    known = np.flatnonzero(np.isfinite(values))
    changes = []
    for prev, cur in zip(known[:-1], known[1:]):
        old, new = values[prev], values[cur]
        if counters is not None and counters[prev] != counters[cur]:
            if old != new:
                changes.append(Change(series, metric, "counter", "", int(cur), observations[prev].commit,
                                      observations[cur].commit, old, new, explanation=(
                                          f"{metric} counted by torch {counters[prev] or '?'} at "
                                          f"{observations[prev].commit[:8]} vs {counters[cur] or '?'} at "
                                          f"{observations[cur].commit[:8]}: not compared")))
        elif old != new:
            pct = f", {new / old - 1:+.2%}" if old else ""
            changes.append(Change(series, metric, "exact", "regression" if new > old else "improvement", int(cur),
                                  observations[prev].commit, observations[cur].commit, old, new,
                                  explanation=f"{metric} {old:,.0f} -> {new:,.0f} ({new - old:+,.0f} {unit}{pct})"))
    code = [c for c in changes if c.kind == "exact"]
    if code:
        code[-1].latest = True
    return changes


def noisy_changes(series: str, metric: str, values: np.ndarray, used: np.ndarray, observations: list[Observation],
                  limit: Threshold, floor: float, exact: dict[str, list[Change]], acknowledged, fit: SeriesFit
                  ) -> list[Change]:
    index = np.flatnonzero(used)  # observation index of each value in the fit
    x = values[index]
    scaled = scale(x, limit)
    bounds, steps = find_steps(metric, x, limit, floor)
    starts, ends = [s for s, _ in bounds], [e for _, e in bounds]
    segments = [Segment(int(index[s]), int(index[e - 1]) + 1, float(np.median(x[s:e]))) for s, e in bounds]
    fit.metrics[metric].used |= used
    fit.metrics[metric].segments += segments
    better = "lower" if metric not in BY_NAME else BY_NAME[metric].better
    changes = []
    for i, verdict in steps:
        (s0, e0), (s1, e1) = bounds[i - 1], bounds[i]
        first, last_before = int(index[s1]), int(index[e0 - 1])
        change = Change(series, metric, "", "regression" if verdict == "worse" else "improvement", first,
                        observations[last_before].commit, observations[first].commit, float(np.median(x[s0:e0])),
                        float(np.median(x[s1:e1])), ci=bootstrap_ratio_ci(x[s0:e0], x[s1:e1]))
        classify(change, exact, last_before, first)
        change.latest = s1 == starts[-1]
        changes.append(change)
    drift = judge_drift(series, metric, x, scaled, index, starts, ends, observations, limit, floor, better, exact,
                        changes, acknowledged)
    return changes + ([drift] if drift else [])


def find_steps(metric: str, x: np.ndarray, limit: Threshold, floor: float = 0.0
               ) -> tuple[list[tuple[int, int]], list[tuple[int, str]]]:
    """A bare sequence's segments, (start, end) each, and its steps: (the segment after the step, 'worse' or
    'better'). A boundary is a step when both whole segments and the MIN_RUNS observations either side of it differ
    by the minimum effect, and neither segment is a slope (trending)."""
    better = "lower" if metric not in BY_NAME else BY_NAME[metric].better
    scaled = scale(x, limit)
    sigma = noise_sigma(scaled)
    kept = ~outliers(scaled, sigma)
    ends = segment(scaled, sigma, kept)
    bounds = list(zip([0, *ends[:-1]], ends))
    least = min_change(x, limit)
    steps = []
    for i, ((s0, e0), (s1, e1)) in enumerate(zip(bounds, bounds[1:]), start=1):
        before, after = float(np.median(x[s0:e0])), float(np.median(x[s1:e1]))
        local = (float(np.median(x[max(s0, e0 - MIN_RUNS):e0])), float(np.median(x[s1:min(e1, s1 + MIN_RUNS)])))
        verdict = judge(metric, before, after, better, limit, None, floor)[0]
        if verdict == "same" or judge(metric, *local, better, limit, None, floor)[0] != verdict:
            continue
        left, right = scaled[s0:e0][kept[s0:e0]], scaled[s1:e1][kept[s1:e1]]
        jump = level(right, least, 0) - level(left, least, len(left))  # both at the first run after it
        if jump * (after - before) <= 0 or abs(jump) < least:
            continue  # a slope, not a step: drift judges it
        steps.append((i, verdict))
    return bounds, steps


def scale(x: np.ndarray, limit: Threshold) -> np.ndarray:
    """The scale change points are sought on: log where the threshold is relative (and every value positive)."""
    return np.log(x) if limit.relative and (x > 0).all() else x


def min_change(x: np.ndarray, limit: Threshold) -> float:
    """The minimum effect on scale(x)'s scale."""
    if not limit.relative:
        return limit.limit
    return math.log1p(limit.limit) if (x > 0).all() else limit.limit * float(np.median(np.abs(x)))


def segment(x: np.ndarray, sigma: float, kept: np.ndarray) -> list[int]:
    """Segment ends (exclusive; the last is len(x)) of a sequence with noise sigma: KernelCPD's proposal, pruned by
    the t-test, on the runs kept (outliers left out: they stay in the segments whose ends they lie within)."""
    n = len(x)
    kept = np.flatnonzero(kept)
    y = x[kept]
    if len(y) < 2 * MIN_RUNS:
        return [n]
    ends = [int(b) for b in ruptures.KernelCPD(kernel="linear", min_size=MIN_RUNS).fit(y).predict(
        pen=2 * sigma**2 * math.log(len(y)))]
    edges = [0, *ends]  # segment i is y[edges[i]:edges[i + 1]]
    pvalues = [t_test(y[edges[i]:edges[i + 1]], y[edges[i + 1]:edges[i + 2]], sigma) for i in range(len(edges) - 2)]
    while pvalues and max(pvalues) >= ALPHA:
        worst = int(np.argmax(pvalues))  # boundary edges[worst + 1] goes: its two segments merge
        del edges[worst + 1], pvalues[worst]
        for i in (worst - 1, worst):  # the boundaries either side of the merged segment
            if 0 <= i < len(pvalues):
                pvalues[i] = t_test(y[edges[i]:edges[i + 1]], y[edges[i + 1]:edges[i + 2]], sigma)
    return [int(kept[e]) if e < len(y) else n for e in edges[1:]]  # a segment ends where the next kept run starts


def noise_sigma(x: np.ndarray) -> float:
    """Run-to-run noise of a sequence, robustly: the largest MAD / sqrt(2) of its lag-k differences, k = 1 ..
    MIN_RUNS. Neighbouring runs that drift together make lag-1 differences understate the noise; a step or an
    outlier moves only a few differences, not their median."""
    sigmas = []
    for k in range(1, min(MIN_RUNS, len(x) - 1) + 1):
        steps = x[k:] - x[:-k]
        sigmas.append(1.4826 * np.median(np.abs(steps - np.median(steps))) / math.sqrt(2))
    return max(*sigmas, 1e-4 * float(np.median(np.abs(x))), 1e-12)


def outliers(x: np.ndarray, sigma: float) -> np.ndarray:
    """Runs farther than OUTLIER_SIGMAS noise sigmas from both their nearest runs, on the same side (one odd run,
    not the start of a step): left out of the segmentation, kept in the segments' medians."""
    n = len(x)
    odd = np.zeros(n, dtype=bool)
    for i in range(n):
        near = sorted(range(max(0, i - 2), min(n, i + 3)), key=lambda j: abs(j - i))[1:3]  # an end run: its side
        gaps = x[i] - x[near]
        odd[i] = len(near) == 2 and (np.abs(gaps) > OUTLIER_SIGMAS * sigma).all() and gaps[0] * gaps[1] > 0
    return odd


def level(x: np.ndarray, least: float, at: int) -> float:
    """A segment's level at its run `at`: its Theil-Sen line where it is trending, else its median."""
    if trending(x, least):
        slope, intercept = stats.theilslopes(x)[:2]
        return float(intercept + slope * at)
    return float(np.median(x))


def trending(x: np.ndarray, least: float) -> bool:
    """A segment that keeps rising or falling (Spearman's rank correlation with its order, p < 0.01) by at least the
    minimum effect over its length (Theil-Sen slope): what a run of small steps leaves where a single step leaves
    two flat segments; jitter far below the minimum effect is no slope, however ordered."""
    if len(x) < 2 * MIN_RUNS or np.ptp(x) == 0:
        return False
    if stats.spearmanr(np.arange(len(x)), x).pvalue >= 0.01:
        return False
    return abs(stats.theilslopes(x).slope) * (len(x) - 1) >= least


def t_test(a: np.ndarray, b: np.ndarray, sigma: float = 0.0) -> float:
    """Student's two-sample t-test p-value (two-sided, pooled variance: scipy.stats.ttest_ind's, computed here
    because the search calls it thousands of times); two constant samples: 0 when they differ, else 1. sigma: the
    least standard deviation the pooled one may take (the sequence's noise: segments fitted to runs that drift
    together leave less spread within them than the runs have)."""
    na, nb = len(a), len(b)
    pooled = max((((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / (na + nb - 2), sigma**2)
    if pooled == 0:
        return 0.0 if a[0] != b[0] else 1.0
    t = (a.mean() - b.mean()) / math.sqrt(pooled * (1 / na + 1 / nb))
    return float(2 * special.stdtr(na + nb - 2, -abs(t)))


def classify(change: Change, exact: dict[str, list[Change]], last_before: int, first: int) -> None:
    """explained (the metric's predicting count moved in the same commit range) or efficiency; accuracy apart."""
    moved = [c for cs in exact.values() for c in cs if last_before < c.index <= first]
    counts = ", ".join(sorted({c.metric for c in moved}))
    if change.metric not in TIMING + ("peak_mem_bytes", "init_peak_mem_bytes"):
        change.kind = "accuracy"
        change.explanation = f"counts moved at the same commits: {counts}" if moved else ""
        return
    change.kind, change.predicted, change.explanation = explain(change.metric, change.before, change.ratio,
                                                                [(c.metric, c.before, c.after) for c in moved])


def explainers(metric: str) -> tuple[str, ...]:
    """The counts that explain a metric's change (bench/columns.py explained_by); step time per GFLOP: the step
    time's less the FLOPs it is divided by."""
    if metric == PER_GFLOP:
        return tuple(c for c in BY_NAME["step_time_ms_p50"].explained_by if c != "flops_per_step")
    return BY_NAME[metric].explained_by if metric in BY_NAME else ()


def count_change(count: str, old: float, new: float) -> str:
    """An operator-level count's change as an explanation says it: '+48 copies per step', '+12.6 MiB copied per
    step', '+32 synchronisations in the init'."""
    col = BY_NAME[count]
    amount = f"{new - old:+,.0f}" if col.unit == "count" else ("+" if new >= old else "-") + col.format(abs(new - old))
    return f"{amount} {col.noun} {'in the init' if count.startswith('init_') else 'per step'}"


def explain(metric: str, before: float, ratio: float, moved: list[tuple[str, float, float]]
            ) -> tuple[str, float | None, str]:
    """Why a timing or memory metric moved by `ratio` from `before`, given the exact counts that moved at the same
    commits ((count, old, new)): ("explained", the ratio its predicting count gives or None, why) when one of its
    explainers moved, else ("efficiency", None, why). The first explainer predicts the size (FLOPs: time in
    proportion; tensor bytes: memory by the bytes added); the operator-level ones say what moved, with sizes."""
    causes = explainers(metric)
    work = causes[0] if causes else ""
    named = [(count, old, new) for count, old, new in moved if count in causes]
    if not named:
        per_work = " per GFLOP of the step" if metric == PER_GFLOP else ""
        counts = ", ".join(sorted({count for count, _, _ in moved}))
        return "efficiency", None, (f"no count moved{per_work}" if not moved else
                                    f"{counts} moved{per_work}, not {work or 'the work'}")
    predicting = [(old, new) for count, old, new in named if count == work and not BY_NAME[count].torch_counted]
    predicted, why = None, []
    if predicting:
        if BY_NAME[work].unit == "bytes":  # memory grows by the bytes added, not in proportion
            predicted = (before + sum(new - old for old, new in predicting)) / before
        else:  # time in proportion to the work
            predicted = math.prod(new / old if old else math.inf for old, new in predicting)
        why.append(f"{work} moved: it predicts {predicted - 1:+.1%}")
    why += [count_change(count, old, new) for count, old, new in sorted(named, key=lambda m: causes.index(m[0]))
            if BY_NAME[count].torch_counted]
    return "explained", predicted, f"{', '.join(why)}, observed {ratio - 1:+.1%}"


def judge_drift(series, metric, x, scaled, index, starts, ends, observations, limit, floor, better, exact, changes,
                acknowledged) -> Change | None:
    """The latest segment against the best earlier one since the last acknowledged change of this metric."""
    if len(starts) < 2:
        return None
    baseline_start = max((i for a in acknowledged for i in ack_indices(a, series, metric, observations)), default=0)
    earlier = [(s, e) for s, e in zip(starts[:-1], ends[:-1]) if index[s] >= baseline_start]
    if not earlier:
        return None
    sign = 1 if better == "lower" else -1
    best_s, best_e = min(earlier, key=lambda se: sign * np.median(x[se[0]:se[1]]))
    s1, e1 = starts[-1], ends[-1]
    before, after = float(np.median(x[best_s:best_e])), float(np.median(x[s1:e1]))
    ci = bootstrap_ratio_ci(x[best_s:best_e], x[s1:e1])
    if judge(metric, before, after, better, limit, ci, floor)[0] != "worse" or t_test(
            scaled[best_s:best_e], scaled[s1:e1], noise_sigma(scaled)) >= ALPHA:
        return None  # the two segments it joins differ by less than the minimum effect (the whole 99% interval)
    if any(c.latest and c.direction == "regression" and c.index == int(index[s1]) and
           int(index[best_e - 1]) < c.index and best_e == s1 for c in changes):
        return None  # one reported step from the best segment: already a change point
    first, last_before = int(index[s1]), int(index[best_e - 1])
    drift = Change(series, metric, "drift", "regression", first, observations[last_before].commit,
                   observations[first].commit, before, after, ci=ci, latest=True)
    steps = len([s for s in starts if best_e <= s <= s1])
    drift.explanation = (f"{steps} segment(s) since the best, at {observations[int(index[best_s])].commit[:8]}"
                         f"..{observations[last_before].commit[:8]}")
    moved = sorted({c.metric for cs in exact.values() for c in cs if last_before < c.index <= first})
    if moved:
        drift.explanation += f"; counts moved meanwhile: {', '.join(moved)}"
    return drift
