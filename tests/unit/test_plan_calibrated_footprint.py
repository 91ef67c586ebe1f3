"""Issue 6: a calibration reproduces the measured available KV exactly AND its measured footprint
moves the free memory the next model finds at its start."""

from __future__ import annotations

import pytest

from residency.calibrate import store
from residency.calibrate.record import Launch
from residency.planner.plan import plan_stack
from residency.spec import parse_spec


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(store.ENV, raising=False)


def _spec(tmp_path, version: str):
    return parse_spec(
        {
            "vllm_version": version,
            "device": {"preset": "h100-80gb"},
            "calibration_file": str(tmp_path / "cal.json"),
            "models": [
                {
                    "name": "llama",
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "gpu_memory_utilization": 0.4,
                    "max_model_len": 8192,
                    "max_num_seqs": 64,
                    "max_num_batched_tokens": 2048,
                },
                {
                    "name": "qwen",
                    "model": "Qwen/Qwen2.5-7B-Instruct",
                    "gpu_memory_utilization": 0.4,
                    "max_model_len": 8192,
                    "max_num_seqs": 64,
                    "max_num_batched_tokens": 2048,
                },
            ],
        }
    )


def _record(spec, **figures) -> None:
    m = spec.models[0]
    key = store.key_for_model(m, spec.vllm_version, "NVIDIA H100 80GB HBM3")
    launch = Launch(
        vllm_version=spec.vllm_version,
        model=m.model,
        gpu_memory_utilization=0.4,
        total_gib=79.19,
        weights_gib=14.99,
        **figures,
    )
    store.record(launch, key, spec.calibration_file, source="llama.log")


def test_graphs_outside_the_budget_measured_move_the_next_models_free_memory(tmp_path):
    # 0.19.1: the graph estimate is computed but not subtracted (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0),
    # so the captured pool ("Graph capturing finished ... took X GiB") sits outside the budget:
    # footprint = context + requested + graphs.
    spec = _spec(tmp_path, "0.19.1")
    before = plan_stack(spec)
    est = before.model("llama").cudagraph_gib
    assert not before.model("llama").calibrated
    measured = round(est + 0.75, 2)  # the box captured 0.75 GiB more than the estimate
    _record(spec, kv_cache_gib=15.23, cudagraph_gib=measured)
    after = plan_stack(spec)
    llama, qwen = after.model("llama"), after.model("qwen")
    assert llama.calibrated and llama.kv_cache_gib == pytest.approx(15.23, abs=0.001)
    assert llama.cudagraph_gib == pytest.approx(measured, abs=0.001)
    # the first footprint grows by measured - estimate, so the second finds exactly that much less free
    delta = measured - est
    assert llama.footprint_gib - before.model("llama").footprint_gib == pytest.approx(delta, abs=0.002)
    assert before.model("qwen").free_at_start_gib - qwen.free_at_start_gib == pytest.approx(delta, abs=0.002)
    assert not qwen.calibrated
    assert "CUDA graphs" in llama.notes[0]


def test_graphs_inside_the_budget_actual_minus_estimate_moves_the_next_models_free_memory(tmp_path):
    # >= 0.20: the budget reserves the estimate E; the pool captured is A ("CUDA graph pool memory:
    # A GiB (actual), E GiB (estimated)"). footprint = context + requested + (A - E).
    # Here A = 1.20, E = 0.90: the first process holds 0.30 GiB more than its request.
    spec = _spec(tmp_path, "0.20.2")
    before = plan_stack(spec)
    _record(spec, kv_cache_gib=14.5, cudagraph_gib=1.20, cudagraph_estimate_gib=0.90)
    after = plan_stack(spec)
    assert after.model("llama").kv_cache_gib == pytest.approx(14.5, abs=0.001)
    # uncalibrated in-budget footprint = context + requested; calibrated adds A - E = 0.30
    assert after.model("llama").footprint_gib - before.model("llama").footprint_gib == pytest.approx(
        0.30, abs=0.002
    )
    drop = before.model("qwen").free_at_start_gib - after.model("qwen").free_at_start_gib
    assert drop == pytest.approx(0.30, abs=0.002)
