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
    """cudaMemGetInfo on device `index` (what vLLM's MemorySnapshot calls through torch)."""

    name = "cudaMemGetInfo (cuda-bindings)"

    def __init__(self, runtime: Any, index: int = 0):
        self.rt = runtime
        self.index = index

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


@dataclass(frozen=True)
class LiveReading:
    total_gib: float
    free_gib: float
    total_source: str
    free_source: str

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
    cuda_err = "cuda-bindings is not installed (pip install 'residency[cuda]')"
    if cuda_src is not None:
        try:
            c_total, c_free = cuda_src.read()
        except Exception as e:  # noqa: BLE001 - no driver/device: fall back, say why
            cuda_err = f"cudaMemGetInfo failed ({e})"
    if not unified:
        if c_total is None or c_free is None:
            return None, cuda_err
        n = CudaSource.name
        return LiveReading(c_total / GiB, c_free / GiB, n, n), ""
    mi = meminfo or MeminfoSource(free_field(rules))
    try:
        m_total, m_free = mi.read()
    except OSError as e:
        return None, f"cannot read free memory: {e}"
    if c_total is not None:
        return LiveReading(c_total / GiB, m_free / GiB, CudaSource.name, mi.name), ""
    return (
        LiveReading(
            (m_total or 0) / GiB,
            m_free / GiB,
            f"MemTotal (/proc/meminfo; {cuda_err}; CUDA's total differs)",
            mi.name,
        ),
        "",
    )
