"""Weights memory per rank: what "Model loading took X GiB" prints (vllm-memory.md §10).

weights_per_rank = (checkpoint bytes - bytes vLLM does not load) split by TP, with the
vocab-parallel embedding / LM head padded to a multiple of 64 per partition, norms and routers
replicated, plus the rotary cos/sin cache (a persistent buffer: max_position x rotary_dim x dtype).

Worked example: Llama-3.1-8B checkpoint 16,060,522,496 B = 14.957 GiB + rope cache
131,072 x 128 x 2 B = 32 MiB -> 14.989 GiB (logged "Model loading took 14.9889 GiB").
"""

from __future__ import annotations

from residency.memory import moe
from residency.memory.dtypes import dtype_bytes
from residency.memory.model_facts import ModelFacts
from residency.memory.versions import VersionRules

# bytes per linear weight after online quantization (Fp8OnlineLinearMethod: float8_e4m3fn weight,
# fp8.py:500-564 @0.19.1)
ONLINE_FP8 = {"fp8": 1, "ptpc_fp8": 1, "fbgemm_fp8": 1}
DEFAULT_MAX_LEN = 2048  # config/model.py:2089 @0.19.1 (default_max_len)
# DEFAULT_VOCAB_PADDING_SIZE (vocab_parallel_embedding.py:23 @0.10.1.1, :28 @0.19.1, :36 @0.33.0)
VOCAB_PADDING = 64


def pad_vocab(vocab: int, pad: int = VOCAB_PADDING) -> int:
    return -(-vocab // pad) * pad


def rope_cache_bytes(f: ModelFacts, max_model_len: int | None = None) -> int:
    """RotaryEmbedding cos_sin_cache: max_position x rotary_dim in the model dtype, a buffer registered
    at construction (rotary_embedding/base.py:59-63 @0.19.1)."""
    if f.num_attention_layers == 0:
        return 0
    # no max_position_embeddings in the config: vLLM derives max_model_len with a default of 2048
    # (_get_and_verify_max_len, default_max_len, config/model.py:2089 @0.19.1); max_model_len first
    maxpos = f.max_position_embeddings or max_model_len or DEFAULT_MAX_LEN
    rotary_dim = f.qk_rope_head_dim or f.head_dim
    return maxpos * rotary_dim * dtype_bytes(f.dtype)


def runtime_dtype(f: ModelFacts, dtype: str | None = "auto") -> str:
    """The dtype vLLM runs unquantized tensors in: --dtype, or for "auto" the checkpoint's dtype, with a
    float32 checkpoint downcast to bfloat16 (_resolve_auto_dtype, config/model.py:1929-1951 @0.19.1;
    CUDA with cc >= 8.0 lists bfloat16 first)."""
    name = (dtype or "auto").lower().replace("torch.", "")
    if name == "auto":
        name = (f.dtype or "bfloat16").lower()
        return "bfloat16" if name in ("float32", "fp32", "float") else name
    return {"half": "float16", "float": "float32", "fp32": "float32", "bf16": "bfloat16"}.get(name, name)


def pp_layer_partition(num_layers: int, pp: int) -> list[int]:
    """Decoder layers per pipeline stage: vLLM's get_pp_indices without VLLM_PP_LAYER_PARTITION
    (distributed/utils.py:95-135 @0.19.1, same rule since 0.6): an even split, the remainder going
    one each to the stages before the last, counted back from the second-to-last.
    28 layers / 3 stages -> [9, 10, 9]; 32 / 2 -> [16, 16]."""
    parts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return parts


def weights_bytes_per_rank(
    f: ModelFacts,
    tp: int = 1,
    max_model_len: int | None = None,
    quantization: str | None = None,
    dtype: str | None = "auto",
    pp: int = 1,
    pp_rank: int | None = None,
    rules: VersionRules | None = None,
    compute_capability: str | None = None,
) -> int:
    """Torch-allocated bytes after loading, per GPU (TP rank of PP stage `pp_rank`, default the last).

    `quantization` is the --quantization flag: "fp8" on an unquantized checkpoint quantizes the
    linear layers online to 1 byte per weight plus a per-tensor fp32 scale (Fp8OnlineLinearMethod,
    fp8.py:500-564 @0.19.1; embeddings, LM head and norms are not LinearBase and stay in the model
    dtype); granite-4.0-micro: 0.48 GiB tied embedding + 3.14 G linear params x 1 B = 3.41 GiB
    (logged 3.42).
    `dtype` is --dtype: unquantized tensors are cast on load, so float32 on a bf16 checkpoint doubles
    them (Llama-3.1-8B: 2 x 14.989 = 29.98 GiB).
    Pipeline parallel (every version): stage r holds its pp_layer_partition share of the decoder
    layers; the first stage the input embedding, the last the LM head (and, with tied embeddings, its
    own embedding too: llama.py:373-390 / qwen2.py:388-416 @0.19.1); each stage process has its own
    rotary cache.
    MXFP4 experts (gpt-oss) are counted as the backend vLLM picks for the version and device
    allocates them (moe.mxfp4_loaded_expert_bytes; needs `rules`, else the checkpoint size is used).
    """
    total = f.checkpoint_bytes if f.checkpoint_bytes is not None else f.estimated_bytes
    if total is None:  # every reader sets one (config_facts estimates from the config)
        raise ValueError(f"{f.id}: facts carry neither checkpoint_bytes nor estimated_bytes")
    total -= f.unloaded_bytes
    ckpt_b = dtype_bytes(f.dtype)
    run_b = dtype_bytes(runtime_dtype(f, dtype))
    # the checkpoint stores the unpadded vocab; the body is everything else
    emb_ckpt = f.vocab_size * f.hidden_size * ckpt_b * (1 if f.tie_word_embeddings else 2)
    body = max(0, total - min(emb_ckpt, total))
    experts = 0  # per rank, added after the TP split of the rest
    if (f.quantization or "").lower() == "mxfp4" and f.num_experts and rules is not None:
        backend = moe.mxfp4_backend(compute_capability, rules)
        body = max(0, body - moe.mxfp4_checkpoint_expert_bytes(f))
        experts = moe.mxfp4_loaded_expert_bytes(f, tp, backend, rules, compute_capability)
    if quantization in ONLINE_FP8 and not f.quantization:
        body = body * ONLINE_FP8[quantization] // ckpt_b
    elif not f.quantization and run_b != ckpt_b:
        body = body * run_b // ckpt_b  # cast on load (float32 on a bf16 checkpoint: x2)
    rank = pp - 1 if pp_rank is None else pp_rank
    if pp > 1:
        layers = max(1, f.num_hidden_layers)
        body = body * pp_layer_partition(layers, pp)[rank] // layers
        experts = experts * pp_layer_partition(layers, pp)[rank] // layers
    emb_one = pad_vocab(f.vocab_size) // tp * f.hidden_size * run_b
    first, last = rank == 0, rank == pp - 1
    if f.tie_word_embeddings:
        emb = emb_one if (first or last) else 0
    else:
        emb = emb_one * (int(first) + int(last))
    rope = rope_cache_bytes(f, max_model_len) * run_b // ckpt_b
    return body // tp + experts + emb + rope
