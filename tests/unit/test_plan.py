"""plan_stack: co-residency, verdicts, the smallest fix, defaults; the DGX Spark story (issue 2)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from residency.planner.plan import plan_stack
from residency.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "dgx-spark-qwen3.yaml"
FOUR_B = "Qwen/Qwen3-4B-Instruct-2507"
NEXT = "Qwen/Qwen3-Next-80B-A3B-Instruct-FP8"


def story(version="0.33.0", u=0.80, L=32768, seqs=2, **heavy) -> dict:
    """The mechanics of the story on a warm, described box (total as logged, no host reserve); the story as the
    user lived it (cold first launch) is tests/unit/test_spark_story.py."""
    return {
        "vllm_version": version,
        "device": {
            "preset": "dgx-spark",
            "total_gib": 119.67,
            "used_gib": 5.0,
            "start": "warm",
            "host_reserve_gib": 0,
        },
        "models": [
            {
                "name": "fast",
                "model": FOUR_B,
                "gpu_memory_utilization": 0.12,
                "max_model_len": 32768,
                "max_num_seqs": 8,
                "max_num_batched_tokens": 2048,
            },
            {
                "name": "heavy",
                "model": NEXT,
                "gpu_memory_utilization": u,
                "max_model_len": L,
                "max_num_seqs": seqs,
                **heavy,
            },
        ],
    }


def plan(d: dict, **kw):
    return plan_stack(parse_spec(copy.deepcopy(d)), use_calibration=kw.pop("use_calibration", False))


@pytest.mark.parametrize("version", ["0.33.0", "0.11.1", "0.20.2"])
def test_story_4b_resident_footprint_about_16_gib(version):
    p = plan(story(version))
    fast = p.model("fast")
    assert fast.verdict == "ok"
    # ctx 0.55 + UMA frontend 1.2 + ceil(0.12 x 119.67) = 14.36 (+ graphs outside before 0.20)
    assert 15.5 <= fast.footprint_gib <= 16.8
    assert p.model("heavy").free_at_start_gib == pytest.approx(119.67 - 5.0 - fast.footprint_gib, abs=0.01)


@pytest.mark.parametrize("version", ["0.33.0", "0.11.1"])
def test_story_085_fails_free_memory_check(version):
    p = plan(story(version, u=0.85))
    h = p.model("heavy")
    assert h.verdict == "fail" and h.error.kind == "free_memory"
    assert "(0.85, 101.72 GiB)" in h.error.message  # 0.85 x 119.67 = 101.72
    assert h.error.message.startswith("Free memory on device")
    assert "lower gpu_memory_utilization to 0.8" in h.error.fix
    assert not p.fits


@pytest.mark.parametrize("version", ["0.33.0", "0.11.1"])
def test_story_080_loads_with_kv_from_20_8_minus_overheads(version):
    p = plan(story(version))
    h = p.model("heavy")
    assert h.verdict == "ok" and p.fits
    # 0.80 x 119.67 = 95.74 GiB; minus ~74.98 GiB of FP8 weights (MTP head not loaded) = 20.76 GiB before
    # activation, non-torch, graphs (inside from 0.20) and the unified-memory host overhead
    before = h.requested_gib - h.weights_gib
    assert before == pytest.approx(20.8, abs=0.1)
    others = h.activation_gib + h.non_torch_gib + (h.cudagraph_gib if h.cudagraph_in_budget else 0)
    assert h.kv_cache_gib == pytest.approx(before - others, abs=0.01)
    assert 10 < h.kv_cache_gib < 20.8
    assert h.block_size in (544, 576)  # 576 on 0.33 (FlashInfer GDN prefill, align mode), 544 before
    assert h.max_concurrency >= 2


def test_story_075_65536_4_fails_when_started_with_the_4b():
    """Another way to the story's "No available memory for the cache blocks" at 0.75 / 65536 / 4 (the user's
    was a cold start: test_spark_story.py).

    Started one after the other on a warm box the 80B loads at 0.75 with 0.05 x 119.67 = 5.98 GiB less KV than
    at 0.80. Starting both engines together fails: the 80B's baseline snapshot sees only the
    4B's CUDA context, and the 4B's weights, KV pool and graphs (its whole requested 14.36 GiB) land in the
    80B's profiling window and are charged to it (vllm-memory.md §3.4): ~9.3 - 14.4 GiB < 0.
    """
    d = story(u=0.75, L=65536, seqs=4)
    seq = plan(d).model("heavy")
    at080 = plan(story()).model("heavy")
    assert seq.verdict == "ok"
    assert at080.kv_cache_gib - seq.kv_cache_gib == pytest.approx(5.98, abs=0.1)
    p = plan_stack(parse_spec(copy.deepcopy(d)), use_calibration=False, start_together=True)
    h = p.model("heavy")
    assert h.verdict == "fail" and h.error.kind == "no_cache_blocks"
    assert h.error.message.startswith("No available memory for the cache blocks.")
    assert "init engine" in h.error.fix
    # the free check passes in that case: only the 4B's context existed at the 80B's snapshot
    assert h.free_at_start_gib > 101.72
    # started together, 0.80 loses the 4B's whole requested 14.36 GiB (0.12 x 119.67) to the 80B's profile
    tog080 = plan_stack(parse_spec(story()), use_calibration=False, start_together=True).model("heavy")
    assert at080.kv_cache_gib - tog080.kv_cache_gib == pytest.approx(14.36, abs=0.02)


def test_story_solver_fits_within_095():
    d = story()
    for m in d["models"]:
        del m["gpu_memory_utilization"]
    # 8 x 32,768 tokens for the 4B alone would need ~0.39; ask for 2 requests at max_model_len instead
    d["models"][0]["min_concurrency"] = 2
    p = plan(d)
    assert p.fits, p.solver
    assert p.utilization_sum <= 0.95 + 1e-9
    assert p.model("fast").max_concurrency >= 2 and p.model("heavy").max_concurrency >= 2
    for m in p.models:
        assert m.chosen_by_solver
        assert round(m.gpu_memory_utilization * 100) == pytest.approx(m.gpu_memory_utilization * 100)
        assert m.kv_cache_memory_bytes and m.kv_cache_memory_bytes > 0  # offered on >= 0.10.2


def test_example_file_fits():
    p = plan_stack(load_spec(EXAMPLE), use_calibration=False)
    assert p.fits and p.launch_order == ["fast", "heavy"]
    assert p.utilization_sum <= 0.95


def test_max_seq_len_fix_is_smallest_and_works():
    d = {
        "vllm_version": "0.33.0",
        "device": {"preset": "h100-80gb"},
        "models": [
            {
                "name": "a",
                "model": FOUR_B,
                "gpu_memory_utilization": 0.17,
                "max_model_len": 65536,
                "max_num_seqs": 4,
            }
        ],
    }
    p = plan(d)
    m = p.model("a")
    assert m.error.kind == "max_seq_len"
    assert m.error.message.startswith("To serve at least one request with the model's max seq len (65536)")
    import re

    mm = re.search(r"lower max_model_len to (\d+), or raise gpu_memory_utilization to ([\d.]+)", m.error.fix)
    assert mm, m.error.fix
    L, u = int(mm.group(1)), float(mm.group(2))
    assert L % 1024 == 0
    d1 = copy.deepcopy(d)
    d1["models"][0]["max_model_len"] = L
    assert plan(d1).fits
    d2 = copy.deepcopy(d)
    d2["models"][0]["gpu_memory_utilization"] = u
    assert plan(d2).fits
    d3 = copy.deepcopy(d)
    d3["models"][0]["gpu_memory_utilization"] = round(u - 0.01, 2)  # smallest: one step less fails
    assert not plan(d3).fits


def test_no_cache_blocks_fix_raises_fraction():
    d = {
        "vllm_version": "0.33.0",
        "device": {"preset": "h100-80gb"},
        "models": [{"name": "a", "model": FOUR_B, "gpu_memory_utilization": 0.08, "max_model_len": 8192}],
    }
    m = plan(d).model("a")
    assert m.error.kind == "no_cache_blocks"
    assert "raise gpu_memory_utilization to" in m.error.fix


def test_defaults_by_tier_and_version():
    def defaults(version, preset, **dev):
        d = {
            "vllm_version": version,
            "device": {"preset": preset, **dev},
            "models": [{"name": "a", "model": FOUR_B, "gpu_memory_utilization": 0.5}],
        }
        m = plan(d).model("a")
        return m.max_num_batched_tokens, m.max_num_seqs, m.max_model_len

    assert defaults("0.33.0", "h100-80gb") == (8192, 1024, 262144)  # large tier; max_position_embeddings
    assert defaults("0.32.0", "dgx-spark") == (2048, 256, 262144)  # NVML memory N/A -> small tier
    assert defaults("0.32.0", "dgx-spark", nvml_memory=True) == (8192, 1024, 262144)
    assert defaults("0.33.0", "dgx-spark", nvml_memory=True) == (2048, 256, 262144)  # 0.33: GB10 forced small
    assert defaults("0.33.0", "a100-80gb")[:2] == (2048, 256)  # "a100" in the name
    assert defaults("0.28.0", "b200")[:2] == (16384, 1024)  # >= 160 GiB tier from 0.28
    assert defaults("0.27.0", "b200")[:2] == (8192, 1024)


def test_page_cache_warning_on_old_uma():
    p = plan(story("0.11.0"))
    assert any("page cache" in w for w in p.warnings)
    assert not any("page cache" in w for w in plan(story("0.11.1")).warnings)


def test_calibration_reproduces_kv_and_moves_free(monkeypatch):
    from residency.calibrate import store
    from residency.calibrate.record import Calibration, CalibrationKey, Launch

    base = plan(story())
    measured_kv = 12.34
    cal = Calibration(
        key=CalibrationKey(model=NEXT, vllm_version="0.33.0", device="NVIDIA GB10"),
        launch=Launch(
            gpu_memory_utilization=0.80,
            total_gib=119.67,
            kv_cache_gib=measured_kv,
            weights_gib=75.1,
            cudagraph_gib=0.2,
        ),
        source="heavy.log",
    )
    monkeypatch.setattr(store, "find_calibration", lambda key, path=None: cal if key.model == NEXT else None)
    p = plan(story(), use_calibration=True)
    h = p.model("heavy")
    assert h.calibrated and any("calibrated" in n for n in h.notes)
    # non_kv = 0.80 x 119.67 - 12.34; the plan at the same fraction gives the measured KV exactly
    # (up to ceil() of the requested bytes)
    assert h.kv_cache_gib == pytest.approx(measured_kv, abs=0.001)
    assert not p.model("fast").calibrated
    assert base.model("heavy").kv_cache_gib != pytest.approx(measured_kv, abs=0.1)


def test_free_memory_of_later_models_follows_earlier_footprints():
    d = story()
    d["models"].append(
        {"name": "third", "model": FOUR_B, "gpu_memory_utilization": 0.02, "max_model_len": 4096}
    )
    p = plan(d)
    f, h, t = p.models
    assert t.free_at_start_gib == pytest.approx(119.67 - 5 - f.footprint_gib - h.footprint_gib, abs=0.01)


@pytest.mark.parametrize("example", ["h100.yaml", "dgx-spark-qwen3.yaml"])
def test_together_predicts_the_planned_fractions_started_at_once(example):
    # --together used to set every unset fraction to vLLM's 0.9 (sum 1.72 on the Spark example, marked as
    # the solver's choice): it must start what the sequential plan renders, fractions and pinned pools alike
    spec = load_spec(REPO / "examples" / example)
    seq = plan_stack(spec, use_calibration=False)
    tog = plan_stack(spec, use_calibration=False, start_together=True)
    assert [m.gpu_memory_utilization for m in tog.models] == [m.gpu_memory_utilization for m in seq.models]
    assert tog.utilization_sum <= spec.device.budget
    if spec.device.preset == "dgx-spark":  # pinned pools: vLLM skips the measurement, so together is fine
        assert [m.kv_cache_memory_bytes for m in tog.models] == [m.kv_cache_memory_bytes for m in seq.models]
        assert [m.verdict for m in tog.models] == ["ok", "ok"]
    else:  # profiled pools: the second engine's profile is charged the first one's loading
        assert tog.models[1].verdict == "fail" and tog.models[1].error.kind == "no_cache_blocks"
