"""`up` on unified memory: page-cache drop and the wait for free memory before each engine (runtime/memwait.py).

Declared fakes: /proc/meminfo is a sequence of fake texts (memory coming back after an engine stopped), the
clock and sleep are fake (no real waiting), and the page-cache dropper is a recorder: the real
/proc/sys/vm/drop_caches is never written by tests.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from residency.errors import UpFailed
from residency.memory.live import MeminfoSource
from residency.runtime.memwait import DROP_COMMAND, UnifiedGate


def meminfo_texts(avail_gib: list[float]):
    """A fake /proc/meminfo whose MemAvailable walks through `avail_gib`, one value per read (last one sticks)."""
    seq = list(avail_gib)

    def read() -> str:
        v = seq.pop(0) if len(seq) > 1 else seq[0]
        return f"MemTotal: {int(121.69 * 2**20)} kB\nMemFree: {2**20} kB\nMemAvailable: {int(v * 2**20)} kB\n"

    return read


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def gate(avail: list[float], *, root: bool, drop: bool = True, timeout: float = 60.0):
    clock = FakeClock()
    drops: list[int] = []
    g = UnifiedGate(
        MeminfoSource("MemAvailable", reader=meminfo_texts(avail)),
        drop_caches=drop,
        timeout_s=timeout,
        poll_s=5.0,
        is_root=lambda: root,
        dropper=lambda: drops.append(1),
        sleep=clock.sleep,
        clock=clock,
    )
    return g, drops, clock


def console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=300), buf


def test_root_drops_caches_then_starts_when_free_covers_the_need():
    g, drops, clock = gate([100.0], root=True)
    con, out = console()
    assert g.before_start("heavy", 86.0, "fast", con) == pytest.approx(100.0)
    assert drops == [1] and clock.t == 0
    assert "dropped the page cache" in out.getvalue()
    assert "free 100.00 GiB (MemAvailable (/proc/meminfo), as vLLM reads it)" in out.getvalue()


def test_not_root_prints_the_command_once_and_drops_nothing():
    g, drops, _ = gate([100.0], root=False)
    con, out = console()
    g.before_start("fast", 20.0, "none", con)
    g.before_start("heavy", 20.0, "fast", con)
    assert drops == [] and out.getvalue().count(DROP_COMMAND) == 1


def test_no_drop_caches_opts_out():
    g, drops, _ = gate([100.0], root=True, drop=False)
    con, out = console()
    g.before_start("heavy", 20.0, "none", con)
    assert drops == [] and "page cache" not in out.getvalue()


def test_waits_for_memory_of_a_stopped_engine_to_come_back():
    # an engine was just stopped: MemAvailable climbs 60 -> 80 -> 99 GiB over the polls
    g, _, clock = gate([60.0, 80.0, 99.0], root=True)
    con, out = console()
    assert g.before_start("heavy", 90.0, "fast", con) == pytest.approx(99.0)
    assert clock.t == 10.0  # two polls of 5 s
    assert "waiting up to 60s" in out.getvalue()


def test_timeout_is_a_clear_failure_with_exit_1():
    g, _, clock = gate([60.0], root=False, timeout=30.0)
    con, _ = console()
    with pytest.raises(UpFailed) as e:
        g.before_start("heavy", 90.0, "fast", con)
    assert e.value.exit_code == 1 and clock.t >= 30.0
    msg = str(e.value)
    assert msg.startswith(
        "heavy not started: [free_memory] free memory 60.00 GiB (MemAvailable (/proc/meminfo)"
    )
    assert "90.00 GiB" in msg and "Running from this stack: fast" in msg and DROP_COMMAND in msg


def test_up_uses_the_gate_on_unified_gpus_only_with_the_versions_free_field():
    from residency.commands.up import unified_gate
    from residency.planner.plan import plan_stack
    from residency.spec import parse_spec

    def spec(dev: dict, version: str = "0.33.0"):
        return parse_spec(
            {
                "vllm_version": version,
                "device": dev,
                "models": [
                    {"name": "m", "model": "Qwen/Qwen3-4B-Instruct-2507", "gpu_memory_utilization": 0.3}
                ],
            }
        )

    s = spec({"preset": "dgx-spark"})
    g = unified_gate(s, plan_stack(s, use_calibration=False), False, drop=True, wait_s=5)
    assert g is not None and g.source.name == "MemAvailable (/proc/meminfo)" and g.timeout_s == 5
    old = spec({"preset": "dgx-spark"}, "0.11.0")
    assert (
        unified_gate(old, plan_stack(old, use_calibration=False), False, drop=True, wait_s=5).source.field
        == "MemFree"
    )
    h = spec({"preset": "h100-80gb"})
    assert unified_gate(h, plan_stack(h, use_calibration=False), False, drop=True, wait_s=5) is None
    cpu = spec({"name": "cpu", "total_gib": 20, "unified": True})
    assert unified_gate(cpu, plan_stack(cpu, use_calibration=False), True, drop=True, wait_s=5) is None


def test_bringup_checks_through_the_gate_before_each_engine(tmp_path):
    from types import SimpleNamespace

    from residency.planner.plan import plan_stack
    from residency.runtime.bringup import UpOptions, _check_free_memory
    from residency.spec import load_spec

    example = Path(__file__).resolve().parents[2] / "examples" / "dgx-spark-qwen3.yaml"
    plan = plan_stack(load_spec(example), use_calibration=False)
    heavy = plan.model("heavy")
    g, drops, _ = gate([heavy.footprint_gib - 1, heavy.footprint_gib + 1], root=True)
    con, out = console()
    m = SimpleNamespace(key="heavy", plan=heavy)
    _check_free_memory(m, plan, UpOptions(unified_gate=g), con, SimpleNamespace(entries=[]), tmp_path)
    assert drops == [1] and "waiting up to" in out.getvalue()


def test_root_without_a_writable_drop_caches_says_so_and_still_waits():
    """Root inside a container or user namespace: /proc/sys is read-only; the start goes on, no traceback."""
    g, _, _ = gate([100.0], root=True)

    def read_only() -> None:
        raise OSError(30, "Read-only file system")

    g.dropper = read_only
    con, out = console()
    assert g.before_start("heavy", 86.0, "fast", con) == pytest.approx(100.0)
    text = out.getvalue()
    assert "page cache not dropped" in text and "Read-only file system" in text and DROP_COMMAND in text
    assert "dropped the page cache (" not in text
