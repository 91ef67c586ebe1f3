"""Device presets and DeviceSpec -> Device.

Totals are what vLLM logs as the device total (cudaMemGetInfo total, GiB = 2^30 bytes), not the
marketing size: an "80 GB" H100 reports about 79.19-79.25 GiB. Sources: vllm-logs.jsonl records and
../shared/reference/peers.md (GB10).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from residency.errors import SpecError
from residency.memory import unified as unified_mod
from residency.memory.unified import Start as Start  # re-exported: the planner names it from here
from residency.spec import DeviceSpec


@dataclass(frozen=True)
class Preset:
    name: str
    total_gib: float
    unified: bool
    compute_capability: str
    nvml_memory: bool = True  # does nvmlDeviceGetMemoryInfo answer? (GB10: N/A)


# vLLM's UMA override (§2.3) keys on cc 8.7 (Orin), 11.0 (Thor), 12.1 (GB10) in 0.11.1-0.19 and on
# torch's is_integrated from 0.20. GH200 is cache-coherent but NOT integrated: vLLM treats it as a
# discrete GPU (cudaMemGetInfo free, no psutil override), so unified=False here.
PRESETS: dict[str, Preset] = {
    "dgx-spark": Preset("NVIDIA GB10", 119.67, True, "12.1", nvml_memory=False),
    "gb10": Preset("NVIDIA GB10", 119.67, True, "12.1", nvml_memory=False),
    "jetson-thor": Preset("NVIDIA Jetson AGX Thor", 122.81, True, "11.0", nvml_memory=False),
    "jetson-agx-orin-64gb": Preset("NVIDIA Jetson AGX Orin", 61.37, True, "8.7", nvml_memory=False),
    "h100-80gb": Preset("NVIDIA H100 80GB HBM3", 79.19, False, "9.0"),
    "h100-94gb": Preset("NVIDIA H100 NVL", 93.1, False, "9.0"),
    "h200": Preset("NVIDIA H200", 139.72, False, "9.0"),
    "gh200": Preset("NVIDIA GH200 480GB", 94.5, False, "9.0"),
    "b200": Preset("NVIDIA B200", 178.35, False, "10.0"),
    "a100-80gb": Preset("NVIDIA A100-SXM4-80GB", 79.15, False, "8.0"),
    "a100-40gb": Preset("NVIDIA A100-SXM4-40GB", 39.39, False, "8.0"),
    "l40s": Preset("NVIDIA L40S", 44.42, False, "8.9"),
    "l40": Preset("NVIDIA L40", 44.42, False, "8.9"),
    "l4": Preset("NVIDIA L4", 22.05, False, "8.9"),
    "a10": Preset("NVIDIA A10", 22.07, False, "8.6"),
    "a10g": Preset("NVIDIA A10G", 22.07, False, "8.6"),
    "t4": Preset("Tesla T4", 14.56, False, "7.5"),
    "v100-32gb": Preset("Tesla V100-SXM2-32GB", 31.74, False, "7.0"),
    "rtx-3090": Preset("NVIDIA GeForce RTX 3090", 23.57, False, "8.6"),
    "rtx-4090": Preset("NVIDIA GeForce RTX 4090", 23.55, False, "8.9"),
    "rtx-5090": Preset("NVIDIA GeForce RTX 5090", 31.36, False, "12.0"),
    "rtx-pro-6000": Preset("NVIDIA RTX PRO 6000 Blackwell", 94.97, False, "12.0"),
}


@dataclass(frozen=True)
class Device:
    """One GPU model of a box, resolved. Figures are per GPU."""

    name: str
    preset: str | None
    total_gib: float
    unified: bool
    compute_capability: str | None
    nvml_memory: bool
    count: int = 1
    used_gib: float = 0.0
    budget: float = 0.95
    # unified memory (memory/unified.py): cold/warm start, host reserve, and what an idle box offers
    start: Start = "cold"
    host_reserve_gib: float = 0.0
    idle_free_gib: float | None = None  # measured idle free (live reading or calibration); None = assumed
    total_source: str = "preset"  # preset | spec | live reading | calibration

    @property
    def total_bytes(self) -> int:
        return int(round(self.total_gib * 2**30))

    @property
    def uma_gpu(self) -> bool:
        """A GPU sharing host memory (GB10, Thor, Orin): vLLM's GPU worker with a system-wide snapshot. Not the
        CPU backend (a "cpu" device, unified for MemAvailable reads only: its worker has no such snapshot)."""
        return self.unified and not is_cpu_name(self.name)

    @property
    def is_gb10(self) -> bool:
        return self.compute_capability == "12.1"


def is_cpu_name(name: str) -> bool:
    """vLLM's CPU backend as specs name it ("cpu", "cpu-box"): `up --cpu` uses the same rule."""
    return "cpu" in re.split(r"[^a-z0-9]+", name.lower())


def resolve_device(spec: DeviceSpec, field: str = "device") -> Device:
    preset: Preset | None = None
    if spec.preset is not None:
        key = spec.preset.strip().lower()
        preset = PRESETS.get(key)
        if preset is None:
            raise SpecError(
                f"{field}.preset",
                f"unknown preset {spec.preset!r}",
                "use one of " + ", ".join(sorted(PRESETS)) + ", or give total_gib instead",
            )
    total = spec.total_gib if spec.total_gib is not None else (preset.total_gib if preset else None)
    if total is None:
        raise SpecError(
            f"{field}.total_gib",
            "no device preset and no total_gib",
            "set device.preset (e.g. dgx-spark, h100-80gb) or device.total_gib",
        )
    unified = spec.unified if spec.unified is not None else (preset.unified if preset else False)
    cc = spec.compute_capability or (preset.compute_capability if preset else None)
    nvml = spec.nvml_memory if spec.nvml_memory is not None else (preset.nvml_memory if preset else True)
    name = spec.name or (preset.name if preset else f"GPU ({total:g} GiB)")
    if spec.used_gib >= total:
        raise SpecError(
            f"{field}.used_gib", f"{spec.used_gib} GiB used is not less than the total {total} GiB"
        )
    reserve = spec.host_reserve_gib
    if reserve is None:
        reserve = unified_mod.HOST_RESERVE_DEFAULT_GIB if unified and not is_cpu_name(name) else 0.0
    if reserve + spec.used_gib >= total:
        raise SpecError(
            f"{field}.host_reserve_gib",
            f"host_reserve_gib {reserve} plus used_gib {spec.used_gib} leaves nothing of the total {total} GiB",
            "lower device.host_reserve_gib",
        )
    return Device(
        name=name,
        preset=spec.preset,
        total_gib=float(total),
        unified=bool(unified),
        compute_capability=cc,
        nvml_memory=bool(nvml),
        count=spec.count,
        used_gib=spec.used_gib,
        budget=spec.budget,
        start=spec.start,
        host_reserve_gib=float(reserve),
        total_source="spec" if spec.total_gib is not None else "preset",
    )
