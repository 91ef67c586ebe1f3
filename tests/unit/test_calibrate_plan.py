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


def _thor_llama(tmp_path: Path):
    """r053's launch as a spec: Llama-3.1-8B on a Jetson Thor, 0.10.2, enforce_eager, utilization 0.85."""
    return parse_spec(
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


def test_plan_reproduces_calibrated_kv(tmp_path):
    from residency.planner.plan import plan_stack

    # r053: Llama-3.1-8B on a unified-memory Thor-class box, 0.10.2, enforce_eager, utilization 0.85:
    # "Available KV cache memory: 85.79 GiB". The log states no total: the jetson-thor preset's 122.81.
    spec = _thor_llama(tmp_path)
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


def test_calibrated_plan_predicts_the_logged_token_count(tmp_path):
    """The expected figures come from the log's own lines, not from the stored calibration value.

    r053's log states "Available KV cache memory: 85.79 GiB" (what calibration stores), and separately
    "GPU KV cache size: 702,800 tokens" and "num_gpu_blocks is: 43925", which vLLM derived from the
    unrounded bytes: the calibrated plan must turn its KV bytes into the same blocks and tokens.
    """
    from residency.planner.plan import plan_stack

    spec = _thor_llama(tmp_path)
    (launch,) = parse_log((FIXTURES / "v1-0.10.2-llama-thor-ok.log").read_text())
    store.record_launch(launch, spec=spec, path=spec.calibration_file, source="thor.log")
    m = plan_stack(spec).model("llama")
    assert m.calibrated
    # Llama-3.1-8B: 32 layers x 2 (K, V) x 8 KV heads x 128 x 2 B = 131,072 B per token, 2 MiB per
    # 16-token block. 85.79 GiB is rounded to 2 decimals (+-0.005 GiB = +-2.56 blocks), so the plan
    # may miss the logged 43,925 blocks by at most 2 blocks (32 tokens) and no more.
    assert abs(m.kv_cache_tokens - 702_800) <= 32, m.kv_cache_tokens
    assert m.kv_cache_tokens % 16 == 0
    # "Maximum concurrency for 131,072 tokens per request: 5.36x" (702,800 / 131,072 = 5.362)
    assert round(m.max_concurrency, 2) == 5.36


@pytest.mark.parametrize("start", ["cold", "warm"])
def test_unified_calibration_reproduces_its_start_and_predicts_the_other(tmp_path, start):
    """r053 (Thor, unified memory) calibrated as a launch of the spec's start: that start's KV is the logged
    85.79 GiB exactly; the other start differs by the checkpoint's page cache (all of it on 0.10.2, whose free
    reading is MemFree: memory/unified.py)."""
    from residency.planner.plan import plan_stack

    spec = _thor_llama(tmp_path)
    spec.device.start = start
    (launch,) = parse_log((FIXTURES / "v1-0.10.2-llama-thor-ok.log").read_text())
    store.record_launch(launch, spec=spec, path=spec.calibration_file, source="thor.log")
    m = plan_stack(spec).model("llama")
    assert m.calibrated and m.kv_cache_gib == pytest.approx(85.79, abs=0.005)
    weights = 14.9889  # the log's "Model loading took 14.9889 GiB"
    assert m.kv_cache_gib_warm - m.kv_cache_gib_cold == pytest.approx(weights, abs=0.01)
