"""Per-phase peak memory: CUDA counters reset per phase, NVML device memory found by UUID, process RSS with the
kernel's high-water mark, and the memory a cgroup still allows."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import psutil
import torch

from giva import synchronize


@dataclass
class MemoryPeak:
    """Peaks over one phase. `peak_bytes` is the headline: CUDA max allocated on a GPU, RSS on CPU."""

    peak_bytes: int = 0
    growth_bytes: int = 0
    source: str = "rss"
    peak_rss_bytes: int = 0
    cuda_max_allocated_bytes: int | None = None
    cuda_max_reserved_bytes: int | None = None
    nvml_peak_used_bytes: int | None = None


class MemoryMonitor:
    """with MemoryMonitor(device) as mem: ...  then mem.result: MemoryPeak for that phase alone.

    Resets torch's CUDA peak counters on entry, samples process RSS (psutil) and,
    on CUDA, the device's used memory (NVML) in a background thread. On Linux the
    kernel's own RSS high-water mark (VmHWM, reset through clear_refs) is read too,
    so a short spike between samples is not missed.
    """

    def __init__(self, device: torch.device, interval_s: float = 0.005):
        self.device = device
        self.interval_s = interval_s
        self.result = MemoryPeak()

    def __enter__(self) -> "MemoryMonitor":
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._nvml = _nvml_handle(self.device) if self.device.type == "cuda" else None
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start_cuda = torch.cuda.memory_allocated(self.device)
        _reset_rss_high_water_mark()
        self._start_rss = self._process.memory_info().rss
        self._peak_rss = self._start_rss
        self._peak_nvml = self._read_nvml()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _read_nvml(self) -> int | None:
        if self._nvml is None:
            return None
        import pynvml

        return pynvml.nvmlDeviceGetMemoryInfo(self._nvml).used

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak_rss = max(self._peak_rss, self._process.memory_info().rss)
            if self._nvml is not None:
                self._peak_nvml = max(self._peak_nvml, self._read_nvml())

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self._stop.set()
        self._thread.join()
        peak_rss = max(self._peak_rss, self._process.memory_info().rss, _rss_high_water_mark() or 0)
        r = MemoryPeak(peak_rss_bytes=peak_rss, nvml_peak_used_bytes=self._peak_nvml)
        if self.device.type == "cuda":
            r.cuda_max_allocated_bytes = torch.cuda.max_memory_allocated(self.device)
            r.cuda_max_reserved_bytes = torch.cuda.max_memory_reserved(self.device)
            r.peak_bytes, r.source = r.cuda_max_allocated_bytes, "cuda_max_allocated"
            r.growth_bytes = r.peak_bytes - self._start_cuda
        else:
            r.peak_bytes, r.source = peak_rss, "rss"
            r.growth_bytes = peak_rss - self._start_rss
        self.result = r


def _nvml_handle(device: torch.device):
    """NVML's handle of the GPU torch calls `device`, matched by UUID.

    NVML numbers the physical GPUs and ignores CUDA_VISIBLE_DEVICES, so an index
    would read another GPU's memory in a point pinned to one GPU of several.
    """
    try:
        import pynvml

        pynvml.nvmlInit()
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        for prefix in ("GPU-", "MIG-", ""):  # torch gives the bare UUID; NVML wants it with its prefix
            try:
                return pynvml.nvmlDeviceGetHandleByUUID(prefix + uuid)
            except pynvml.NVMLError:
                continue
    except Exception:  # no driver or library: the NVML column stays empty
        pass
    return None


def cgroup_memory_available(root: str = "/sys/fs/cgroup") -> int | None:
    """Bytes this process's memory cgroup still allows (limit - usage), or None where no limit is set.

    Containers and SLURM jobs cap memory with a cgroup; the host's free memory
    (psutil) does not see that cap, and a model that "fits" is then OOM-killed.
    Reads cgroup v2 (memory.max, memory.current) or v1 (memory/memory.limit_in_bytes, usage_in_bytes).
    """
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            with open(os.path.join(root, limit_file)) as f:
                limit = f.read().strip()
            with open(os.path.join(root, usage_file)) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 2**62:  # v1 writes "no limit" as a huge number
            return None
        return max(0, int(limit) - usage)
    return None


def _reset_rss_high_water_mark() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss_high_water_mark() -> int | None:
    """VmHWM in bytes, or None where /proc is not there."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
