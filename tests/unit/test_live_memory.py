"""Live total/free reading (memory/live.py), box learning (calibrate/boxes.py) and `plan --live`.

This machine has no GPU and no CUDA: the CUDA runtime is a declared fake module (FakeCuda, the shape of
cuda-bindings' `cuda.bindings.runtime`: calls return (error, values...)), and /proc/meminfo is a fake text
(MEMINFO) so the figures are known. The real /proc/meminfo is read once, only to check it parses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from residency.memory.live import MeminfoSource, free_field, parse_meminfo, read_live
from residency.memory.versions import rules_for

GiB = 2**30
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "dgx-spark-qwen3.yaml"

# a GB10-like box: MemTotal 121.69 GiB... (kB), MemFree 60 GiB, MemAvailable 110 GiB
MEMINFO = (
    f"MemTotal:       {int(121.69 * 2**20)} kB\n"
    f"MemFree:        {60 * 2**20} kB\n"
    f"MemAvailable:   {110 * 2**20} kB\n"
    "Buffers:          123456 kB\n"
    "HugePages_Total:       0\n"
)


class FakeCuda:
    """Declared fake of cuda-bindings' runtime module: cudaSetDevice -> (err,), cudaMemGetInfo -> (err, free, total)."""

    def __init__(self, free: float, total: float, err: int = 0):
        self.free, self.total, self.err = int(free * GiB), int(total * GiB), err

    def cudaSetDevice(self, i):  # noqa: N802 - the CUDA name
        return (self.err,)

    def cudaMemGetInfo(self):  # noqa: N802
        return (self.err, self.free, self.total)


def meminfo(text: str = MEMINFO, field: str = "MemAvailable") -> MeminfoSource:
    return MeminfoSource(field, reader=lambda: text)


def test_parse_meminfo_in_bytes():
    info = parse_meminfo(MEMINFO)
    assert info["MemAvailable"] == 110 * GiB and info["HugePages_Total"] == 0


def test_the_free_field_follows_the_vllm_version():
    assert free_field(rules_for("0.11.0")) == "MemFree"
    assert free_field(rules_for("0.11.1")) == "MemAvailable"


def test_unified_total_from_cuda_free_from_memavailable():
    r, why = read_live(True, rules_for("0.33.0"), cuda=FakeCuda(free=60, total=121.69), meminfo=meminfo())
    assert r is not None and why == ""
    assert r.total_gib == pytest.approx(121.69) and r.free_gib == pytest.approx(110)
    assert "cudaMemGetInfo" in r.source and "MemAvailable (/proc/meminfo)" in r.source


def test_unified_without_cuda_says_memtotal_is_a_stand_in():
    r, _ = read_live(True, rules_for("0.11.0"), use_cuda=False, meminfo=meminfo(field="MemFree"))
    assert r is not None and r.free_gib == pytest.approx(60)
    assert "MemTotal" in r.total_source and "CUDA's total differs" in r.total_source


def test_cuda_error_falls_back_and_says_why():
    r, _ = read_live(True, rules_for("0.33.0"), cuda=FakeCuda(1, 2, err=100), meminfo=meminfo())
    assert r is not None and "cudaMemGetInfo failed" in r.total_source


def test_discrete_needs_cuda():
    r, why = read_live(False, rules_for("0.33.0"), use_cuda=False)
    assert r is None and "cuda-bindings is not installed" in why
    r, _ = read_live(False, rules_for("0.33.0"), cuda=FakeCuda(free=70, total=79.19))
    assert r is not None and r.free_gib == pytest.approx(70) and r.source == "cudaMemGetInfo (cuda-bindings)"


def test_real_proc_meminfo_parses():
    total, free = MeminfoSource("MemAvailable").read()
    assert total and 0 < free <= total


def test_plan_live_uses_the_reading_and_says_so(monkeypatch, capsys):
    import residency.memory.live as live
    from residency.cli import main

    real = live.read_live
    monkeypatch.setattr(
        live,
        "read_live",
        lambda unified, rules, **kw: real(unified, rules, cuda=FakeCuda(60, 121.69), meminfo=meminfo()),
    )
    with pytest.raises(SystemExit):
        main(["plan", str(EXAMPLE), "--no-calibration", "--explain"])
    out = capsys.readouterr().out
    assert "live reading" not in out  # no --live: no reading
    with pytest.raises(SystemExit):
        main(["plan", str(EXAMPLE), "--no-calibration", "--live"])
    out = capsys.readouterr().out
    assert out.startswith("live reading of CUDA device 0 (name unknown): total from cudaMemGetInfo (cuda-bindings), free")
    assert "121.69 GiB unified" in out and "11.69 GiB used before the stack" in out


def test_calibrate_learns_the_box_and_later_plans_use_it(tmp_path, capsys):
    """A failed Spark start (its 'Free memory on device (F/T GiB)' line) teaches the box's total and free."""
    from residency.cli import main
    from residency.planner.plan import plan_stack
    from residency.spec import load_spec

    log = tmp_path / "spark.log"
    log.write_text(
        "INFO 01-01 00:00:00 [__init__.py:1] vLLM version 0.20.2\n"
        "ValueError: Free memory on device cuda:0 (99.33/121.69 GiB) on startup is less than desired GPU memory "
        "utilization (0.87, 105.87 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.\n"
    )
    cal = tmp_path / "cal.json"
    with pytest.raises(SystemExit) as e:
        main(["calibrate", str(log), "--device", "dgx-spark", "--file", str(cal)])
    out = capsys.readouterr().out
    assert e.value.code == 0, out
    assert "box NVIDIA GB10: total 121.69 GiB, idle free 99.33 GiB" in out
    spec = load_spec(EXAMPLE).model_copy(update={"calibration_file": str(cal)})
    p = plan_stack(spec)
    assert p.device.total_gib == 121.69 and "calibration of this box" in p.device.total_source
    assert any("from the calibration of this box" in w for w in p.warnings)
    assert plan_stack(spec, use_calibration=False).device.total_gib == 119.67
    # a larger free figure from a later log raises the idle figure; a smaller one does not lower it
    from residency.calibrate.boxes import find_box, learn_box

    learn_box("NVIDIA GB10", 121.69, 111.0, "later.log", str(cal))
    learn_box("NVIDIA GB10", 121.69, 90.0, "busy.log", str(cal))
    assert find_box("NVIDIA GB10", str(cal)).idle_free_gib == 111.0


def test_up_learns_the_box_from_each_launch_log(tmp_path):
    """`up` records the logged total and free at start of every launch on a unified GPU (here a failed one)."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from residency.calibrate.boxes import find_box
    from residency.calibrate.logparse import parse_log
    from residency.planner.plan import plan_stack
    from residency.runtime.bringup import _record_calibration
    from residency.spec import load_spec

    (launch,) = parse_log(
        "ValueError: Free memory on device cuda:0 (110.37/121.69 GiB) on startup is less than desired GPU memory "
        "utilization (0.95, 115.61 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.\n"
    )
    spec = load_spec(EXAMPLE).model_copy(update={"calibration_file": str(tmp_path / "cal.json")})
    plan = plan_stack(spec, use_calibration=False)
    m = SimpleNamespace(key="heavy", spec=spec.models[1])
    _record_calibration(spec, plan, m, launch, "heavy.log", Console(file=io.StringIO()))
    box = find_box("NVIDIA GB10", spec.calibration_file)
    assert box is not None and (box.total_gib, box.idle_free_gib, box.source) == (121.69, 110.37, "heavy.log")
