"""One process's startup: requested memory, free check, budget formulas, graphs in/out by version,
kv_cache_memory_bytes, checks and their vLLM texts (vllm-memory.md §2, §3, §5, §6, §9)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from memfacts import dense, qwen3_next

from residency.memory import activation as act
from residency.memory.device import resolve_device
from residency.memory.engine import (
    EngineSettings,
    Measured,
    profile_settings,
    requested_bytes,
    simulate_startup,
)
from residency.memory.versions import rules_for
from residency.memory.weights import weights_bytes_per_rank
from residency.spec import DeviceSpec

GiB = 2**30
SPARK = resolve_device(DeviceSpec(preset="dgx-spark"))
H100 = resolve_device(DeviceSpec(preset="h100-80gb", count=2))


def es(u=0.5, L=32768, seqs=8, mnbt=2048, **kw) -> EngineSettings:
    return EngineSettings(
        gpu_memory_utilization=u, max_model_len=L, max_num_seqs=seqs, max_num_batched_tokens=mnbt, **kw
    )


def test_requested_float_then_ceil():
    total = SPARK.total_bytes  # 119.67 GiB = 128,496,948,756 B (rounded)
    # <= 0.13: int(total x 0.85); >= 0.14: ceil(total x 0.85)
    assert requested_bytes(total, 0.85, rules_for("0.13.0")) == int(total * 0.85)
    assert requested_bytes(total, 0.85, rules_for("0.14.1")) == math.ceil(total * 0.85)
    assert round(requested_bytes(total, 0.85, rules_for("0.33.0")) / GiB, 2) == 101.72  # 0.85 x 119.67


def test_free_memory_message_by_version():
    f = qwen3_next()
    # vLLM's snapshot sees free after this process's CUDA context and front-end processes exist
    ctx = act.context_bytes(SPARK, profile_settings(f, es(0.85)), rules_for("0.33.0"))
    free = int(98.56 * GiB) + ctx
    st = simulate_startup(f, es(0.85), SPARK, rules_for("0.33.0"), free)
    assert st.error_kind == "free_memory"
    assert st.error_message.startswith(
        "Free memory on device cuda:0 (98.56/119.67 GiB) on startup is less than desired GPU memory utilization (0.85, 101.72 GiB)."
    )
    old = simulate_startup(f, es(0.85), SPARK, rules_for("0.13.0"), free)
    assert old.error_message.startswith("Free memory on device (98.56/119.67 GiB) on startup")
    # format_gib (>= 0.14) drops trailing zeros; "%.2f" (<= 0.13) keeps them: 0.8 x 119.67 = 95.736 -> 95.74
    st2 = simulate_startup(f, es(0.8), SPARK, rules_for("0.33.0"), int(90.5 * GiB) + ctx)
    assert "(90.5/119.67 GiB)" in st2.error_message
    st3 = simulate_startup(f, es(0.8), SPARK, rules_for("0.11.0"), int(90.5 * GiB) + ctx)
    assert "(90.50/119.67 GiB)" in st3.error_message


def test_available_kv_is_requested_minus_non_kv():
    f = dense()
    st = simulate_startup(f, es(0.3, seqs=8), H100, rules_for("0.19.1"), 70 * GiB)
    # 0.19: graphs outside the budget -> available = requested - (weights + act + non-torch)
    assert st.available_kv_bytes == st.requested_bytes - (
        st.weights_bytes + st.activation_bytes + st.non_torch_bytes
    )
    assert not st.cudagraph_in_budget
    assert st.footprint_bytes == st.context_bytes + st.requested_bytes + st.cudagraph_bytes
    st20 = simulate_startup(f, es(0.3, seqs=8), H100, rules_for("0.20.0"), 70 * GiB)
    # >= 0.20: the graph estimate comes out of the budget and the footprint is just ctx + requested
    assert st20.cudagraph_in_budget
    assert st20.available_kv_bytes == st20.requested_bytes - st20.non_kv_bytes
    assert (
        st20.non_kv_bytes
        == st20.weights_bytes + st20.activation_bytes + st20.non_torch_bytes + st20.cudagraph_bytes
    )
    assert st20.footprint_bytes == st20.context_bytes + st20.requested_bytes


def test_enforce_eager_has_no_graphs():
    st = simulate_startup(dense(), es(0.3, enforce_eager=True), H100, rules_for("0.33.0"), 70 * GiB)
    assert st.cudagraph_bytes == 0


def test_nccl_inside_budget_until_0102():
    f = dense()
    a = simulate_startup(f, es(0.3, tensor_parallel_size=2), H100, rules_for("0.10.2"), 70 * GiB)
    b = simulate_startup(f, es(0.3, tensor_parallel_size=2), H100, rules_for("0.11.0"), 70 * GiB)
    # vllm-memory.md §2.2: <= 0.10.2 the snapshot precedes distributed init, so the NCCL and custom
    # all-reduce buffers are non-torch growth inside the budget; >= 0.11.0 they are in the baseline.
    # Worked with the 0.6 GiB NCCL figure, 0.12 GiB of library workspaces and the 0.55 GiB context:
    #   non-torch  0.10.2: 0.12 + 0.6 = 0.72 GiB = 773,094,113 B     0.11.0: 0.12 GiB = 128,849,018 B
    #   context    0.10.2: 0.55 GiB = 590,558,003 B                  0.11.0: 0.55 + 0.6 = 1,234,803,097 B
    assert (a.non_torch_bytes, b.non_torch_bytes) == (773_094_113, 128_849_018)
    assert (a.context_bytes, b.context_bytes) == (590_558_003, 1_234_803_097)
    # requested = int(0.3 x 79.19 GiB) = int(0.3 x 85,029,615,043) = 25,508,884,512 B in both versions,
    # so 0.11.0's KV is larger by exactly the buffers that left the budget: 773,094,113 - 128,849,018
    assert a.requested_bytes == b.requested_bytes == 25_508_884_512
    assert b.available_kv_bytes - a.available_kv_bytes == 644_245_095


def test_kv_cache_memory_bytes_path():
    f = dense()
    k = 10 * GiB
    st = simulate_startup(f, es(0.3, kv_cache_memory_bytes=k), H100, rules_for("0.11.0"), 70 * GiB)
    assert st.available_kv_bytes == k  # used as-is, no profiling subtraction
    # 0.10.1 has no such flag: the fraction decides
    old = simulate_startup(f, es(0.3, kv_cache_memory_bytes=k), H100, rules_for("0.10.1"), 70 * GiB)
    assert old.available_kv_bytes != k and any("ignored" in n for n in old.notes)
    # the startup check still runs with gpu_memory_utilization (§9)
    chk = simulate_startup(f, es(0.9, kv_cache_memory_bytes=k), H100, rules_for("0.33.0"), 40 * GiB)
    assert chk.error_kind == "free_memory"


def test_no_cache_blocks_message_by_version():
    f = qwen3_next()
    st = simulate_startup(f, es(0.6), SPARK, rules_for("0.32.0"), 110 * GiB)  # 71.8 GiB < 75 GiB of weights
    assert st.error_kind == "no_cache_blocks"
    assert st.error_message == (
        "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine."
    )
    st33 = simulate_startup(f, es(0.6), SPARK, rules_for("0.33.0"), 110 * GiB)
    assert "CPU backend" in st33.error_message and "conserving_memory" in st33.error_message


def test_max_seq_len_check_typo_and_estimate():
    f = dense()
    # 0.17 x 79.19 = 13.46 GiB - 7.56 GiB weights - ~0.9 GiB others ~ 5 GiB, below the 5.625 GiB a
    # 40,960-token request needs
    st = simulate_startup(f, es(0.17, L=40960), H100, rules_for("0.21.0"), 70 * GiB)
    assert st.error_kind == "max_seq_len"
    assert "the models's max seq len (40960)" in st.error_message  # typo through 0.21
    assert (
        "(5.62 GiB KV cache is needed" in st.error_message
        or "(5.63 GiB KV cache is needed" in st.error_message
    )
    est = st.estimated_max_model_len
    assert f"the estimated maximum model length is {est}." in st.error_message
    # the estimate is the largest length whose need fits: est tokens need <= available
    assert 0 < est < 40960
    fixed = simulate_startup(f, es(0.17, L=est), H100, rules_for("0.21.0"), 70 * GiB)
    assert fixed.error_kind is None
    st22 = simulate_startup(f, es(0.17, L=40960), H100, rules_for("0.22.1"), 70 * GiB)
    assert "the model's max seq len" in st22.error_message


@pytest.mark.parametrize(
    "version,kind,text",
    [
        ("0.33.0", "mamba_cache_blocks", "max_num_seqs (256) exceeds available Mamba cache blocks (40)."),
        # >= 0.20 ValueError (compilation.py:1436@0.20.0; records r061 0.28.0, r062 0.25.1)
        ("0.20.0", "mamba_cache_blocks", "max_num_seqs (256) exceeds available Mamba cache blocks (40)."),
        ("0.19.1", None, None),  # 0.18-0.19: capture sizes capped with a warning
        (
            "0.17.0",
            "mamba_cache_blocks",
            "CUDA graph capture failed: decode batch 256",
        ),  # before the cap: aborts
    ],
)
def test_mamba_blocks_vs_max_num_seqs_by_version(version, kind, text):
    f = qwen3_next()
    # a pool of 40 blocks (13,369,344 B each at block 544), max_num_seqs 256
    kwargs = dict(L=1024, seqs=256, kv_cache_memory_bytes=40 * 13_369_344, enable_prefix_caching=False)
    st = simulate_startup(f, es(0.9, **kwargs), SPARK, rules_for(version), 118 * GiB)
    assert st.num_blocks == 40  # 40 x 13,369,344 B given, 13,369,344 B per block: every version
    assert st.error_kind == kind
    if text:
        assert st.error_message.startswith(text.replace("(40)", f"({st.num_blocks})"))
    else:
        assert any("capped" in n for n in st.notes)
    eager = simulate_startup(f, es(0.9, enforce_eager=True, **kwargs), SPARK, rules_for(version), 118 * GiB)
    assert eager.error_kind is None  # no FULL decode graphs, no check


def test_weights_do_not_fit():
    st = simulate_startup(qwen3_next(), es(0.3), SPARK, rules_for("0.33.0"), 40 * GiB)
    assert st.error_kind == "weights_do_not_fit"


def test_unified_memory_host_overhead_only_on_uma():
    f = dense()
    uma = simulate_startup(f, es(0.3), SPARK, rules_for("0.33.0"), 100 * GiB)
    # the same box with discrete memory: same total, free and request, only `unified` differs
    disc = simulate_startup(f, es(0.3), replace(SPARK, unified=False), rules_for("0.33.0"), 100 * GiB)
    assert uma.requested_bytes == disc.requested_bytes and disc.host_overhead_bytes == 0
    assert uma.weights_bytes == 8_112_700_416
    # cold start (the preset's default), worker host growth charged to KV (memory/unified.py): warm 1 GiB + 5%
    # of the weights (1,073,741,824 + 405,635,020) + half the checkpoint's pages (4,056,350,208); no discrete
    # graph term on GB10 (unified-memory.md §5)
    assert uma.host_overhead_bytes == 5_535_727_052 and uma.cudagraph_bytes == 0 < disc.cudagraph_bytes
    assert disc.available_kv_bytes - uma.available_kv_bytes == 5_535_727_052 - disc.cudagraph_bytes
    # API server + engine-core RSS (1.2 GiB = 1,288,490,188.8 B) outside the budget, in the footprint; the
    # page cache is not held by the process (outside the footprint, seen by the next engine's check)
    assert uma.page_cache_bytes == 4_056_350_208
    assert uma.footprint_bytes - disc.footprint_bytes == 1_288_490_189 - 4_056_350_208


def test_measured_figures_replace_estimates():
    f = dense()
    m = Measured(weights_gib=7.0, activation_gib=1.0, non_torch_gib=0.2, cudagraph_gib=0.3, non_kv_gib=9.0)
    st = simulate_startup(f, es(0.3), H100, rules_for("0.33.0"), 70 * GiB, measured=m)
    assert st.non_kv_bytes == 9 * GiB
    assert st.available_kv_bytes == st.requested_bytes - 9 * GiB
    assert st.weights_bytes == 7 * GiB


def test_weights_per_rank_llama_and_tp():
    from memfacts import dense as d

    llama = d(
        n_layers=32,
        hidden=4096,
        inter=14336,
        vocab=128256,
        tie_word_embeddings=False,
        checkpoint_bytes=16_060_522_496,
        max_position_embeddings=131072,
    )
    # 16,060,522,496 B + rope cache 131,072 x 128 x 2 B = 14.989 GiB ("Model loading took 14.9889 GiB")
    assert weights_bytes_per_rank(llama) / GiB == pytest.approx(14.9889, abs=0.001)
    # TP 2: embedding + LM head (2 x 128,256 x 4,096 x 2 B) split with vocab padded to 64, the body halves
    w2 = weights_bytes_per_rank(llama, 2)
    assert w2 == pytest.approx(
        (16_060_522_496 - 2 * 128256 * 4096 * 2) // 2 + 2 * (128256 // 2) * 4096 * 2 + 131072 * 128 * 2,
        rel=1e-6,
    )


def test_online_fp8_halves_linears():
    f = dense(checkpoint_bytes=8_045_591_552)
    emb = 151936 * 2560 * 2  # tied: counted once
    body = 8_045_591_552 - emb
    w = weights_bytes_per_rank(f, 1, None, "fp8")
    assert w == body // 2 + emb + 262144 * 128 * 2


def test_v2_sampler_warmup_outgrows_the_profile_0_22_to_0_32():
    """docs/vllm-versions.md V22-v2-warmup: the V2 runner's post-KV warm-up uses full sampling parameters."""
    act_mod = act

    f = dense()  # Qwen3ForCausalLM: V2 runner from 0.22
    kw = dict(seqs=1024, mnbt=8192)
    v1 = simulate_startup(f, es(0.9, **kw), H100, rules_for("0.21.0"), 79 * GiB)
    v2 = simulate_startup(f, es(0.9, **kw), H100, rules_for("0.28.0"), 79 * GiB)
    v33 = simulate_startup(f, es(0.9, **kw), H100, rules_for("0.33.0"), 79 * GiB)
    req = v2.requested_bytes
    # V1 (0.21) warms exactly what it profiled: the footprint is the budget
    assert v1.footprint_bytes == v1.context_bytes + req
    assert not any("full sampling parameters" in n for n in v1.notes)
    # 0.28: 1024 rows x 151,936 x 14 B (+ hidden rows) against a profile that counted the logits only
    warm = 1024 * 2560 * 2 + 1024 * 151936 * 14
    # the profiled transient peak: 0.28's activation also holds the V2 sampler penalty state, persistent
    # (1024 seqs x (151,936 + 4748) x 4 B, counted in non_kv from 0.27: V27-formula-b)
    profiled = v2.activation_bytes - 1024 * (151936 + 4748) * 4
    assert warm - profiled > 0
    # ... and the V2 runner's graphs sit outside the budget in 0.22-0.28 (no estimate: V22-v2-no-graph-estimate)
    assert not v2.cudagraph_in_budget and v2.cudagraph_bytes > 0
    assert v2.footprint_bytes == v2.context_bytes + req + v2.cudagraph_bytes + (warm - profiled)
    assert any("full sampling parameters" in n for n in v2.notes)
    # 0.33 profiles the same pass: nothing above the budget
    assert not any("full sampling parameters" in n for n in v33.notes)
    assert (
        act_mod.sampler_warmup_peak_bytes(f, act_mod.ProfileSettings(8192, 1024, 4096), rules_for("0.28.0"))
        == warm
    )
    # the V2 warm-up's rows: two-token requests, min(max_num_seqs, max_num_batched_tokens // 2)
    small = act_mod.ProfileSettings(512, 1024, 4096)
    assert (
        act_mod.sampler_warmup_peak_bytes(f, small, rules_for("0.28.0")) == 256 * 2560 * 2 + 256 * 151936 * 14
    )


@pytest.mark.parametrize(("version", "counted"), [("0.26.0", False), ("0.27.0", True)])
def test_v2_sampler_state_in_non_kv_from_0_27(monkeypatch, version, counted):
    """docs/vllm-versions.md V22-v2-sampler-state + V27-formula-b: 256 seqs x (151,936 + 4748) x 4 B."""
    f = dense()  # Qwen3ForCausalLM: V2 runner
    state = 256 * (151_936 + 4748) * 4
    with_state = simulate_startup(f, es(0.9, seqs=256), H100, rules_for(version), 79 * GiB)
    monkeypatch.setattr(act, "v2_sampler_state_bytes", lambda *_: 0)
    without = simulate_startup(f, es(0.9, seqs=256), H100, rules_for(version), 79 * GiB)
    if counted:  # Formula B: in non_kv, so the KV pool is smaller and the footprint the budget
        assert without.available_kv_bytes - with_state.available_kv_bytes == state
        assert with_state.footprint_bytes == without.footprint_bytes
    else:  # Formula A: not counted, held beyond the budget
        assert with_state.available_kv_bytes == without.available_kv_bytes
        assert with_state.footprint_bytes - without.footprint_bytes == state
