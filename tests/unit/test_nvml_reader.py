"""The NVML reader (residency.gpu.NvmlReader) on devices this machine lacks.

The machine has no GPU, so NVML is replaced by a fake: tests/fixtures/nvml/*.json are SYNTHESISED
readings (not recordings; each file's `_note` says from what) in the shapes nvidia-ml-py returns,
replayed by RecordedNvml with pynvml's own error classes. What is under test is the product code on
top: NvmlReader's device and process aggregation, NotSupported -> unknown (GB10 answers per-process
memory but NotSupported for device totals), other NVML errors surfacing, and get_reader's choice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from residency.gpu import GpuReader, HostReader, RecordedReader, get_reader, tree_bytes

FIX = Path(__file__).parent.parent / "fixtures" / "nvml"
MiB = 1 << 20


def test_h100_devices_and_processes():
    r = RecordedReader(FIX / "h100-two-vllm.json")
    assert isinstance(r, GpuReader)
    (d,) = r.devices()
    assert d.name == "NVIDIA H100 80GB HBM3"
    assert d.total_bytes == 81559 * MiB
    # used = 37486 + 36988 + 531 (reserved) MiB = 75005 MiB; free = 81559 - 75005 = 6554 MiB
    assert d.used_bytes == 75005 * MiB
    assert d.free_bytes == 6554 * MiB
    assert r.processes() == {31502: 37486 * MiB, 31588: 36988 * MiB}


def test_gb10_memory_info_not_supported_but_processes_answer():
    r = RecordedReader(FIX / "gb10-two-vllm.json")
    (d,) = r.devices()
    assert d.name == "NVIDIA GB10"
    assert (d.total_bytes, d.used_bytes, d.free_bytes) == (None, None, None)
    assert r.processes() == {4711: 48 * 1024 * MiB, 4790: 30 * 1024 * MiB}
    h = r.host()
    assert h.page_cache_bytes == 24 << 30
    assert h.total_bytes > h.available_bytes > h.free_bytes


def test_not_supported_processes_and_unknown_usage():
    data = {
        "devices": [
            {
                "name": "A",
                "memory_info": {"total": 10, "used": 4, "free": 6},
                "compute_processes": "NotSupported",
            },
            {
                "name": "B",
                "memory_info": {"total": 10, "used": 4, "free": 6},
                "compute_processes": [{"pid": 7, "usedGpuMemory": None}, {"pid": 8, "usedGpuMemory": 3}],
            },
            {
                "name": "C",
                "memory_info": {"total": 10, "used": 4, "free": 6},
                "compute_processes": [{"pid": 8, "usedGpuMemory": 5}],
            },
        ]
    }
    r = RecordedReader(data)
    # pid 8 holds memory on two GPUs: 3 + 5 = 8; pid 7 is listed with unknown usage
    assert r.processes() == {7: None, 8: 8}
    assert tree_bytes(1, r.processes(), tree=[1, 7, 8]) == 8
    assert tree_bytes(1, r.processes(), tree=[1, 7]) is None


def test_only_not_supported_means_unknown_other_nvml_errors_surface():
    pynvml = pytest.importorskip("pynvml")  # nvidia-ml-py is a runtime dependency: always present
    from residency.gpu import NvmlReader, RecordedNvml

    class LostGpu(RecordedNvml):
        # a GPU that fell off the bus: NVML raises GpuIsLost, which must not read as "not supported"
        def nvmlDeviceGetMemoryInfo(self, h):  # noqa: N802 - pynvml's name
            raise pynvml.NVMLError_GpuIsLost()

    data = json.loads((FIX / "h100-two-vllm.json").read_text())
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        NvmlReader(LostGpu(data)).devices()
    # the same device with NotSupported memory info: the reading says unknown, the processes still count
    data["devices"][0]["memory_info"] = "NotSupported"
    r = NvmlReader(RecordedNvml(data))
    (d,) = r.devices()
    assert (d.name, d.total_bytes, d.used_bytes, d.free_bytes) == ("NVIDIA H100 80GB HBM3", None, None, None)
    assert r.processes(pids=[31502]) == {31502: 37486 * MiB}


def test_get_reader_falls_back_to_host_without_a_driver(monkeypatch):
    monkeypatch.delenv("RESIDENCY_GPU_READER", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no nvidia-ml-py (same path as nvmlInit failing)
    r = get_reader()
    assert r.kind == "host"
    assert get_reader(str(FIX / "h100-two-vllm.json")).kind == "recorded"
    monkeypatch.setenv("RESIDENCY_GPU_READER", str(FIX / "gb10-two-vllm.json"))
    assert get_reader().kind == "recorded"
    with pytest.raises(Exception):  # noqa: B017 - any NVML failure surfaces when nvml is demanded
        get_reader("nvml")


def test_host_reader_reads_this_process():
    import os

    r = HostReader()
    (d,) = r.devices()
    h = r.host()
    assert d.total_bytes == h.total_bytes > 0
    assert d.used_bytes == h.total_bytes - h.available_bytes
    rss = r.processes()[os.getpid()]
    assert rss is not None and rss > 10 * MiB  # a Python with pytest loaded holds more than 10 MiB


def test_gpu_module_imports_without_nvidia_libs():
    """Up imports residency.gpu; it must not pull pynvml (or psutil) at import time."""
    code = (
        "import sys; sys.modules['pynvml'] = None\n"
        "import residency.gpu as g\n"
        "assert 'psutil' not in sys.modules\n"
        "r = g.get_reader()\n"
        "print(r.kind)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "host"


def test_fixtures_are_valid_json_with_process_trees():
    for p in FIX.glob("*.json"):
        data = json.loads(p.read_text())
        pids = {pr["pid"] for d in data["devices"] for pr in d["compute_processes"]}
        tree_pids = {c for kids in data["process_tree"].values() for c in kids}
        assert pids <= tree_pids, p.name
