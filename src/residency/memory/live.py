"""Total and free memory read on the box the way vLLM's startup check reads them.

vLLM takes `total` from cudaMemGetInfo in every version; `free` from cudaMemGetInfo too, except on
integrated GPUs (GB10, Thor, Orin) from 0.11.1, where it is psutil's MemAvailable (vllm-memory.md §2.3,
`vllm/utils/mem_utils.py:85-102 @0.11.1`, `:143-151 @0.33.0`; versions.VersionRules.uma_free_is_memavailable).
On UMA cudaMemGetInfo's free is MemFree-like (page cache counted as used), and NVML memory queries answer
NotSupported on GB10 (unified-memory.md §1), so NVML is not a source here.

Sources: `CudaSource` (NVIDIA's cuda-bindings, the optional `cuda` extra, imported lazily) and
`MeminfoSource` (/proc/meminfo). `read_live` combines them and names what it used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from residency.memory.versions import VersionRules

GiB = 2**30
MEMINFO = "/proc/meminfo"


class MemorySource(Protocol):
    name: str

    def read(self) -> tuple[int | None, int]:
        """(total bytes or None when this source has no device total, free bytes)."""
        ...


def free_field(rules: VersionRules) -> str:
    """The /proc/meminfo field vLLM's check uses on unified memory for this version."""
    return "MemAvailable" if rules.uma_free_is_memavailable else "MemFree"


def parse_meminfo(text: str) -> dict[str, int]:
    """'MemTotal:  125000000 kB' lines -> {'MemTotal': bytes}."""
    out: dict[str, int] = {}
    for line in text.splitlines()[:200]:
        m = re.match(r"([A-Za-z_()]{1,40}):\s+(\d{1,15})(?:\s+kB)?\s*$", line)
        if m:
            out[m.group(1)] = int(m.group(2)) * (1024 if line.rstrip().endswith("kB") else 1)
    return out


class MeminfoSource:
    """Free memory as vLLM reads it on unified memory (MemAvailable, or MemFree on <= 0.11.0); MemTotal as a
    stand-in total (close to, not equal to, CUDA's total: unified-memory.md §1)."""

    def __init__(self, field: str = "MemAvailable", reader: Callable[[], str] | None = None):
        self.field = field
        self.name = f"{field} (/proc/meminfo)"
        self._reader = reader or _read_proc_meminfo

    def read(self) -> tuple[int | None, int]:
        info = parse_meminfo(self._reader())
        if self.field not in info or "MemTotal" not in info:
            raise OSError(f"/proc/meminfo has no {self.field} or MemTotal line")
        return info["MemTotal"], info[self.field]


def _read_proc_meminfo() -> str:
    fd = os.open(MEMINFO, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return os.read(fd, 1 << 16).decode("ascii", "replace")
    finally:
        os.close(fd)


def import_cuda_runtime() -> Any:
    """cuda-bindings' runtime module (>= 12.6 layout, then the older cuda-python one), or None."""
    try:
        from cuda.bindings import runtime  # type: ignore[import-not-found]

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart  # type: ignore[import-not-found]

        return cudart
    except ImportError:
        return None


class CudaSource:
    """cudaMemGetInfo on device `index` (what vLLM's MemorySnapshot calls through torch), and which device
    that is (cudaGetDeviceProperties: name, integrated)."""

    name = "cudaMemGetInfo (cuda-bindings)"

    def __init__(self, runtime: Any, index: int = 0):
        self.rt = runtime
        self.index = index

    def device(self) -> tuple[str | None, bool | None]:
        """(device name, integrated) of the device read, or (None, None) when the runtime cannot say."""
        try:
            err, prop = self.rt.cudaGetDeviceProperties(self.index)
            _check(err)
        except Exception:  # noqa: BLE001 - an older binding or a failing driver: the name stays unknown
            return None, None
        raw = getattr(prop, "name", None)
        name = raw.split(b"\0", 1)[0].decode(errors="replace") if isinstance(raw, bytes) else raw
        integrated = getattr(prop, "integrated", None)
        return (str(name)[:80] if name else None), (bool(integrated) if integrated is not None else None)

    def read(self) -> tuple[int | None, int]:
        (err,) = self.rt.cudaSetDevice(self.index)[:1]
        _check(err)
        err, free, total = self.rt.cudaMemGetInfo()
        _check(err)
        return int(total), int(free)


def _check(err: Any) -> None:
    code = getattr(err, "value", err)
    if code != 0:
        raise OSError(f"CUDA runtime error {err}")


HOST_RAM = "this host's RAM (no CUDA device read)"


@dataclass(frozen=True)
class LiveReading:
    total_gib: float
    free_gib: float
    total_source: str
    free_source: str
    device: str = HOST_RAM  # what was read: the CUDA device's name, or this host's RAM
    integrated: bool | None = None  # the CUDA device's flag; None when no device was read or it was unknown

    @property
    def source(self) -> str:
        if self.total_source == self.free_source:
            return self.total_source
        return f"total from {self.total_source}, free from {self.free_source}"


def read_live(
    unified: bool,
    rules: VersionRules,
    *,
    cuda: Any = None,
    meminfo: MemorySource | None = None,
    use_cuda: bool = True,
) -> tuple[LiveReading | None, str]:
    """Read total and free as vLLM `rules.version` will; (None, why) when this machine cannot say.

    `cuda`: a cuda runtime module (default: cuda-bindings when installed). `meminfo`: the /proc/meminfo source
    (default: the real file)."""
    rt = cuda if cuda is not None else (import_cuda_runtime() if use_cuda else None)
    cuda_src = CudaSource(rt) if rt is not None else None
    c_total = c_free = None
    dev_name: str | None = None
    integrated: bool | None = None
    cuda_err = "cuda-bindings is not installed (pip install 'residency[cuda]')"
    if cuda_src is not None:
        try:
            c_total, c_free = cuda_src.read()
            dev_name, integrated = cuda_src.device()
        except Exception as e:  # noqa: BLE001 - no driver/device: fall back, say why
            cuda_err = f"cudaMemGetInfo failed ({e})"
    device = f"CUDA device {cuda_src.index if cuda_src else 0} ({dev_name or 'name unknown'})"
    if not unified:
        if c_total is None or c_free is None:
            return None, cuda_err
        n = CudaSource.name
        return LiveReading(c_total / GiB, c_free / GiB, n, n, device, integrated), ""
    mi = meminfo or MeminfoSource(free_field(rules))
    try:
        m_total, m_free = mi.read()
    except OSError as e:
        return None, f"cannot read free memory: {e}"
    if c_total is not None:
        return LiveReading(c_total / GiB, m_free / GiB, CudaSource.name, mi.name, device, integrated), ""
    return (
        LiveReading(
            (m_total or 0) / GiB,
            m_free / GiB,
            f"MemTotal (/proc/meminfo; {cuda_err}; CUDA's total differs)",
            mi.name,
        ),
        "",
    )


# How far the total read may be from the spec's device total and still be that device: CUDA's total on
# a GB10 is 119.6-121.69 GiB against a 128 GB label, MemTotal close to it (unified-memory.md §1, the
# total-memory table); the next card sizes differ by >= 15% (H100 80 vs 94 GB, 40 vs 48 GB, 24 vs 32 GB).
LIVE_TOTAL_TOLERANCE = 0.10


def live_mismatch(r: LiveReading, *, name: str, total_gib: float, unified: bool, cpu: bool) -> str | None:
    """Why the reading is not of the spec's device (a plan would carry the spec's name with this machine's
    figures), or None. A CPU-backend device is this host, whose RAM is the reading."""
    if cpu:
        return None
    if r.integrated is not None and r.integrated != unified:
        kind = "an integrated (unified-memory) GPU" if r.integrated else "a discrete GPU"
        return f"read {r.device}, {kind}, but the spec's device {name} is {'' if unified else 'not '}unified"
    if total_gib > 0 and abs(r.total_gib - total_gib) / total_gib > LIVE_TOTAL_TOLERANCE:
        return (
            f"read {r.device}: {r.total_gib:.2f} GiB total, but the spec's device {name} has {total_gib:.2f} GiB"
        )
    return None
