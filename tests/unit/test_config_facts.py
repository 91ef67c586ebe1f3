"""config.json -> ModelFacts: every bundled catalog model, plus hand-written configs for the cases
the catalog does not cover (compressed-tensors, Mixtral, Mistral-7B-v0.1, Llama 4, Qwen-VL, Mamba)."""

from __future__ import annotations

from collections import Counter

import pytest

from residency.errors import UnknownModelError
from residency.memory import catalog
from residency.memory.config_facts import (
    apply_override,
    estimate_params,
    facts_from_config,
    facts_from_override,
    read_quantization,
)
from residency.spec import ModelFactsOverride

GiB = 1 << 30


def _catalog_facts(model_id: str, *, with_param_count: bool = True):
    e = catalog.lookup(model_id)
    assert e is not None, model_id
    return facts_from_config(
        e.config,
        model_id=e.id,
        source="catalog",
        checkpoint_bytes=e.total_size_bytes,
        param_count=e.param_count if with_param_count else None,
        dtype=e.dtype,
        hf_quant_config=e.hf_quant_config,
        multimodal=e.multimodal or None,
        preprocessor=e.preprocessor_config,
    )


# id, layers, kv heads, head_dim, layer kind counts, quantization (vLLM name), checkpoint bytes
CATALOG = [
    # Jamba: attention when i % attn_layer_period(8) == attn_layer_offset(4): layers 4, 12, 20, 28 -> 4; 28 Mamba1
    ("ai21labs/AI21-Jamba-Mini-1.7", 32, 8, 128, {"full": 4, "mamba": 28}, None, None),
    # sliding_window 131072 with use_sliding_window false: plain full attention
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 64, 8, 128, {"full": 64}, None, 65527752704),
    # MLA; head_dim = qk_nope 128 + qk_rope 64 = 192 (the rendered config's head_dim 64 is the rope part)
    ("deepseek-ai/DeepSeek-V2-Lite-Chat", 27, 16, 192, {"mla": 27}, None, 31412968448),
    ("deepseek-ai/DeepSeek-V3", 61, 128, 192, {"mla": 61}, "fp8", 688586727753),
    # gemma-3: full when (i + 1) % 6 == 0 -> i = 5, 11, ..., 59: 10 full, 52 sliding (62 layers)
    ("google/gemma-3-27b-it", 62, 16, 128, {"full": 10, "sliding": 52}, None, 54864813280),
    # 34 layers: full at 5, 11, 17, 23, 29 -> 5 full, 29 sliding
    ("google/gemma-3-4b-it", 34, 4, 256, {"full": 5, "sliding": 29}, None, 8600158944),
    # granite-4.0-h: layer_types 'attention' at 5, 15, 25, 35
    ("ibm-granite/granite-4.0-h-small", 40, 8, 128, {"full": 4, "mamba2": 36}, None, None),
    ("meta-llama/Llama-3.1-8B-Instruct", 32, 8, 128, {"full": 32}, None, 16060522496),
    ("meta-llama/Llama-3.1-8B", 32, 8, 128, {"full": 32}, None, 16060522496),
    ("meta-llama/Llama-3.2-3B-Instruct", 28, 8, 128, {"full": 28}, None, 6425499648),
    ("meta-llama/Llama-3.3-70B-Instruct", 80, 8, 128, {"full": 80}, None, 141107412992),
    # phi-4: no head_dim key -> 5120 / 40 = 128
    ("microsoft/phi-4", 40, 10, 128, {"full": 40}, None, 29319014400),
    ("mistralai/Mistral-7B-Instruct-v0.3", 32, 8, 128, {"full": 32}, None, 14496047104),
    ("mistralai/Mistral-Small-3.2-24B-Instruct-2506", 40, 8, 128, {"full": 40}, None, None),
    ("nvidia/DeepSeek-V3-0324-NVFP4", 61, 128, 192, {"mla": 61}, "modelopt_fp4", None),
    ("nvidia/Llama-3.1-70B-Instruct-FP8", 80, 8, 128, {"full": 80}, "modelopt", None),
    # "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-": 27 M, 4 *, 25 -
    (
        "nvidia/NVIDIA-Nemotron-Nano-9B-v2",
        56,
        8,
        128,
        {"full": 4, "mamba2": 27, "none": 25},
        None,
        17776454656,
    ),
    # Nemotron-3-Nano: "MEMEM*EMEMEM*...": 23 Mamba2, 23 MoE (no KV), 6 attention
    (
        "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
        52,
        2,
        128,
        {"full": 6, "mamba2": 23, "none": 23},
        None,
        None,
    ),
    (
        "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4",
        52,
        2,
        128,
        {"full": 6, "mamba2": 23, "none": 23},
        "modelopt_fp4",
        None,
    ),
    ("nvidia/Qwen3-235B-A22B-NVFP4", 94, 4, 128, {"full": 94}, "modelopt_fp4", None),
    ("nvidia/Qwen3-30B-A3B-NVFP4", 48, 4, 128, {"full": 48}, "modelopt_fp4", None),
    ("nvidia/Qwen3-32B-NVFP4", 64, 8, 128, {"full": 64}, "modelopt_fp4", None),
    # gpt-oss: layer_types alternate sliding (even) / full (odd)
    ("openai/gpt-oss-120b", 36, 8, 64, {"full": 18, "sliding": 18}, "mxfp4", 65248815744),
    ("openai/gpt-oss-20b", 24, 8, 64, {"full": 12, "sliding": 12}, "mxfp4", 13761264768),
    ("Qwen/Qwen3-235B-A22B", 94, 4, 128, {"full": 94}, None, 470187269120),
    ("Qwen/Qwen3-235B-A22B-FP8", 94, 4, 128, {"full": 94}, "fp8", None),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", 94, 4, 128, {"full": 94}, "fp8", 236416915456),
    ("Qwen/Qwen3-30B-A3B", 48, 4, 128, {"full": 48}, None, 61064245248),
    ("Qwen/Qwen3-30B-A3B-FP8", 48, 4, 128, {"full": 48}, "fp8", None),
    ("Qwen/Qwen3-30B-A3B-Instruct-2507", 48, 4, 128, {"full": 48}, None, 61064245248),
    ("Qwen/Qwen3-30B-A3B-Thinking-2507-FP8", 48, 4, 128, {"full": 48}, "fp8", 31170895872),
    ("Qwen/Qwen3-32B", 64, 8, 128, {"full": 64}, None, 65524246528),
    ("Qwen/Qwen3-32B-AWQ", 64, 8, 128, {"full": 64}, "awq", 19325298688),
    ("Qwen/Qwen3-32B-FP8", 64, 8, 128, {"full": 64}, "fp8", None),
    ("Qwen/Qwen3-4B-Instruct-2507", 36, 8, 128, {"full": 36}, None, 8045591552),
    ("Qwen/Qwen3-8B", 36, 8, 128, {"full": 36}, None, 16381470720),
    ("Qwen/Qwen3-8B-FP8", 36, 8, 128, {"full": 36}, "fp8", 9436551168),
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct", 48, 4, 128, {"full": 48}, None, 61064245248),
    ("Qwen/Qwen3-VL-30B-A3B-Instruct", 48, 4, 128, {"full": 48}, None, None),
    ("Qwen/Qwen3-VL-4B-Instruct", 36, 8, 128, {"full": 36}, None, None),
    ("Qwen/Qwen3-VL-8B-Instruct", 36, 8, 128, {"full": 36}, None, None),
    # Qwen2.5-7B: published config values (not a copied file, see the entry's sources); 3584 / 28 = 128
    ("Qwen/Qwen2.5-7B", 28, 4, 128, {"full": 28}, None, 15231233024),
    ("Qwen/Qwen2.5-7B-Instruct", 28, 4, 128, {"full": 28}, None, 15231233024),
    # Qwen3-Next: full_attention_interval 4 -> layers 3, 7, ..., 47 full (12), 36 GatedDeltaNet
    ("Qwen/Qwen3-Next-80B-A3B-Instruct", 48, 2, 256, {"full": 12, "gdn": 36}, None, 162649725440),
    # rendered config: same split from layer_types ('linear_attention' -> gdn)
    ("Qwen/Qwen3-Next-80B-A3B-Instruct-FP8", 48, 2, 256, {"full": 12, "gdn": 36}, "fp8", 82032869120),
    # Falcon-H1: attention AND Mamba2 in every one of the 44 layers -> 88 cache entries
    ("tiiuae/Falcon-H1-7B-Instruct", 44, 2, 128, {"full": 44, "mamba2": 44}, None, None),
    ("zai-org/GLM-4.5-Air", 46, 8, 128, {"full": 46}, None, None),
]


def test_table_covers_the_whole_catalog():
    assert sorted(row[0] for row in CATALOG) == sorted(catalog.catalog_ids())


@pytest.mark.parametrize(("model_id", "layers", "kv", "head_dim", "kinds", "quant", "ckpt"), CATALOG)
def test_every_catalog_model_resolves(model_id, layers, kv, head_dim, kinds, quant, ckpt):
    f = _catalog_facts(model_id)
    assert f.id == model_id
    assert f.source == "catalog"
    assert f.num_hidden_layers == layers
    assert f.num_key_value_heads == kv
    assert f.head_dim == head_dim
    assert dict(Counter(f.layer_kinds)) == kinds
    assert f.quantization == quant
    assert f.checkpoint_bytes == ckpt
    assert f.estimated_bytes and f.estimated_bytes > 0


# Exact checkpoint totals the config-based estimate must reproduce (sum of tensor bytes).
@pytest.mark.parametrize(
    ("model_id", "tolerance"),
    [
        (
            "Qwen/Qwen3-4B-Instruct-2507",
            0.001,
        ),  # estimate 8,044,936,192 = 2 x 4,022,468,096; index says +655,360
        ("Qwen/Qwen3-8B", 0.0),
        ("Qwen/Qwen3-32B-AWQ", 0.0),  # int4 g128 + fp16 scales + int4 zeros, embeddings/lm_head fp16
        ("Qwen/Qwen3-8B-FP8", 0.0002),
        ("Qwen/Qwen3-30B-A3B-Instruct-2507", 0.0),
        ("Qwen/Qwen3-30B-A3B-Thinking-2507-FP8", 0.0002),
        ("Qwen/Qwen3-Next-80B-A3B-Instruct", 0.0),  # includes the MTP block
        ("Qwen/Qwen3-Next-80B-A3B-Instruct-FP8", 0.0),
        ("meta-llama/Llama-3.2-3B-Instruct", 0.0),  # tied embeddings
        ("meta-llama/Llama-3.1-8B", 0.0),  # 2 x 8,030,261,248 from the config alone
        ("Qwen/Qwen2.5-7B-Instruct", 0.0),
        ("openai/gpt-oss-20b", 0.0),  # mxfp4 experts
        ("openai/gpt-oss-120b", 0.0),
        ("deepseek-ai/DeepSeek-V2-Lite-Chat", 0.0),
        ("deepseek-ai/DeepSeek-V3", 0.0001),  # fp8 + fp32 block scales + MTP (with its own embed/head)
        ("google/gemma-3-27b-it", 0.0005),  # text + SigLIP tower + projector
        ("nvidia/NVIDIA-Nemotron-Nano-9B-v2", 0.0),
        ("microsoft/phi-4", 0.0),
    ],
)
def test_estimate_reproduces_checkpoint_totals(model_id, tolerance):
    f = _catalog_facts(model_id, with_param_count=False)  # the estimate from the config alone
    assert f.checkpoint_bytes is not None
    assert abs(f.estimated_bytes - f.checkpoint_bytes) <= tolerance * f.checkpoint_bytes


def test_estimated_param_counts_match_hf_counts():
    # granite-4.0-h-small: HF safetensors parameter total 32,207,337,984 (catalog extra), no size known
    e = catalog.lookup("ibm-granite/granite-4.0-h-small")
    f = _catalog_facts(e.id)
    assert estimate_params(e.config, f).total == 32_207_337_984
    # GLM-4.5-Air: 110,468,824,832 including the MTP layer (its own embed_tokens + shared_head)
    e = catalog.lookup("zai-org/GLM-4.5-Air")
    f = _catalog_facts(e.id)
    assert estimate_params(e.config, f).total == 110_468_824_832


def test_qwen3_4b_hand_checked():
    f = _catalog_facts("Qwen/Qwen3-4B-Instruct-2507")
    # config: 36 layers, 32 q / 8 kv heads, head_dim 128 (explicit; hidden/heads would be 80), tied
    assert (f.num_attention_heads, f.hidden_size, f.vocab_size) == (32, 2560, 151936)
    assert f.tie_word_embeddings is True
    assert f.dtype == "bfloat16"
    assert f.unloaded_bytes == 0 and not f.is_hybrid and f.mamba is None
    assert f.max_position_embeddings == 262144
    # per layer: attn 2560*32*128*2 + 2*2560*8*128 = 26,214,400; MLP 3*2560*9728 = 74,711,040;
    # norms 2*2560 + q/k norms 2*128 = 5,376 -> 100,930,816 x 36 = 3,633,509,376
    # + embeddings 151,936*2,560 = 388,956,160 + final norm 2,560 = 4,022,468,096 params
    assert f.param_count == 4_022_468_096
    assert f.estimated_bytes == 2 * 4_022_468_096


def test_qwen25_7b_param_count_from_the_config_alone():
    # per layer: q/o 2 x 3584 x 3584 = 25,690,112; k/v 2 x 3584 x 512 = 3,670,016; q/k/v biases
    # 3584 + 512 + 512 = 4,608; MLP 3 x 3584 x 18944 = 203,685,888; 2 norms 7,168
    # -> 233,057,792 x 28 = 6,525,618,176; + untied embed/lm_head 2 x 152,064 x 3,584 = 1,089,994,752
    # + final norm 3,584 = 7,615,616,512 (the published 7.61 B), bf16 -> 15,231,233,024 B
    for model_id in ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B"):
        f = _catalog_facts(model_id, with_param_count=False)
        assert estimate_params(catalog.lookup(model_id).config, f).total == 7_615_616_512
        assert f.estimated_bytes == f.checkpoint_bytes == 15_231_233_024
        assert f.sliding_window is None  # use_sliding_window false
    assert _catalog_facts("Qwen/Qwen2.5-7B-Instruct").max_position_embeddings == 32768
    assert _catalog_facts("Qwen/Qwen2.5-7B").max_position_embeddings == 131072


def test_qwen3_next_fp8_hand_checked():
    f = _catalog_facts("Qwen/Qwen3-Next-80B-A3B-Instruct-FP8")
    assert f.layer_kinds[:4] == ("gdn", "gdn", "gdn", "full")
    assert f.num_attention_layers == 12 and f.is_hybrid
    m = f.mamba
    assert m is not None and m.kind == "gdn"
    assert (m.linear_num_key_heads, m.linear_num_value_heads) == (16, 32)
    assert (m.linear_key_head_dim, m.linear_value_head_dim, m.conv_kernel) == (128, 128, 4)
    assert m.ssm_dtype is None  # Qwen3-Next does not force the SSM dtype
    assert (f.num_experts, f.num_experts_per_tok, f.moe_intermediate_size) == (512, 10, 512)
    # fp8 e4m3 with 128x128 fp32 block scales: 8 + 32/16384 bits per weight
    assert f.quant_bits == pytest.approx(8.00195, abs=1e-4)
    # MTP block (one full-attention MoE layer), vLLM loads it only with speculative decoding:
    #   fp8: q_proj 2048*16*256*2 (gated) + k/v 2*2048*2*256 + o 16*256*2048 = 27,262,976
    #        experts 512*3*2048*512 = 1,610,612,736; shared expert 3*2048*512 = 3,145,728
    #        -> 1,641,021,440 weights * (1 + 1/4096 for scales) = 1,641,422,080 bytes
    #   bf16: norms 4,096 + q/k norm 512 + router 1,048,576 + shared gate 2,048
    #         + enorm/hnorm/final 6,144 + fc 2*2048*2048 = 8,388,608 -> 9,449,984 * 2 = 18,899,968 bytes
    assert f.unloaded_bytes == 1_641_422_080 + 18_899_968
    assert any("MTP" in n for n in f.notes)


def test_qwen3_next_bf16_mtp_is_two_percent():
    f = _catalog_facts("Qwen/Qwen3-Next-80B-A3B-Instruct")
    # the FP8 sibling's MTP block (test above), every tensor in bf16: 1,641,021,440 + 9,449,984 params
    #   = 1,650,471,424 x 2 B = 3,300,942,848 B (~2% of the 162.6 GB checkpoint)
    assert f.unloaded_bytes == 3_300_942_848


def test_deepseek_v3_mla_and_mtp():
    f = _catalog_facts("deepseek-ai/DeepSeek-V3")
    assert (f.kv_lora_rank, f.qk_rope_head_dim) == (512, 64)  # 576 cached values per token per layer
    assert f.num_attention_layers == 61 and not f.is_hybrid
    assert (f.num_experts, f.num_experts_per_tok) == (256, 8)
    # MTP layer: MoE 256*3*7168*2048 = 11.27e9 + shared 44e6 + MLA ~187e6 fp8 (~11.51 GB) plus
    # embed + head 2*129280*7168 = 1.85e9 and eh_proj 2*7168^2 = 103e6 in bf16 (~3.91 GB) -> ~15.4 GB
    assert 15.3e9 < f.unloaded_bytes < 15.5e9
    assert any("MLA" in n for n in f.notes)


def test_gemma3_27b_sliding_pattern_and_multimodal():
    f = _catalog_facts("google/gemma-3-27b-it")
    assert f.layer_kinds[:6] == ("sliding",) * 5 + ("full",)
    assert f.sliding_window == 1024
    assert f.multimodal is True
    assert f.vocab_size == 262208  # Gemma3TextConfig default (not in the file)
    assert f.tie_word_embeddings is True
    assert any("vision tower" in n for n in f.notes)


def test_gpt_oss_20b_alternating_sliding_mxfp4():
    f = _catalog_facts("openai/gpt-oss-20b")
    assert f.layer_kinds[:4] == ("sliding", "full", "sliding", "full")
    assert f.sliding_window == 128
    assert (f.quantization, f.quant_bits) == ("mxfp4", 4.25)  # 4-bit + e8m0 scale per 32
    assert (f.num_experts, f.num_experts_per_tok, f.moe_intermediate_size) == (32, 4, 2880)


def test_nemotron_nano_9b_v2_pattern():
    f = _catalog_facts("nvidia/NVIDIA-Nemotron-Nano-9B-v2")
    p = "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-"
    assert f.layer_kinds == tuple({"M": "mamba2", "*": "full", "-": "none"}[c] for c in p)
    m = f.mamba
    assert (m.kind, m.num_heads, m.head_dim, m.n_groups, m.d_state, m.conv_kernel) == (
        "mamba2",
        128,
        80,
        8,
        128,
        4,
    )
    assert m.intermediate_size == 128 * 80  # 10,240
    assert f.is_hybrid


def test_granite_4_h_small():
    f = _catalog_facts("ibm-granite/granite-4.0-h-small")
    assert [i for i, k in enumerate(f.layer_kinds) if k == "full"] == [5, 15, 25, 35]
    m = f.mamba
    # mamba_expand 2 * hidden 4096 = 8192 = 128 heads * 64
    assert (m.kind, m.num_heads, m.head_dim, m.n_groups, m.d_state, m.intermediate_size) == (
        "mamba2",
        128,
        64,
        1,
        128,
        8192,
    )
    assert (f.num_experts, f.num_experts_per_tok, f.moe_intermediate_size) == (72, 10, 768)
    assert f.tie_word_embeddings is True
    assert f.checkpoint_bytes is None and f.estimated_bytes == 2 * 32_207_337_984


def test_falcon_h1_parallel_hybrid():
    f = _catalog_facts("tiiuae/Falcon-H1-7B-Instruct")
    assert f.parallel_mamba is True
    assert len(f.layer_kinds) == 2 * f.num_hidden_layers == 88
    assert f.layer_kinds[:4] == ("full", "mamba2", "full", "mamba2")
    assert f.num_attention_layers == 44 and f.is_hybrid
    m = f.mamba
    # mamba_d_ssm 3072 = 24 heads * 128
    assert (m.num_heads, m.head_dim, m.d_state, m.n_groups, m.intermediate_size) == (24, 128, 256, 1, 3072)
    # ~7.59B params in bf16
    assert 7.5e9 < f.param_count < 7.7e9


def test_jamba_mamba1_and_moe():
    f = _catalog_facts("ai21labs/AI21-Jamba-Mini-1.7")
    assert [i for i, k in enumerate(f.layer_kinds) if k == "full"] == [4, 12, 20, 28]
    m = f.mamba
    # Mamba1: d_state 16, d_conv 4, intermediate = expand 2 * hidden 4096
    assert (m.kind, m.d_state, m.conv_kernel, m.intermediate_size) == ("mamba", 16, 4, 8192)
    assert (f.num_experts, f.num_experts_per_tok) == (16, 2)
    # AI21 quotes 52B total parameters
    assert 51e9 < f.param_count < 53e9


def test_qwen3_32b_awq():
    f = _catalog_facts("Qwen/Qwen3-32B-AWQ")
    assert f.dtype == "float16"
    # int4 + fp16 scale per 128 + packed int4 zero per 128: 4 + 16/128 + 4/128 = 4.15625
    assert f.quant_bits == 4.15625


@pytest.mark.parametrize(
    "model_id", ["nvidia/Qwen3-32B-NVFP4", "nvidia/Qwen3-30B-A3B-NVFP4", "nvidia/DeepSeek-V3-0324-NVFP4"]
)
def test_nvfp4_from_hf_quant_config(model_id):
    f = _catalog_facts(model_id)
    # NVFP4: e2m1 + one fp8 scale per 16 values = 4.5 bits
    assert (f.quantization, f.quant_bits) == ("modelopt_fp4", 4.5)
    # Qwen3-32B-NVFP4: 31.2e9 linear weights * 4.5/8 + 2 * 151936 * 5120 bf16 embed/head (3.1e9 B) ~ 20.7e9 B
    if model_id == "nvidia/Qwen3-32B-NVFP4":
        assert 20.0e9 < f.estimated_bytes < 21.0e9


def test_multimodal_trimmed_entries_flagged():
    f = _catalog_facts("mistralai/Mistral-Small-3.2-24B-Instruct-2506")
    assert f.multimodal is True
    # size unknown; the HF parameter count (24,011,361,280, vision tower included) x 2 bytes beats
    # the text-only estimate from the trimmed config
    assert f.checkpoint_bytes is None and f.estimated_bytes == 48_022_722_560
    g = _catalog_facts("mistralai/Mistral-Small-3.2-24B-Instruct-2506", with_param_count=False)
    assert g.estimated_bytes < 48_022_722_560 and any("text backbone only" in n for n in g.notes)
    assert _catalog_facts("Qwen/Qwen3-8B").multimodal is False


# ------------------------------------------------------------------ hand-written configs

LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "intermediate_size": 11008,
    "vocab_size": 32000,
    "torch_dtype": "float16",
}


def test_mha_defaults_kv_heads_and_head_dim():
    f = facts_from_config(LLAMA, model_id="llama-2-7b", source="local")
    # no num_key_value_heads -> MHA (32); no head_dim -> 4096 / 32 = 128
    assert (f.num_key_value_heads, f.head_dim) == (32, 128)
    assert f.dtype == "float16"
    # Llama-2-7B: 6,738,415,616 params
    assert f.param_count == 6_738_415_616


def test_mistral_v01_all_sliding():
    cfg = {
        **LLAMA,
        "model_type": "mistral",
        "architectures": ["MistralForCausalLM"],
        "num_key_value_heads": 8,
    }
    cfg["sliding_window"] = 4096
    f = facts_from_config(cfg, model_id="mistralai/Mistral-7B-v0.1", source="local")
    assert set(f.layer_kinds) == {"sliding"} and f.sliding_window == 4096


def test_qwen2_use_sliding_window_from_max_window_layers():
    cfg = {
        **LLAMA,
        "model_type": "qwen2",
        "sliding_window": 4096,
        "use_sliding_window": True,
        "max_window_layers": 28,
    }
    f = facts_from_config(cfg, model_id="q", source="local")
    assert f.layer_kinds.count("full") == 28 and f.layer_kinds.count("sliding") == 4


def test_mixtral_moe():
    cfg = {
        **LLAMA,
        "model_type": "mixtral",
        "architectures": ["MixtralForCausalLM"],
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "vocab_size": 32000,
        "sliding_window": None,
        "torch_dtype": "bfloat16",
    }
    f = facts_from_config(cfg, model_id="mistralai/Mixtral-8x7B-v0.1", source="local")
    assert (f.num_experts, f.num_experts_per_tok, f.moe_intermediate_size) == (8, 2, 14336)
    assert set(f.layer_kinds) == {"full"}
    # Mixtral-8x7B: 46.70B params
    assert 46.6e9 < f.param_count < 46.8e9


def test_llama4_chunked_local_attention_in_text_config():
    text = {
        "model_type": "llama4_text",
        "hidden_size": 5120,
        "num_hidden_layers": 48,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 202048,
        "intermediate_size": 8192,
        "num_local_experts": 16,
        "num_experts_per_tok": 1,
        "attention_chunk_size": 8192,
    }
    cfg = {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4", "text_config": text}
    f = facts_from_config(cfg, model_id="meta-llama/Llama-4-Scout-17B-16E-Instruct", source="local")
    # NoPE (global) every 4th layer: 12 full, 36 chunked
    assert Counter(f.layer_kinds) == {"chunked": 36, "full": 12}
    assert f.attention_chunk_size == 8192 and f.multimodal


def test_qwen2_vl_nested_text_backbone():
    cfg = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "torch_dtype": "bfloat16",
        "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "patch_size": 14},
        "text_config": {
            "model_type": "qwen2_5_vl_text",
            "hidden_size": 3584,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
            "intermediate_size": 18944,
        },
    }
    f = facts_from_config(cfg, model_id="Qwen/Qwen2.5-VL-7B-Instruct", source="hub")
    assert (f.num_hidden_layers, f.num_key_value_heads, f.head_dim) == (28, 4, 128)
    assert f.multimodal is True


@pytest.mark.parametrize(
    ("qc", "method", "bits"),
    [
        # compressed-tensors FP8 (W8A8 float)
        (
            {
                "quant_method": "compressed-tensors",
                "format": "float-quantized",
                "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}},
            },
            "compressed-tensors",
            8.0,
        ),
        # compressed-tensors W4A16 int4 group 128 symmetric: 4 + 16/128
        (
            {
                "quant_method": "compressed-tensors",
                "format": "pack-quantized",
                "config_groups": {
                    "group_0": {
                        "weights": {"num_bits": 4, "type": "int", "group_size": 128, "symmetric": True}
                    }
                },
            },
            "compressed-tensors",
            4.125,
        ),
        # compressed-tensors NVFP4
        (
            {
                "quant_method": "compressed-tensors",
                "format": "nvfp4-pack-quantized",
                "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float", "group_size": 16}}},
            },
            "compressed-tensors",
            4.5,
        ),
        # GPTQ int4 g128 (zeros packed): 4 + 16/128 + 4/128
        ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "gptq", 4.15625),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "modelopt_fp4", 4.5),
        ({"quant_method": "modelopt", "quant_algo": "FP8"}, "modelopt", 8.0),
        ({"quant_method": "fp8", "activation_scheme": "dynamic"}, "fp8", 8.0),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "bitsandbytes", 4.5),
    ],
)
def test_quantization_methods(qc, method, bits):
    q = read_quantization({**LLAMA, "quantization_config": qc})
    assert (q.method, q.bits) == (method, bits)
    f = facts_from_config({**LLAMA, "quantization_config": qc}, model_id="x", source="local")
    assert (f.quantization, f.quant_bits) == (method, bits)
    assert f.estimated_bytes < 2 * f.param_count  # quantized weights are smaller than bf16


def test_pure_mamba2():
    cfg = {
        "architectures": ["Mamba2ForCausalLM"],
        "model_type": "mamba2",
        "hidden_size": 2560,
        "num_hidden_layers": 64,
        "num_heads": 80,
        "head_dim": 64,
        "n_groups": 1,
        "state_size": 128,
        "expand": 2,
        "conv_kernel": 4,
        "vocab_size": 50288,
    }
    f = facts_from_config(cfg, model_id="state-spaces/mamba2-2.7b", source="local")
    assert set(f.layer_kinds) == {"mamba2"} and f.num_attention_layers == 0
    assert (f.mamba.num_heads, f.mamba.intermediate_size, f.mamba.d_state) == (80, 5120, 128)


def test_missing_facts_raise_unknown_model_error_naming_them():
    cfg = {"architectures": ["WeirdForCausalLM"], "model_type": "weird", "hidden_size": 1024}
    with pytest.raises(UnknownModelError) as ei:
        facts_from_config(cfg, model_id="org/weird", source="hub", field="models[w].model")
    e = ei.value
    assert e.field == "models[w].model"
    assert "WeirdForCausalLM" in e.problem
    assert (
        "num_hidden_layers" in e.problem and "num_attention_heads" in e.problem and "vocab_size" in e.problem
    )
    assert "models[w].facts" in e.fix and "weights_gib" in e.fix and "head_dim" in e.fix


def test_unknown_layer_type_is_an_error():
    cfg = {**LLAMA, "layer_types": ["full_attention"] * 31 + ["hyper_attention"]}
    with pytest.raises(UnknownModelError, match="hyper_attention"):
        facts_from_config(cfg, model_id="x", source="local", field="models[x].model")


def test_gdn_without_head_shapes_is_an_error():
    cfg = {**LLAMA, "model_type": "qwen3_next", "num_key_value_heads": 2}
    with pytest.raises(UnknownModelError, match="linear_num_key_heads"):
        facts_from_config(cfg, model_id="x", source="local", field="models[x].model")


# ------------------------------------------------------------------ manual facts


def test_override_on_top_of_resolved_facts():
    f = _catalog_facts("Qwen/Qwen3-4B-Instruct-2507")
    o = ModelFactsOverride(num_key_value_heads=4, weights_gib=7.5, sliding_window=4096)
    g = apply_override(f, o)
    assert g.num_key_value_heads == 4
    assert g.checkpoint_bytes == int(7.5 * GiB)
    assert set(g.layer_kinds) == {"sliding"} and g.sliding_window == 4096
    assert g.head_dim == 128 and g.num_hidden_layers == 36  # untouched


def test_override_layer_count_rebuilds_layer_list():
    f = _catalog_facts("Qwen/Qwen3-4B-Instruct-2507")
    g = apply_override(f, ModelFactsOverride(num_hidden_layers=12))
    assert g.layer_kinds == ("full",) * 12


def test_manual_facts_alone():
    o = ModelFactsOverride(
        num_hidden_layers=24,
        hidden_size=2048,
        num_attention_heads=16,
        num_key_value_heads=4,
        vocab_size=50000,
        weights_gib=3,
    )
    f = facts_from_override("my/secret-model", o, field="models[s].model")
    assert f.source == "manual"
    assert (f.head_dim, f.num_key_value_heads, f.checkpoint_bytes) == (128, 4, 3 * GiB)  # 2048 / 16 = 128


def test_manual_facts_incomplete_names_what_is_missing():
    with pytest.raises(UnknownModelError) as ei:
        facts_from_override(
            "my/secret-model", ModelFactsOverride(num_hidden_layers=24), field="models[s].model"
        )
    assert "hidden_size" in ei.value.problem and "weights_gib" in ei.value.problem
    assert "models[s].facts" in ei.value.fix


def test_nemotron_h_moe_layers_count_experts():
    base = {
        "architectures": ["NemotronHForCausalLM"],
        "model_type": "nemotron_h",
        "hidden_size": 16,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "vocab_size": 32,
        "intermediate_size": 32,
        "mamba_num_heads": 4,
        "mamba_head_dim": 4,
        "n_groups": 1,
        "ssm_state_size": 8,
        "conv_kernel": 4,
        "n_routed_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 8,
        "moe_shared_expert_intermediate_size": 8,
    }
    moe = facts_from_config({**base, "hybrid_override_pattern": "ME*E"}, model_id="moe", source="local")
    dense = facts_from_config({**base, "hybrid_override_pattern": "M-*-"}, model_id="dense", source="local")
    assert moe.layer_kinds == ("mamba2", "none", "full", "none")
    # E layer: norm 16 + experts 4*2*16*8 = 1,024 + router 16*4 = 64 + shared 2*16*8 = 256 -> 1,360
    # - layer: norm 16 + relu^2 MLP 2*16*32 = 1,024 -> 1,040; two of each: 2 * 320 = 640
    assert moe.param_count - dense.param_count == 640


def test_minimax_attn_type_list():
    cfg = {
        **LLAMA,
        "model_type": "minimax",
        "num_hidden_layers": 8,
        "attn_type_list": [0, 0, 0, 0, 0, 0, 0, 1],
    }
    f = facts_from_config(cfg, model_id="MiniMaxAI/MiniMax-Text-01", source="local")
    assert Counter(f.layer_kinds) == {"linear": 7, "full": 1}
    # lightning attention state (heads, head_dim, head_dim)
    assert (f.mamba.kind, f.mamba.num_heads, f.mamba.head_dim) == ("linear", 32, 128)


def test_unknown_hybrid_layout_is_an_error_not_a_dense_guess():
    # Zamba2-style: Mamba state keys but a layout residency does not read
    cfg = {
        **LLAMA,
        "model_type": "zamba2",
        "mamba_d_state": 64,
        "layers_block_type": ["mamba", "hybrid"] * 16,
    }
    with pytest.raises(UnknownModelError) as ei:
        facts_from_config(cfg, model_id="Zyphra/Zamba2-7B", source="hub", field="models[z].model")
    assert "mamba_d_state" in ei.value.problem and "models[z].facts" in ei.value.fix


def test_transformers5_rendered_mamba_layers_as_linear_attention():
    # transformers 5 renders granite-4.0-h's layer_types as linear_attention / full_attention
    e = catalog.lookup("ibm-granite/granite-4.0-h-small")
    cfg = dict(e.config)
    cfg["layer_types"] = [
        "full_attention" if t == "attention" else "linear_attention" for t in cfg["layer_types"]
    ]
    f = facts_from_config(cfg, model_id=e.id, source="catalog")
    assert Counter(f.layer_kinds) == {"mamba2": 36, "full": 4}
    assert f.mamba.kind == "mamba2"


def test_nemotron_h_layers_block_type_list_reads_like_the_pattern():
    # newer Nemotron-H configs (and transformers 5.x) carry a per-layer list instead of the pattern string
    e = catalog.lookup("nvidia/NVIDIA-Nemotron-Nano-9B-v2")
    ref = facts_from_config(e.config, model_id=e.id, source="catalog")
    symbol = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}
    cfg = {k: v for k, v in e.config.items() if k not in ("hybrid_override_pattern", "num_hidden_layers")}
    cfg["layers_block_type"] = [symbol[ch] for ch in e.config["hybrid_override_pattern"]]
    f = facts_from_config(cfg, model_id=e.id, source="local")
    assert f.layer_kinds == ref.layer_kinds and Counter(f.layer_kinds) == {
        "mamba2": 27,
        "none": 25,
        "full": 4,
    }
    assert f.estimated_bytes == ref.estimated_bytes and f.mamba == ref.mamba
    # inside a multimodal wrapper's text_config too
    g = facts_from_config({"text_config": cfg, "architectures": ["X"]}, model_id=e.id, source="local")
    assert g.layer_kinds == ref.layer_kinds


def test_nemotron_h_moe_layer_types_count_their_experts():
    # a Nemotron-H MoE config written with transformers 5.x's generic layer_types key: the MoE layers
    # ("moe") must reach the parameter estimate as they do through hybrid_override_pattern
    e = catalog.lookup("nvidia/NVIDIA-Nemotron-Nano-9B-v2")
    base = {k: v for k, v in e.config.items() if k != "hybrid_override_pattern"}
    moe = {**base, "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 1024}
    pattern = "M" + "E" * 27 + "*" + "M" * 27  # 56 layers
    with_pattern = facts_from_config(
        {**moe, "hybrid_override_pattern": pattern}, model_id="x", source="local"
    )
    symbol = {"M": "linear_attention", "*": "full_attention", "E": "moe"}
    with_types = facts_from_config(
        {**moe, "layer_types": [symbol[ch] for ch in pattern]}, model_id="x", source="local"
    )
    assert with_types.layer_kinds == with_pattern.layer_kinds
    assert with_types.estimated_bytes == with_pattern.estimated_bytes
    assert with_types.num_experts == 8


def test_nemotron3_nano_nvfp4_keeps_the_excluded_mixers_unquantized():
    # hf_quant_config exclude_modules names, layer by layer, the 6 attention mixers ("backbone.layers.5.mixer.q_proj")
    # and the in/out projections of the 6 Mamba layers before them ("backbone.layers.4.mixer.in_proj"); the other
    # Mamba layers only list conv1d (not a linear). Those 12 mixers stay bf16:
    # Mamba2 (h 2688, 64 x 64 heads = 4096, conv 4096 + 2 x 8 x 128 = 6144): in_proj 2688 x (4096 + 6144 + 64)
    # + out_proj 4096 x 2688 = 38,707,200; attention q 2688 x 32 x 128 + k/v 2 x 2688 x 2 x 128 + o 4096 x 2688
    # = 23,396,352 -> 6 x (38,707,200 + 23,396,352) = 372,621,312 params at 2 B instead of 4.5 bits (0.5625 B).
    e = catalog.lookup("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4")
    assert e is not None and e.hf_quant_config is not None
    excluded = facts_from_config(e.config, model_id=e.id, source="catalog", hf_quant_config=e.hf_quant_config)
    q = dict(e.hf_quant_config["quantization"], exclude_modules=["lm_head"])
    ignored = facts_from_config(
        e.config, model_id=e.id, source="catalog", hf_quant_config={**e.hf_quant_config, "quantization": q}
    )
    assert excluded.estimated_bytes - ignored.estimated_bytes == 372_621_312 * (2 - 0.5625)
    # Qwen3-Next FP8 lists side tensors (linear_attn.in_proj_ba, conv1d) per layer: no mixer excluded
    nx = catalog.lookup("Qwen/Qwen3-Next-80B-A3B-Instruct-FP8")
    assert nx is not None and not read_quantization(nx.config).excluded_mixers


def test_qwen3_vl_catalog_entry_carries_the_processor_maximum():
    f = _catalog_facts("Qwen/Qwen3-VL-30B-A3B-Instruct")
    assert f.multimodal and f.vision is not None
    # 16,384 x 32 x 32 pixels (qwen-vl-utils IMAGE_MAX_TOKEN_NUM) -> 16,384 tokens, 65,536 patches
    assert (f.vision.item_tokens, f.vision.item_patches, f.vision.out_width) == (16_384, 65_536, 2048 * 4)
    # tower parameters module by module (qwen3_vl.py@0.20.2), counted in the estimate at 2 B each:
    # 538,631,408 (see bench/accuracy.py _QWEN3_VL_VISION_PARAMS for the inventory)
    assert estimate_params(e_cfg("Qwen/Qwen3-VL-30B-A3B-Instruct"), f).vision == 538_631_408


def e_cfg(model_id: str) -> dict:
    e = catalog.lookup(model_id)
    assert e is not None
    return e.config
