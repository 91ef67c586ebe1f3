"""calibrate -> plan: a stored calibration makes the plan reproduce the measured available KV exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from residency.calibrate import store
from residency.calibrate.logparse import parse_log
from residency.spec import parse_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(store.ENV, raising=False)


def test_plan_reproduces_calibrated_kv(tmp_path):
    from residency.planner.plan import plan_stack

    # r053: Llama-3.1-8B on a unified-memory Thor-class box, 0.10.2, enforce_eager, utilization 0.85:
    # "Available KV cache memory: 85.79 GiB". The log states no total: the jetson-thor preset's 122.81.
    spec = parse_spec(
        {
            "vllm_version": "0.10.2",
            "device": {"preset": "jetson-thor"},
            "calibration_file": str(tmp_path / "cal.json"),
            "models": [
                {
                    "name": "llama",
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "gpu_memory_utilization": 0.85,
                    "enforce_eager": True,
                }
            ],
        }
    )
    before = plan_stack(spec).model("llama")
    assert not before.calibrated
    (launch,) = parse_log((FIXTURES / "v1-0.10.2-llama-thor-ok.log").read_text())
    cal = store.record_launch(launch, spec=spec, path=spec.calibration_file, source="thor.log")
    # non_kv = 0.85 x 122.81 - 85.79 = 104.3885 - 85.79 = 18.5985 GiB
    assert cal.non_kv_gib == pytest.approx(18.5985)
    after = plan_stack(spec).model("llama")
    assert after.calibrated
    assert after.kv_cache_gib == pytest.approx(85.79, abs=0.005)
    assert plan_stack(spec, use_calibration=False).model("llama").calibrated is False
