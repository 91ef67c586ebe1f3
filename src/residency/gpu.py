"""Device memory readings behind one small interface: NVML on GPUs, psutil on the CPU runtime.

`GpuReader` is all the rest of residency sees (status, and `up`'s "memory stopped moving" and
free-memory-before-start checks). Readers:

* `NvmlReader` - nvidia-ml-py (imported lazily). Device totals may be unsupported: on DGX Spark
  (GB10) `nvmlDeviceGetMemoryInfo` raises NVMLError_NotSupported (nvidia-smi shows `[N/A]`),
  while per-process `usedGpuMemory` from `nvmlDeviceGetComputeRunningProcesses` still answers.
  Unsupported fields become None, never an exception.
* `RecordedReader` - the same `NvmlReader` code replaying a recorded JSON fixture (tests, demos).
* `HostReader` - the CPU runtime: per-process RSS, and host memory as the "device".

This module imports nothing heavier than the standard library at import time, so it stays
importable on boxes without NVIDIA libraries.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class DeviceReading:
    """One device's memory now. None = the device did not say (e.g. GB10 device totals)."""

    index: int
    name: str
    total_bytes: int | None
    used_bytes: int | None
    free_bytes: int | None


@dataclass(frozen=True)
class HostMemory:
    """Host RAM from /proc/meminfo (via psutil.virtual_memory()).

    On unified memory (GB10, Jetson) this is the device's memory too. vLLM >= 0.11.1 takes
    `available` (MemAvailable, which counts reclaimable page cache as free) for its startup check on
    UMA; <= 0.11.0 takes cudaMemGetInfo free, which equals MemFree and counts page cache as used
    (vllm-memory.md §2.3).
    """

    total_bytes: int
    available_bytes: int  # MemAvailable
    free_bytes: int  # MemFree
    page_cache_bytes: int  # psutil "cached": Cached + SReclaimable


@runtime_checkable
class GpuReader(Protocol):
    kind: str  # "nvml" | "recorded" | "host"

    def devices(self) -> list[DeviceReading]:
        """Every device with its memory totals (None fields where the device does not answer)."""
        ...

    def processes(self, pids: Collection[int] | None = None) -> dict[int, int | None]:
        """pid -> bytes it holds now: GPU memory summed over devices (NVML), or RSS (host).

        `pids` limits the answer to those processes (default: every process the reader sees).
        NVML lists only processes holding GPU memory; a value of None means the process is
        listed but its usage is not available (NVML_VALUE_NOT_AVAILABLE)."""
        ...

    def host(self) -> HostMemory:
        """Host RAM (MemAvailable, page cache); on unified memory this is the device's memory."""
        ...

    def close(self) -> None: ...


def read_host_memory() -> HostMemory:
    import psutil

    vm = psutil.virtual_memory()
    return HostMemory(
        total_bytes=int(vm.total),
        available_bytes=int(vm.available),
        free_bytes=int(vm.free),
        page_cache_bytes=int(getattr(vm, "cached", 0) or 0),
    )


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants that exist now ([] if pid is gone).

    vLLM's API server forks the EngineCore (and, with TP > 1, one worker per GPU); the memory
    lives in the children, so a model's memory is its whole tree."""
    import psutil

    try:
        p = psutil.Process(pid)
        return [pid] + [c.pid for c in p.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def group_processes(pgid: int, created_after: float | None = None) -> list[Any]:
    """Live psutil processes of process group `pgid`, oldest first.

    `up` starts each vLLM server in its own session (process group = the API server's pid), so its
    EngineCore and workers stay in that group after the API server dies and they are re-parented to
    init. Processes created more than 1 s before `created_after` (the leader's recorded create
    time) belong to an earlier holder of a reused group id and are left out, as are zombies."""
    import os

    import psutil

    out = []
    for p in psutil.process_iter(["pid", "create_time", "status"]):
        try:
            if os.getpgid(p.pid) != pgid:
                continue
        except OSError:  # gone, or not ours to look at
            continue
        ct = p.info.get("create_time")
        if created_after is not None and ct is not None and ct + 1.0 < created_after:
            continue
        if p.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        out.append(p)
    return sorted(out, key=lambda p: (p.info.get("create_time") or 0.0, p.pid))


def group_pids(pgid: int, created_after: float | None = None) -> list[int]:
    """The pids of `group_processes(pgid, created_after)`."""
    return [p.pid for p in group_processes(pgid, created_after)]


def tree_bytes(pid: int, per_pid: dict[int, int | None], tree: list[int] | None = None) -> int | None:
    """Bytes held by pid's process tree according to a reader's `processes()`; None if none listed."""
    pids = tree if tree is not None else process_tree(pid)
    vals = [per_pid[p] for p in pids if p in per_pid and per_pid[p] is not None]
    return sum(vals) if vals else None  # type: ignore[arg-type]


class NvmlReader:
    """Readings from NVML. `nvml` is the pynvml module, or anything with the same functions."""

    kind = "nvml"

    def __init__(self, nvml: Any | None = None) -> None:
        if nvml is None:
            import pynvml as nvml  # nvidia-ml-py; raises ImportError when not installed
        self._nvml = nvml
        nvml.nvmlInit()  # NVMLError (LibraryNotFound, DriverNotLoaded...) when there is no driver
        self._open = True

    def _call(self, fn: str, *args: Any) -> Any:
        """Call an NVML function; None when the device says NotSupported (GB10 memory info)."""
        try:
            return getattr(self._nvml, fn)(*args)
        except self._nvml.NVMLError_NotSupported:
            return None

    def _handles(self) -> list[Any]:
        n = self._nvml.nvmlDeviceGetCount()
        return [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]

    def devices(self) -> list[DeviceReading]:
        out = []
        for i, h in enumerate(self._handles()):
            name = self._call("nvmlDeviceGetName", h)
            if isinstance(name, bytes):  # nvidia-ml-py < 11.515 returned bytes
                name = name.decode()
            mem = self._call("nvmlDeviceGetMemoryInfo", h)
            out.append(
                DeviceReading(
                    index=i,
                    name=name or f"GPU {i}",
                    total_bytes=_int(getattr(mem, "total", None)),
                    used_bytes=_int(getattr(mem, "used", None)),
                    free_bytes=_int(getattr(mem, "free", None)),
                )
            )
        return out

    def processes(self, pids: Collection[int] | None = None) -> dict[int, int | None]:
        out: dict[int, int | None] = {}
        for h in self._handles():
            procs = self._call("nvmlDeviceGetComputeRunningProcesses", h) or []
            for p in procs:
                used = _int(getattr(p, "usedGpuMemory", None))
                pid = int(p.pid)
                if used is None:
                    out.setdefault(pid, None)
                else:
                    out[pid] = (out.get(pid) or 0) + used  # a pid may hold memory on several GPUs
        return out if pids is None else {p: v for p, v in out.items() if p in pids}

    def host(self) -> HostMemory:
        return read_host_memory()

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - shutting down a broken NVML is not worth a crash
                pass


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class RecordedNvml:
    """A pynvml look-alike replaying a fixture (tests/fixtures/nvml/*.json).

    Fixture: {"devices": [{"name", "memory_info": {"total","used","free"} | "NotSupported",
    "compute_processes": [{"pid", "usedGpuMemory"}] | "NotSupported"}], "host": {...HostMemory}}.
    "NotSupported" raises NVMLError_NotSupported exactly where the real device does; the error
    classes are pynvml's own when nvidia-ml-py is installed.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        try:
            import pynvml

            self.NVMLError = pynvml.NVMLError
            self.NVMLError_NotSupported = pynvml.NVMLError_NotSupported
        except ImportError:  # keep the fake usable without nvidia-ml-py

            class NVMLError(Exception):
                pass

            class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's name
                pass

            self.NVMLError = NVMLError
            self.NVMLError_NotSupported = NVMLError_NotSupported

    def _field(self, handle: int, key: str) -> Any:
        v = self.data["devices"][handle].get(key, "NotSupported")
        if v == "NotSupported":
            raise self.NVMLError_NotSupported()
        return v

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        pass

    def nvmlShutdown(self) -> None:  # noqa: N802
        pass

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.data["devices"])

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetName(self, h: int) -> str:  # noqa: N802
        return self._field(h, "name")

    def nvmlDeviceGetMemoryInfo(self, h: int) -> _Obj:  # noqa: N802
        return _Obj(**self._field(h, "memory_info"))

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[_Obj]:  # noqa: N802
        return [_Obj(**p) for p in self._field(h, "compute_processes")]


class RecordedReader(NvmlReader):
    """NvmlReader over a recorded fixture; host memory comes from the fixture too (if recorded)."""

    kind = "recorded"

    def __init__(self, source: str | Path | dict[str, Any]) -> None:
        data = source if isinstance(source, dict) else json.loads(Path(source).read_text())
        self.data = data
        super().__init__(RecordedNvml(data))

    def host(self) -> HostMemory:
        h = self.data.get("host")
        return HostMemory(**h) if h else read_host_memory()


class HostReader:
    """The CPU runtime: host RAM is the device; a process holds its RSS."""

    kind = "host"

    def devices(self) -> list[DeviceReading]:
        h = read_host_memory()
        return [
            DeviceReading(
                index=0,
                name="host memory (CPU runtime)",
                total_bytes=h.total_bytes,
                used_bytes=h.total_bytes - h.available_bytes,  # what is really held, page cache excluded
                free_bytes=h.available_bytes,
            )
        ]

    def processes(self, pids: Collection[int] | None = None) -> dict[int, int | None]:
        import psutil

        out: dict[int, int | None] = {}
        if pids is not None:  # only these: no walk over every process on the box
            for pid in pids:
                try:
                    out[pid] = int(psutil.Process(pid).memory_info().rss)
                except psutil.Error:
                    pass
            return out
        for p in psutil.process_iter(["pid", "memory_info"]):
            mi = p.info.get("memory_info")
            if mi is not None:
                out[p.info["pid"]] = int(mi.rss)
        return out

    def host(self) -> HostMemory:
        return read_host_memory()

    def close(self) -> None:
        pass


def get_reader(prefer: str | None = None) -> GpuReader:
    """NVML when it initialises (driver present), else the host reader.

    prefer: "host" forces the host reader; "nvml" raises if NVML is unusable; a path to a
    recorded fixture (*.json) replays it. The RESIDENCY_GPU_READER environment variable sets
    the same choice (useful for demos and tests)."""
    import os

    prefer = prefer or os.environ.get("RESIDENCY_GPU_READER") or None
    if prefer and prefer.endswith(".json"):
        return RecordedReader(prefer)
    if prefer == "host":
        return HostReader()
    try:
        reader = NvmlReader()
        if not reader.devices():  # NVML without GPUs: nothing to read there
            reader.close()
            raise RuntimeError("NVML sees no devices")
        return reader
    except Exception:  # noqa: BLE001 - ImportError, NVMLError_* (no driver), no devices
        if prefer == "nvml":
            raise
        return HostReader()
