"""The machine a run was timed on, as far as its timings depend on it: the processor, the device and the torch
threads the points ran with.

    run_machine(meta)   # Machine('Intel(R) Xeon(R) Processor', 'cpu', 1) -> "Intel(R) Xeon(R) Processor, cpu, 1 thread"

compare and history judge timings and memory readings (columns whose is_machine_reading holds) only between runs of
one machine; exact counts are judged across all. The host is not part of it: a cloud VM keeps its name when it
comes back on another processor, and two hosts of one kind time alike.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Machine:
    processor: str  # the CPU's model name (/proc/cpuinfo); "" where the run did not record it
    device: str  # the GPU's name, or the device kind (cpu, cuda) where no name was recorded
    threads: int | None  # torch intra-op threads of each point (the sweep's threads, else torch's default)

    def __str__(self) -> str:
        threads = "? threads" if self.threads is None else f"{self.threads} thread{'s' * (self.threads != 1)}"
        return f"{self.processor or 'unknown processor'}, {self.device or 'unknown device'}, {threads}"

    def differences(self, other: Machine) -> list[str]:
        """The fields both machines recorded and that differ (unknown on either side is no difference)."""
        return [f.name for f in fields(self) if getattr(self, f.name) not in ("", None)
                and getattr(other, f.name) not in ("", None) and getattr(self, f.name) != getattr(other, f.name)]

    def unknown(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) in ("", None)]


def differ(names: list[str]) -> str:
    """['processor', 'threads'] -> 'the processor and threads differ'."""
    return f"the {' and '.join(names)} differ{'s' * (len(names) == 1)}"


def device_name(gpu: str | None, device: str | None) -> str:
    """The GPU's name where known, else the device's kind: 'cuda:1' -> 'cuda'."""
    return gpu or (device or "").partition(":")[0]


def run_machine(meta: dict) -> Machine:
    """The machine of a run, from its meta.json: the environment's CPU and GPU, and the sweep's threads (0 or
    unset: torch's default, which the environment recorded)."""
    env = meta.get("environment") or {}
    threads = (meta.get("config") or {}).get("threads") or env.get("torch_threads")
    return Machine(env.get("cpu") or "", device_name(env.get("gpu"), env.get("device")),
                   int(threads) if threads else None)
