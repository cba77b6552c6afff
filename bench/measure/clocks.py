"""Honest clocks: a device synchronize before every reading (giva.synchronize), CUDA events on a GPU, medians and spread.

    timer = StepTimer(device); timer.start(); step(); timer.stop()   ...   summarize_ms(timer.times_ms())
"""

from __future__ import annotations

import statistics
import time

import torch


class StepTimer:
    """Times steps: CUDA events on a GPU, a monotonic clock after a sync elsewhere.

    timer.start(); step(); timer.stop()  ...  timer.times_ms()
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self._pending = []  # CUDA: (start_event, end_event); CPU: (t0, t1)

    def start(self) -> None:
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._pending.append((self._start, end))
        else:
            self._pending.append((self._start, time.perf_counter()))

    def times_ms(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return [start.elapsed_time(end) for start, end in self._pending]
        return [(t1 - t0) * 1000.0 for t0, t1 in self._pending]


def summarize_ms(times_ms: list[float]) -> dict:
    """Median, p90, mean and min of step times (ms), and the raw list for comparisons."""
    if not times_ms:
        return {}
    ordered = sorted(times_ms)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {
        "step_time_ms_p50": statistics.median(ordered),
        "step_time_ms_p90": p90,
        "step_time_ms_mean": statistics.fmean(ordered),
        "step_time_ms_min": ordered[0],
        "step_times_ms": ";".join(f"{t:.3f}" for t in times_ms),
    }
