"""KV specs per layer type, hybrid block alignment, grouping, block math and log lines (vllm-memory.md §7, §8)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from memfacts import deepseek_v3, dense, gemma3_27b, nemotron_h, qwen3_next

from residency.memory import kv_specs as kv
from residency.memory.model_facts import MambaFacts
from residency.memory.versions import rules_for

GiB = 2**30


def S(L=40960, mnbt=2048, seqs=8, **kw) -> kv.KVSettings:
    return kv.KVSettings(max_model_len=L, max_num_batched_tokens=mnbt, max_num_seqs=seqs, **kw)


# --------------------------------------------------------------------------- full attention (§8.1)


def test_qwen3_4b_full_attention_worked_example():
    r = rules_for("0.11.0")
    lay = kv.build_kv_layout(dense(), S(), r)
    # page = 2 x 16 x 8 x 128 x 2 = 65,536 B; one group of 36 -> 2,359,296 B per block
    assert lay.uniform and lay.block_size == 16
    assert lay.page_bytes == 65_536
    assert lay.bytes_per_block == 2_359_296
    assert lay.attention_bytes_per_token == 147_456  # 144 KiB per token
    nb = kv.num_blocks(lay, 20 * GiB)
    assert nb == 9_102  # 21,474,836,480 // 2,359,296
    assert kv.logged_tokens(lay, nb, 40960, 2048, r) == 145_632  # 9,102 x 16
    # concurrency = 9,102 / cdiv(40,960, 16) = 9,102 / 2,560 = 3.555
    assert kv.max_concurrency(lay, nb, 40960, 2048) == pytest.approx(3.5555, abs=1e-3)
    assert kv.max_concurrency(lay, nb, 32768, 2048) == pytest.approx(9102 / 2048)  # 4.44x
    # minimum KV for one 40,960-token request: 2,560 x 65,536 x 36 = 5.625 GiB (4.5 GiB at 32,768)
    assert kv.needed_bytes(lay, 40960, 2048, r) == 5.625 * GiB
    assert kv.needed_bytes(lay, 32768, 2048, r) == 4.5 * GiB


def test_tp2_halves_kv_heads_and_page():
    lay = kv.build_kv_layout(dense(), S(tensor_parallel_size=2), rules_for("0.33.0"))
    assert lay.page_bytes == 32_768  # 4 KV heads per rank
    # TP 16 > 8 KV heads: replicated, max(1, 8 // 16) = 1 head per rank -> 2 x 16 x 1 x 128 x 2
    lay16 = kv.build_kv_layout(dense(), S(tensor_parallel_size=16), rules_for("0.33.0"))
    assert lay16.page_bytes == 8_192


def test_kv_cache_dtype_fp8_halves_page():
    lay = kv.build_kv_layout(dense(), S(kv_cache_dtype="fp8"), rules_for("0.33.0"))
    assert lay.page_bytes == 32_768
    f32 = kv.build_kv_layout(dense(), S(dtype="float32"), rules_for("0.33.0"))
    assert f32.page_bytes == 131_072  # auto follows the model dtype


def test_logged_tokens_by_version_uniform():
    lay = kv.build_kv_layout(dense(), S(), rules_for("0.33.0"))
    nb = 9_102
    assert kv.logged_tokens(lay, nb, 40960, 2048, rules_for("0.10.1")) == 145_632  # num_blocks x block
    assert kv.logged_tokens(lay, nb, 40960, 2048, rules_for("0.20.0")) == 145_632  # (nb // 1 group) x 16
    # >= 0.20.1: int(max_concurrency x max_model_len) = int(9102 / 2560 x 40960) = 145,632 too for uniform
    assert kv.logged_tokens(lay, nb, 40960, 2048, rules_for("0.20.1")) == 145_632
    # with L not a multiple of the block the forms differ: cdiv(40,000, 16) = 2,500 blocks per request
    assert kv.logged_tokens(lay, nb, 40000, 2048, rules_for("0.20.1")) == int(9102 / 2500 * 40000)  # 145,632


# --------------------------------------------------------------------------- null block / need check


def test_null_block_subtracted_from_029():
    lay = kv.build_kv_layout(dense(), S(), rules_for("0.33.0"))
    need = kv.needed_bytes(lay, 40960, 2048, rules_for("0.28.0"))
    avail = need  # exactly enough before 0.29
    assert kv.check_available(lay, avail, rules_for("0.28.0")) == need
    # >= 0.29: one bytes_per_block (2,359,296 B) less -> fails by one block
    assert kv.check_available(lay, avail, rules_for("0.29.0")) == need - 2_359_296


def test_estimate_max_model_len_binary_search():
    r = rules_for("0.22.1")
    lay = kv.build_kv_layout(dense(), S(), r)
    # 4.5 GiB holds 2,048 blocks of 16 tokens x 36 layers -> exactly 32,768 tokens
    assert kv.estimate_max_model_len(lay, int(4.5 * GiB), 262144, 2048, r) == 32768
    # one block short -> 32,752 (the last full block)
    assert kv.estimate_max_model_len(lay, int(4.5 * GiB) - 1, 262144, 2048, r) == 32752
    assert kv.estimate_max_model_len(lay, 100, 262144, 2048, r) == 0  # not even one token


# --------------------------------------------------------------------------- sliding window + grouping


def test_gemma3_sliding_full_grouping():
    r = rules_for("0.11.0")
    lay = kv.build_kv_layout(gemma3_27b(), S(L=131072), r)
    # 52 sliding + 10 full, equal pages 2 x 16 x 16 x 128 x 2 = 131,072 B; group_size = min = 10
    assert lay.hybrid and lay.group_size == 10 and lay.page_bytes == 131_072
    assert len(lay.groups) == 7  # sliding cdiv(52, 10) = 6 groups (+8 padding layers), full 1 group
    assert lay.padding_layers == 8
    assert lay.bytes_per_block == 1_310_720
    # per request at L = 131,072, mnbt 2,048: sliding cdiv(min(1023 + 2048, L), 16) + 1 = 193 blocks,
    # full 8,192 blocks -> 6 x 193 + 8,192 = 9,350
    assert kv.blocks_per_request(lay, 131072, 2048) == 9_350
    nb = kv.num_blocks(lay, 20 * GiB)  # 21,474,836,480 // 1,310,720 = 16,384
    assert nb == 16_384
    assert kv.max_concurrency(lay, nb, 131072, 2048) == pytest.approx(16384 / 9350)
    assert kv.logged_tokens(lay, nb, 131072, 2048, r) == (16384 // 7) * 16  # 37,440 (0.11.0-0.20.0)
    # need check <= 0.32: sum over layers (52 x 193 + 10 x 8,192) x 131,072 = 12,052,856,832 B
    assert kv.needed_bytes(lay, 131072, 2048, r) == 12_052_856_832
    # 0.33: bytes_per_block x sum over groups = 1,310,720 x 9,350 (padding layers counted)
    assert kv.needed_bytes(lay, 131072, 2048, rules_for("0.33.0")) == 1_310_720 * 9_350


@pytest.mark.parametrize(
    "version,n_sliding,group_size,n_groups",
    [
        ("0.11.0", 19, 16, 3),  # before 0.12: always min -> sliding cdiv(19,16)=2 + full 1
        ("0.12.0", 19, 19, 2),  # 19 < 1.25 x 16 = 20 -> max
        ("0.12.0", 23, 16, 3),  # 23 >= 20 -> min
        ("0.18.0", 23, 23, 2),  # >= 0.18: 23 < 1.5 x 16 = 24 -> max
    ],
)
def test_group_size_threshold_by_version(version, n_sliding, group_size, n_groups):
    f = gemma3_27b(layer_kinds=("sliding",) * n_sliding + ("full",) * 16, num_hidden_layers=n_sliding + 16)
    lay = kv.build_kv_layout(f, S(L=131072), rules_for(version))
    assert (lay.group_size, len(lay.groups)) == (group_size, n_groups)


def test_chunked_local_attention():
    # Llama-4-like: chunk 8192; per request cdiv(min(8192 + 2048, L), 16) = 640 blocks
    f = dense(n_layers=4, layer_kinds=("chunked",) * 4, attention_chunk_size=8192)
    lay = kv.build_kv_layout(f, S(L=131072), rules_for("0.33.0"))
    assert lay.layers[0].max_memory_usage_bytes(131072, 2048) == 640 * 65_536


# --------------------------------------------------------------------------- MLA


@pytest.mark.parametrize(
    "version,kv_dtype,per_token",
    [
        ("0.11.0", "auto", 1152),  # (512 + 64) x 2 B, one latent, no factor 2
        ("0.11.0", "fp8", 576),
        ("0.11.0", "fp8_ds_mla", 656),  # MLAAttentionSpec fp8_ds_mla (>= 0.11.0)
        ("0.10.1", "auto", 1152),  # AttentionSpec(use_mla=True): same bytes
    ],
)
def test_mla_page(version, kv_dtype, per_token):
    r = rules_for(version)
    for tp in (1, 8):  # not split by TP
        lay = kv.build_kv_layout(deepseek_v3(), S(kv_cache_dtype=kv_dtype, tensor_parallel_size=tp), r)
        assert lay.page_bytes == 16 * per_token
        assert lay.bytes_per_block == 61 * 16 * per_token


# --------------------------------------------------------------------------- GDN hybrid (§8.2)


def test_qwen3_next_gdn_state_and_block_544():
    r = rules_for("0.25.1")
    f = qwen3_next()
    # conv (3, 8192) bf16 = 49,152 B + temporal (32, 128, 128) bf16 = 1,048,576 B
    assert kv.mamba_state_bytes(f, "gdn", S(), r) == 1_097_728
    lay = kv.build_kv_layout(f, S(L=262144), r)
    # A1 = 2 x 2 x 256 x 2 = 2,048 B; block = 16 x cdiv(1,097,728, 32,768) = 16 x 34 = 544
    assert lay.block_size == 544 and lay.block_bumped
    assert lay.page_bytes == 1_114_112
    assert lay.mamba_padding_pct == pytest.approx(1.49, abs=0.01)
    assert (len(lay.groups), lay.group_size) == (4, 12)  # 1 full group + 3 strided GDN groups of 12
    assert lay.bytes_per_block == 13_369_344
    assert lay.mamba_mode == "none"
    nb = kv.num_blocks(lay, 20 * GiB)
    assert nb == 1_606
    assert kv.needed_bytes(lay, 262144, 2048, r) == 13_369_344 * 485  # cdiv(262,144, 544) + 3 = 485
    assert kv.max_concurrency(lay, nb, 262144, 2048) == pytest.approx(1606 / 485)  # 3.31x
    assert kv.logged_tokens(lay, nb, 262144, 2048, rules_for("0.20.0")) == 218_144  # (1606 // 4) x 544
    assert kv.logged_tokens(lay, nb, 262144, 2048, r) == 868_047  # int(3.311 x 262,144)


def test_qwen3_next_align_mode_and_flashinfer_576():
    f = qwen3_next()
    # >= 0.26: prefix caching on for hybrids -> align (2 GDN blocks per request)
    lay = kv.build_kv_layout(f, S(L=262144, compute_capability="8.9"), rules_for("0.26.0"))
    assert lay.mamba_mode == "align" and lay.block_size == 544
    assert kv.blocks_per_request(lay, 262144, 2048) == 482 + 6
    assert kv.logged_tokens(lay, 1606, 262144, 2048, rules_for("0.26.0")) == 862_711
    # 0.33 on cc 9.0/10.x/12.x: FlashInfer GDN prefill -> a = 64 -> block 64 x cdiv(M, 131,072) = 576
    lay33 = kv.build_kv_layout(f, S(L=262144, compute_capability="12.1"), rules_for("0.33.0"))
    assert lay33.block_size == 576 and lay33.page_bytes == 1_179_648
    assert lay33.mamba_padding_pct == pytest.approx(7.46, abs=0.01)
    # explicit --no-enable-prefix-caching: mode none, back to 544
    off = kv.build_kv_layout(
        f, S(L=262144, compute_capability="12.1", enable_prefix_caching=False), rules_for("0.33.0")
    )
    assert off.mamba_mode == "none" and off.block_size == 544


def test_gdn_ssm_dtype_from_017():
    f = qwen3_next()
    s = S(mamba_ssm_cache_dtype="float32")
    # >= 0.17: temporal state in fp32 -> 2,097,152 + 49,152 = 2,146,304 B
    assert kv.mamba_state_bytes(f, "gdn", s, rules_for("0.17.1")) == 2_146_304
    # <= 0.16: both states use the conv dtype
    assert kv.mamba_state_bytes(f, "gdn", s, rules_for("0.16.0")) == 1_097_728


def test_qwen3_next_tp2_keeps_544():
    lay = kv.build_kv_layout(qwen3_next(), S(tensor_parallel_size=2), rules_for("0.25.1"))
    assert lay.block_size == 544 and lay.page_bytes == 557_056  # A1 and M both halve


# --------------------------------------------------------------------------- Mamba2 hybrid


def test_mamba2_hybrid_state_block_and_groups():
    f = nemotron_h()
    r = rules_for("0.20.2")
    # conv (3, 8192 + 2 x 8 x 128) bf16 = 61,440 B; ssm (128, 64, 128) bf16 = 2,097,152 B
    assert kv.mamba_state_bytes(f, "mamba2", S(), r) == 2_158_592
    lay = kv.build_kv_layout(f, S(L=8192), r)
    # A1 = 2 x 8 x 128 x 2 = 4,096; block = 16 x cdiv(2,158,592, 65,536) = 16 x 33 = 528
    assert lay.block_size == 528 and lay.page_bytes == 2_162_688
    # 4 attention + 48 Mamba layers: group_size 4 -> 1 + 12 groups
    assert (lay.group_size, len(lay.groups)) == (4, 13)
    assert lay.bytes_per_block == 4 * 2_162_688


def test_mamba2_prefix_caching_modes_by_version():
    f = nemotron_h()
    assert kv.build_kv_layout(f, S(L=8192), rules_for("0.25.1")).mamba_mode == "none"
    # 0.26-0.27: SupportsMambaPrefixCaching models default to "all": block = 256 x cdiv(527, 256) = 768
    lay = kv.build_kv_layout(f, S(L=8192), rules_for("0.26.0"))
    assert lay.mamba_mode == "all" and lay.block_size == 768
    assert lay.layers[0].max_memory_usage_bytes(8192, 2048) == 11 * lay.page_bytes  # cdiv(8192, 768)
    assert kv.build_kv_layout(f, S(L=8192), rules_for("0.28.0")).mamba_mode == "align"  # >= 0.28
    # 0.15-0.25: explicit --enable-prefix-caching -> all
    assert (
        kv.build_kv_layout(f, S(L=8192, enable_prefix_caching=True), rules_for("0.15.1")).mamba_mode == "all"
    )


def test_mamba2_tp_pads_groups():
    # n_groups 8 with TP 3: 8 % 3 != 0 -> n_groups' = 8 + (3 - 8) = 3? vLLM's formula: ng + (t - ng) = t
    f = nemotron_h(
        mamba=MambaFacts(
            kind="mamba2",
            conv_kernel=4,
            num_heads=126,
            head_dim=64,
            n_groups=8,
            d_state=128,
            intermediate_size=8064,
        )
    )
    b = kv.mamba_state_bytes(f, "mamba2", S(tensor_parallel_size=3), rules_for("0.20.2"))
    # conv (3, (8064 + 2 x 3 x 128) // 3) = (3, 2944) x 2 = 17,664; ssm (42, 64, 128) x 2 = 688,128
    assert b == 17_664 + 688_128


def test_linear_attention_state():
    f = dense(n_layers=2, layer_kinds=("linear", "full"), mamba=MambaFacts(kind="linear"), head=64)
    # (32 heads, 64, 64) x 2 B = 262,144 B per layer
    assert kv.mamba_state_bytes(f, "linear", S(), rules_for("0.33.0")) == 262_144


def test_attention_free_model():
    f = dense(n_layers=2, layer_kinds=("none", "none"))
    lay = kv.build_kv_layout(f, S(), rules_for("0.33.0"))
    assert lay.layers == () and kv.num_blocks(lay, GiB) == 1


def test_uniform_type_specs_from_011():
    # Full-attention and MLA layers: different pages, one spec type (MLAAttentionSpec subclasses
    # FullAttentionSpec, kv_cache_interface.py:142 @0.11.0), so UniformTypeKVCacheSpecs puts every layer in
    # one group (kv_cache_utils.py:1175-1179 @0.11.0) and a block costs the sum of the layers' pages.
    f = replace(dense(n_layers=2), layer_kinds=("full", "mla"), kv_lora_rank=512, qk_rope_head_dim=64)
    lay = kv.build_kv_layout(f, S(), rules_for("0.11.0"))
    # full: 16 tokens x 2 (K, V) x 8 heads x 128 x 2 B = 65,536 B; MLA: 16 x (512 + 64) x 2 B = 18,432 B
    assert [sp.page_bytes for sp in lay.layers] == [65_536, 18_432]
    assert lay.uniform_type and not lay.uniform and not lay.hybrid
    assert lay.groups == ((0, 1),)
    assert lay.bytes_per_block == 83_968
    assert kv.num_blocks(lay, GiB) == 12_787  # 1,073,741,824 // 83,968
    # all specs equal: the plain uniform rule, not the uniform-type one
    same = kv.build_kv_layout(dense(n_layers=2), S(), rules_for("0.11.0"))
    assert same.uniform and not same.uniform_type and same.bytes_per_block == 2 * 65_536


