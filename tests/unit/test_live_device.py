"""`plan --live` on a machine whose device is not the spec's: say which device was read and refuse (exit 2),
instead of a plan labelled with the spec's device and this machine's figures.

No GPU here: the CUDA runtime is a declared fake of cuda-bindings' runtime module (calls return
(error, values...)); /proc/meminfo is a fake text with known figures."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from residency.memory.live import HOST_RAM, MeminfoSource, live_mismatch, read_live
from residency.memory.versions import rules_for

GiB = 2**30
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dgx-spark-qwen3.yaml"


def _meminfo(total_gib: float, avail_gib: float) -> MeminfoSource:
    text = f"MemTotal: {int(total_gib * 2**20)} kB\nMemFree: {int(avail_gib * 2**20)} kB\nMemAvailable: {int(avail_gib * 2**20)} kB\n"
    return MeminfoSource("MemAvailable", reader=lambda: text)


class FakeCuda:
    """Declared fake of cuda-bindings' runtime: cudaSetDevice, cudaMemGetInfo, cudaGetDeviceProperties."""

    def __init__(self, free: float, total: float, name: bytes | None, integrated: int = 0):
        self.free, self.total = int(free * GiB), int(total * GiB)
        self.prop = SimpleNamespace(name=name + b"\0\0\0", integrated=integrated) if name else None

    def cudaSetDevice(self, i):  # noqa: N802
        return (0,)

    def cudaMemGetInfo(self):  # noqa: N802
        return (0, self.free, self.total)

    def cudaGetDeviceProperties(self, i):  # noqa: N802
        if self.prop is None:
            raise AttributeError("an older binding")
        return (0, self.prop)


SPARK = {"name": "NVIDIA GB10", "total_gib": 119.67, "unified": True, "cpu": False}
H100 = {"name": "NVIDIA H100 80GB HBM3", "total_gib": 79.19, "unified": False, "cpu": False}


def test_the_reading_names_the_device_read():
    r, _ = read_live(
        True, rules_for("0.33.0"), cuda=FakeCuda(60, 121.69, b"NVIDIA GB10", 1), meminfo=_meminfo(121, 110)
    )
    assert r.device == "CUDA device 0 (NVIDIA GB10)" and r.integrated is True
    r, _ = read_live(True, rules_for("0.33.0"), use_cuda=False, meminfo=_meminfo(23.5, 20))
    assert r.device == HOST_RAM and r.integrated is None
    r, _ = read_live(False, rules_for("0.33.0"), cuda=FakeCuda(70, 79.19, None))
    assert r.device == "CUDA device 0 (name unknown)" and r.integrated is None


def test_the_spark_itself_matches():
    r, _ = read_live(
        True, rules_for("0.33.0"), cuda=FakeCuda(60, 121.69, b"NVIDIA GB10", 1), meminfo=_meminfo(121, 110)
    )
    assert live_mismatch(r, **SPARK) is None  # 121.69 vs the preset's 119.67: 1.7 %
    r, _ = read_live(True, rules_for("0.33.0"), use_cuda=False, meminfo=_meminfo(121.69, 110))
    assert live_mismatch(r, **SPARK) is None  # no cuda-bindings on the Spark: MemTotal stands in


def test_a_small_host_is_not_a_spark():
    r, _ = read_live(True, rules_for("0.33.0"), use_cuda=False, meminfo=_meminfo(23.54, 20))
    why = live_mismatch(r, **SPARK)
    assert why == (
        "read this host's RAM (no CUDA device read): 23.54 GiB total, but the spec's device NVIDIA GB10 has 119.67 GiB"
    )


def test_a_discrete_card_is_not_a_unified_spec_and_the_reverse():
    r, _ = read_live(
        True,
        rules_for("0.33.0"),
        cuda=FakeCuda(20, 23.5, b"NVIDIA GeForce RTX 4090"),
        meminfo=_meminfo(64, 50),
    )
    why = live_mismatch(r, **SPARK)
    assert "NVIDIA GeForce RTX 4090" in why and "a discrete GPU" in why and "is unified" in why
    r, _ = read_live(False, rules_for("0.33.0"), cuda=FakeCuda(60, 79.5, b"NVIDIA GB10", 1))
    assert "an integrated (unified-memory) GPU" in live_mismatch(r, **H100)


def test_an_h100_94_is_not_an_h100_80():
    r, _ = read_live(False, rules_for("0.33.0"), cuda=FakeCuda(90, 93.1, b"NVIDIA H100 NVL"))
    assert "93.10 GiB total" in live_mismatch(r, **H100)
    r, _ = read_live(False, rules_for("0.33.0"), cuda=FakeCuda(70, 79.19, b"NVIDIA H100 80GB HBM3"))
    assert live_mismatch(r, **H100) is None


def test_a_cpu_device_is_this_host():
    r, _ = read_live(True, rules_for("0.33.0"), use_cuda=False, meminfo=_meminfo(23.54, 20))
    assert live_mismatch(r, name="cpu", total_gib=64.0, unified=True, cpu=True) is None


def test_plan_live_refuses_in_one_line_and_labels_a_match(monkeypatch, capsys):
    import residency.memory.live as live
    from residency.cli import main

    real = live.read_live
    small = lambda unified, rules, **kw: real(unified, rules, use_cuda=False, meminfo=_meminfo(23.54, 20))  # noqa: E731
    monkeypatch.setattr(live, "read_live", small)
    with pytest.raises(SystemExit) as ei:
        main(["plan", str(EXAMPLE), "--no-calibration", "--live"])
    assert ei.value.code == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert len(err.splitlines()) == 1 and cap.out == ""
    assert "this host's RAM (no CUDA device read)" in err and "NVIDIA GB10 has 119.67 GiB" in err
    spark = FakeCuda(60, 121.69, b"NVIDIA GB10", 1)
    monkeypatch.setattr(
        live, "read_live", lambda u, rules, **kw: real(u, rules, cuda=spark, meminfo=_meminfo(121, 110))
    )
    with pytest.raises(SystemExit):
        main(["plan", str(EXAMPLE), "--no-calibration", "--live"])
    out = capsys.readouterr().out
    assert out.startswith("live reading of CUDA device 0 (NVIDIA GB10): total from cudaMemGetInfo")
    assert "NVIDIA GB10 x1: 121.69 GiB unified" in out
