"""The DGX Spark story as the user lived it (tests/fixtures/spark-story/), and the fix (the example).

4B first at ~16 GiB; the 80B's cold first launch at 0.75 / 65,536 / 4 -> "No available memory for the cache
blocks" with the cause and what removes it; 0.85 -> the startup check with 98.5/119.67-style numbers;
0.80 / 32,768 / 2 on a warm start -> loads. examples/dgx-spark-qwen3.yaml: both at 65,536 with pinned KV,
fractions that pass an idle Spark's check, and the host reserve kept.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from residency.memory import unified as uma
from residency.planner.plan import plan_stack
from residency.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]
STORY = REPO / "tests" / "fixtures" / "spark-story"
EXAMPLE = REPO / "examples" / "dgx-spark-qwen3.yaml"


def plan_file(path: Path):
    return plan_stack(load_spec(path), use_calibration=False)


def plan_dict(d: dict):
    return plan_stack(parse_spec(copy.deepcopy(d)), use_calibration=False)


def story(name: str) -> dict:
    return yaml.safe_load((STORY / name).read_text())


def test_the_4b_is_resident_at_about_16_gib():
    fast = plan_file(STORY / "1-cold-075.yaml").model("fast")
    assert fast.verdict == "ok"
    assert 16.0 <= fast.requested_gib <= 17.0  # 0.14 x 119.67 = 16.75


def test_cold_075_fails_no_cache_blocks_with_the_cause_and_the_fixes():
    p = plan_file(STORY / "1-cold-075.yaml")
    h = p.model("heavy")
    assert h.start == "cold" and h.verdict == "fail" and h.error.kind == "no_cache_blocks"
    assert h.error.message.startswith("No available memory for the cache blocks.")
    assert "cold load" in h.error.fix and "page cache" in h.error.fix
    assert "kv_cache_memory_bytes" in h.error.fix and "start warm" in h.error.fix
    # the same settings load warm: the range says so
    assert h.kv_cache_gib_cold < 0 < h.kv_cache_gib_warm
    assert h.kv_cache_gib == h.kv_cache_gib_cold
    assert not p.fits


def test_085_fails_the_startup_check_with_the_story_numbers():
    h = plan_file(STORY / "2-085.yaml").model("heavy")
    assert h.verdict == "fail" and h.error.kind == "free_memory"
    assert h.error.message.startswith("Free memory on device cuda:0 (98.")
    assert (
        "/119.67 GiB) on startup is less than desired GPU memory utilization (0.85, 101.72 GiB)"
        in h.error.message
    )


def test_warm_080_32768_2_loads_with_about_20_8_gib_after_the_weights():
    p = plan_file(STORY / "3-warm-080.yaml")
    h = p.model("heavy")
    assert h.start == "warm" and h.verdict == "ok" and p.fits
    assert h.requested_gib - h.weights_gib == pytest.approx(20.8, abs=0.1)
    assert h.kv_cache_gib == h.kv_cache_gib_warm > 10
    assert h.max_concurrency >= 2


def test_warm_080_without_the_story_host_reserve_overcommits():
    """What vLLM loaded leaves the host nothing: with the default reserve the plan says so and names a fix."""
    d = story("3-warm-080.yaml")
    del d["device"]["host_reserve_gib"]
    p = plan_dict(d)
    h = p.model("heavy")
    assert h.verdict == "fail" and h.error.kind == "overcommit" and not p.fits
    assert f"host reserve {uma.HOST_RESERVE_DEFAULT_GIB:.2f} GiB" in h.error.message
    assert h.error.fix.startswith("shrink heavy by")


def test_the_fix_example_pins_kv_passes_admission_and_keeps_the_reserve():
    p = plan_file(EXAMPLE)
    assert p.fits and p.launch_order == ["fast", "heavy"]
    offered = 119.67 - uma.IDLE_UNOFFERED_GIB  # an idle Spark's reliable free memory (preset assumption)
    held = p.device.used_gib
    for m in p.models:
        assert m.verdict == "ok" and m.max_model_len >= 65536
        assert m.kv_cache_memory_bytes and m.kv_cache_memory_bytes > 0  # pinned
        assert m.kv_cache_gib == pytest.approx(m.kv_cache_memory_bytes / 2**30, abs=0.001)
        assert m.kv_cache_gib_cold == m.kv_cache_gib_warm == m.kv_cache_gib  # pinned: no cold/warm difference
        assert m.max_concurrency >= 1
        # the startup check passes on an idle Spark: requested <= what it reliably offers minus earlier engines
        assert m.requested_gib <= offered - held - m.context_gib + 0.01
        held += m.footprint_gib
    assert held + p.device.host_reserve_gib <= p.device.total_gib
    assert any("assumes a total of 119.67 GiB" in w for w in p.warnings)


def test_kv_sizing_fraction_opts_out():
    d = yaml.safe_load(EXAMPLE.read_text())
    for m in d["models"]:
        m["kv_sizing"] = "fraction"
    p = plan_dict(d)
    assert all(m.kv_cache_memory_bytes is None for m in p.models)
    assert not p.fits  # a fraction-sized 80B cannot absorb a cold load's page cache in what is left


def test_plan_json_has_cold_and_warm_kv_for_unified_devices(capsys):
    from residency.cli import main

    with pytest.raises(SystemExit) as e:
        main(["plan", str(STORY / "3-warm-080.yaml"), "--json", "--no-calibration"])
    assert e.value.code == 0
    out = json.loads(capsys.readouterr().out)
    h = out["models"][1]
    assert h["kv_cache_gib_cold"] < h["kv_cache_gib_warm"] == h["kv_cache_gib"]
    assert out["device"]["start"] == "warm"


def test_at_risk_when_a_fraction_needs_more_than_an_idle_spark_offers():
    d = {
        "vllm_version": "0.33.0",
        "device": {"preset": "dgx-spark", "start": "warm"},
        "models": [{"name": "m", "model": "Qwen/Qwen3-4B-Instruct-2507", "max_model_len": 8192}],
    }
    d["models"][0]["gpu_memory_utilization"] = 0.85
    m = plan_dict(d).model("m")
    assert m.verdict == "at_risk" and m.error.kind == "at_risk"
    assert "(0.85, 101.72 GiB)" in m.error.message and "lower gpu_memory_utilization to 0.8" in m.error.fix
    d["models"][0]["gpu_memory_utilization"] = 0.8
    assert plan_dict(d).model("m").verdict == "ok"
    # a described box (its own total, what it holds) is taken at its word
    d["models"][0]["gpu_memory_utilization"] = 0.85
    d["device"]["total_gib"] = 119.67
    assert plan_dict(d).model("m").verdict == "ok"


def test_no_discrete_graph_term_on_gb10():
    p = plan_file(EXAMPLE)
    assert all(m.cudagraph_gib == 0 for m in p.models)


def _two(version: str, u_b: float, **b) -> dict:
    return {
        "vllm_version": version,
        "device": {"preset": "h100-80gb"},
        "models": [
            {
                "name": "a",
                "model": "Qwen/Qwen3-4B-Instruct-2507",
                "gpu_memory_utilization": 0.5,
                "max_model_len": 4096,
            },
            {
                "name": "b",
                "model": "Qwen/Qwen3-4B-Instruct-2507",
                "gpu_memory_utilization": u_b,
                "max_model_len": 4096,
                **b,
            },
        ],
    }


def _fraction_for(version: str, extra_gib: float, minus_graphs: bool = True, **b) -> float:
    """b's fraction whose requested memory is what its check sees (minus its graphs) + extra."""
    m = plan_dict(_two(version, 0.3, **b)).model("b")
    seen = m.free_at_start_gib - m.context_gib
    want = seen - (m.cudagraph_gib if minus_graphs else 0) + extra_gib
    return round(want / 79.19, 4)


@pytest.mark.parametrize("version", ["0.19.1", "0.11.0"])
def test_footprints_over_the_device_are_never_ok_on_any_device(version):
    """b passes vLLM's startup check and its warm-ups; its graphs (captured outside the budget before 0.20) then
    hold 0.1 GiB more than the device has: never ok."""
    p = plan_dict(_two(version, _fraction_for(version, 0.1)))
    a, b = p.models
    assert a.verdict == "ok" and not b.cudagraph_in_budget
    assert b.free_at_start_gib - b.context_gib >= b.requested_gib  # the check passes
    assert b.verdict == "fail" and b.error.kind == "overcommit" and not p.fits
    assert a.footprint_gib + b.footprint_gib > p.device.total_gib
    assert "shrink b by" in b.error.fix


def test_sampler_warm_up_after_the_pool_fails_when_graphs_took_its_room():
    """b passes the check; its graphs (outside the budget on 0.19) fit after the pool, the sampler's warm-up with
    1024 dummy requests (the >= 70 GiB tier default) x the 151,936-token vocabulary does not."""
    u = _fraction_for("0.19.1", -0.1, minus_graphs=False)
    b = plan_dict(_two("0.19.1", u)).model("b")
    assert b.free_at_start_gib - b.context_gib >= b.requested_gib  # the check passes
    assert b.verdict == "fail" and b.error.kind == "sampler_oom"
    assert b.error.message == (
        "CUDA out of memory occurred when warming up sampler with 1024 dummy requests. Please try lowering "
        "`max_num_seqs` or `gpu_memory_utilization` when initializing the engine."
    )
    assert "lower max_num_seqs from 1024" in b.error.fix


def test_graph_capture_beyond_a_pinned_pool_fails_after_the_pool():
    """A pinned pool that fits, then graphs captured after it (0.19: not in any budget) that do not."""
    d = {
        "vllm_version": "0.19.1",
        "device": {"preset": "h100-80gb"},
        "models": [{"name": "m", "model": "Qwen/Qwen3-4B-Instruct-2507", "gpu_memory_utilization": 0.5}],
    }
    m = plan_dict(d).model("m")
    left = (
        m.free_at_start_gib - m.context_gib - m.weights_gib - m.non_torch_gib
    )  # for pool + graphs + warm-up
    d["models"][0]["kv_cache_memory_bytes"] = int((left - m.cudagraph_gib / 2) * 2**30)
    m = plan_dict(d).model("m")
    assert m.verdict == "fail" and m.error.kind == "graph_capture_oom"
    assert "capturing CUDA graphs" in m.error.message and "enforce_eager" in m.error.fix


def test_pinned_pool_too_big_for_the_sampler_warm_up():
    """A pinned pool subtracts nothing (vllm-memory.md §9): the warm-up needs what the pool left."""
    d = {
        "vllm_version": "0.33.0",
        "device": {"preset": "h100-80gb"},
        "models": [
            {
                "name": "m",
                "model": "Qwen/Qwen3-4B-Instruct-2507",
                "gpu_memory_utilization": 0.5,
                "kv_cache_memory_bytes": int(69.9 * 2**30),
                "max_model_len": 4096,
                "max_num_seqs": 1024,
            }
        ],
    }
    m = plan_dict(d).model("m")
    assert m.error is not None and m.error.kind == "sampler_oom"
    assert "warming up sampler with 1024 dummy requests" in m.error.message
    d["models"][0]["kv_cache_memory_bytes"] = int(75 * 2**30)
    assert plan_dict(d).model("m").error.kind == "kv_alloc_oom"
    d["models"][0]["kv_cache_memory_bytes"] = int(60 * 2**30)
    assert plan_dict(d).model("m").verdict == "ok"


def test_render_passes_both_flags_and_explain_says_why(capsys):
    from residency.cli import main
    from residency.render.flags import serve_args

    s = load_spec(EXAMPLE)
    p = plan_stack(s, use_calibration=False)
    for ms, mp in zip(s.models, p.models, strict=True):
        args = serve_args(ms, mp, vllm_version=s.vllm_version, port=8000)
        assert args[args.index("--kv-cache-memory-bytes") + 1] == str(mp.kv_cache_memory_bytes)
        assert float(args[args.index("--gpu-memory-utilization") + 1]) == mp.gpu_memory_utilization
    with pytest.raises(SystemExit):
        main(["plan", str(EXAMPLE), "--no-calibration", "--explain"])
    out = " ".join(capsys.readouterr().out.split())
    assert "pinned: on unified memory host growth" in out and "kv_sizing: fraction opts out" in out
    assert "host reserve 8.20 GiB stays free" in out


def test_render_refuses_an_at_risk_plan_up_starts_it_after_reading_free_memory():
    from residency.errors import ResidencyError
    from residency.render.stack import require_fit

    d = yaml.safe_load(EXAMPLE.read_text())
    d["models"][1]["gpu_memory_utilization"] = 0.70  # > what an idle Spark reliably offers after the 4B
    d["models"][1]["kv_sizing"] = "pinned"
    p = plan_dict(d)
    assert p.model("heavy").verdict == "at_risk" and not p.fits
    with pytest.raises(ResidencyError):
        require_fit(p)
    require_fit(p, allow_at_risk=True)  # up: its unified-memory gate reads MemAvailable before the start


def _fractions_in(fix: str) -> list[float]:
    import re

    return [float(x) for x in re.findall(r"gpu_memory_utilization (?:to |lowered to )?([01]\.\d\d)", fix)]


def test_a_cold_failure_never_proposes_a_fraction_the_startup_check_cannot_grant():
    """0.75 cold: raising the fraction to 1.00 was offered (no check passes above total - used - own context)."""
    h = plan_file(STORY / "1-cold-075.yaml").model("heavy")
    ceiling = (119.67 - 1.0 - h.context_gib) / 119.67
    assert _fractions_in(h.error.fix) and all(f <= ceiling for f in _fractions_in(h.error.fix))
    assert "1.00" not in h.error.fix


def test_the_pinned_fix_for_a_cold_failure_is_not_itself_at_risk():
    """0.85 alone on the preset Spark, cold: the proposed pin keeps a fraction an idle Spark's check passes, and
    planning with exactly what the fix says loads."""
    import re

    d = {
        "vllm_version": "0.33.0",
        "device": {"preset": "dgx-spark", "start": "cold"},
        "models": [
            {
                "name": "heavy",
                "model": "Qwen/Qwen3-Next-80B-A3B-Instruct-FP8",
                "gpu_memory_utilization": 0.85,
                "max_model_len": 65536,
                "max_num_seqs": 4,
            }
        ],
    }
    h = plan_dict(d).model("heavy")
    assert h.error.kind == "no_cache_blocks"
    kv = int(re.search(r"kv_cache_memory_bytes (\d+)", h.error.fix).group(1))
    u = _fractions_in(h.error.fix)[0]
    assert u < 0.85
    d["models"][0].update(gpu_memory_utilization=u, kv_cache_memory_bytes=kv)
    assert plan_dict(d).model("heavy").verdict == "ok"


def test_the_pinned_note_says_a_fraction_sized_pool_gets_nothing_cold_not_a_negative_pool():
    notes = {m.name: " ".join(m.notes) for m in plan_file(EXAMPLE).models}
    assert (
        "none cold:" in notes["heavy"]
        and "GiB short, 'No available memory for the cache blocks'" in notes["heavy"]
    )
    assert "(-" not in notes["heavy"]
    assert " GiB cold; " in notes["fast"]  # the 4B's fraction-sized pool survives a cold load


def test_no_cache_blocks_at_any_grantable_fraction_says_the_model_does_not_fit():
    """An H100 with 3 GiB held elsewhere: at 0.95 (the most its check grants) the 80B's weights leave no KV; a
    higher fraction is no fix, so none is offered."""
    d = {
        "vllm_version": "0.33.0",
        "device": {"preset": "h100-80gb", "used_gib": 3},
        "models": [
            {
                "name": "heavy",
                "model": "Qwen/Qwen3-Next-80B-A3B-Instruct-FP8",
                "gpu_memory_utilization": 0.95,
                "max_model_len": 65536,
                "max_num_seqs": 4,
                "max_num_batched_tokens": 2048,
            }
        ],
    }
    h = plan_dict(d).model("heavy")
    assert h.error.kind == "no_cache_blocks"
    assert h.error.fix.startswith("no gpu_memory_utilization its startup check can grant (at most 0.95 here)")
    assert "raise gpu_memory_utilization" not in h.error.fix


def test_footprints_over_an_idle_sparks_offer_are_warned_about_since_up_waits_for_them():
    """The example's engines need ~109 GiB; a stock Spark offers ~100 GiB to vLLM at idle: the plan says
    that up (which waits for each footprint, runtime/memory.needed_gib) would stop before the last."""
    from pathlib import Path

    from residency.planner.plan import plan_stack
    from residency.spec import load_spec

    root = Path(__file__).resolve().parents[2]
    p = plan_stack(load_spec(root / "examples" / "dgx-spark-qwen3.yaml"), use_calibration=False)
    engines = sum(m.footprint_gib for m in p.models)
    assert engines > 100.0
    assert any("footprints sum to" in w and "up" in w for w in p.warnings)
    # a box measured to offer more (calibration or --live) is not warned about
    spec = load_spec(root / "examples" / "dgx-spark-qwen3.yaml")
    spec.device.total_gib = 119.67
    p2 = plan_stack(spec, use_calibration=False)
    assert not any("footprints sum to" in w for w in p2.warnings)


def test_messages_residency_predicts_are_not_shown_as_vllms_words():
    from residency.memory import messages

    for text in (messages.graph_capture_oom(2 * 2**30, 2**30), messages.kv_alloc_oom(2**33, 2**32)):
        assert not text.startswith("torch.OutOfMemoryError: CUDA out of memory.")  # torch's own wording
        assert "expected" in text
    assert {"graph_capture_oom", "kv_alloc_oom", "agent_context"} <= messages.PREDICTED_TEXT
    assert "sampler_oom" not in messages.PREDICTED_TEXT  # verbatim vLLM text
