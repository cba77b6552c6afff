"""How busy the machine was while a point ran: the 1-minute load average at its start and end, the CPU time a
hypervisor stole from this machine, and the involuntary context switches of the point's own process.

    start = read_load(); ...the point...; columns = load_columns(start, read_load())

A timing taken while the load average is above the core count shares the cores with other work (the report
marks it, compare will not call it a regression against a quiet run: results/environment.py is_busy).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

STEAL_FIELD = 8  # /proc/stat "cpu user nice system idle iowait irq softirq steal ...": steal is the 8th number


@dataclass(frozen=True)
class LoadReading:
    load_avg_1m: float
    steal_s: float | None  # cumulative, all CPUs; None where the kernel does not report it
    ctx_switches_involuntary: int  # cumulative, this process


def read_load() -> LoadReading:
    return LoadReading(os.getloadavg()[0], read_steal_s(), psutil.Process().num_ctx_switches().involuntary)


def read_steal_s(path: str = "/proc/stat") -> float | None:
    """The CPU time stolen from this (virtual) machine since boot, all CPUs, in seconds; None where not reported."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) <= STEAL_FIELD:
        return None
    return int(fields[STEAL_FIELD]) / os.sysconf("SC_CLK_TCK")


def load_columns(start: LoadReading, end: LoadReading) -> dict:
    """The result columns of a point that ran between two readings."""
    stolen = None if start.steal_s is None or end.steal_s is None else round(end.steal_s - start.steal_s, 3)
    return {"load_avg_1m_start": round(start.load_avg_1m, 2), "load_avg_1m_end": round(end.load_avg_1m, 2),
            "cpu_steal_s": stolen, "ctx_switches_involuntary": end.ctx_switches_involuntary
            - start.ctx_switches_involuntary}
