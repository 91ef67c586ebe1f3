"""Weights memory per rank: what "Model loading took X GiB" prints (vllm-memory.md §10).

weights_per_rank = (checkpoint bytes - bytes vLLM does not load) split by TP, with the
vocab-parallel embedding / LM head padded to a multiple of 64 per partition, norms and routers
replicated, plus the rotary cos/sin cache (a persistent buffer: max_position x rotary_dim x dtype).

Worked example: Llama-3.1-8B checkpoint 16,060,522,496 B = 14.957 GiB + rope cache
131,072 x 128 x 2 B = 32 MiB -> 14.989 GiB (logged "Model loading took 14.9889 GiB").
"""

from __future__ import annotations

from residency.memory.kv_specs import dtype_bytes
from residency.memory.model_facts import ModelFacts

GiB = 2**30
MXFP4_PADDING = 1.065  # gpt-oss-120b: 64.38 GiB logged (Triton path) / 60.4 GiB of checkpoint body
ONLINE_FP8 = {"fp8": 1, "ptpc_fp8": 1, "fbgemm_fp8": 1}  # bytes per linear weight after online quantization
VOCAB_PADDING = 64  # DEFAULT_VOCAB_PADDING_SIZE (vocab_parallel_embedding.py:23, all versions)

# bits per weight of quantized linear layers, scales included (§10)
_QUANT_BITS = {
    "fp8": 8.0,
    "fbgemm_fp8": 8.0,
    "compressed-tensors": 8.0,
    "modelopt": 8.0,
    "ptpc_fp8": 8.0,
    "awq": 4.25,
    "awq_marlin": 4.25,
    "gptq": 4.25,
    "gptq_marlin": 4.25,
    "auto_round": 4.25,
    "bitsandbytes": 4.5,
    "modelopt_fp4": 4.5,
    "nvfp4": 4.5,
    "mxfp4": 4.25,
    "gguf": 8.5,
}


def pad_vocab(vocab: int, pad: int = VOCAB_PADDING) -> int:
    return -(-vocab // pad) * pad


def embedding_bytes(f: ModelFacts, tp: int) -> int:
    """Embedding + LM head per rank (bf16/fp16 even in quantized checkpoints; tied -> counted once)."""
    b = dtype_bytes(f.dtype)
    per_rank = pad_vocab(f.vocab_size) // tp * f.hidden_size * b
    return per_rank * (1 if f.tie_word_embeddings else 2)


def rope_cache_bytes(f: ModelFacts, max_model_len: int | None = None) -> int:
    """RotaryEmbedding cos_sin_cache: max_position x rotary_dim x model dtype (persistent buffer)."""
    if f.num_attention_layers == 0:
        return 0
    maxpos = f.max_position_embeddings or max_model_len or 8192
    rotary_dim = f.qk_rope_head_dim or f.head_dim
    return maxpos * rotary_dim * dtype_bytes(f.dtype)


def estimated_param_bytes(f: ModelFacts) -> int:
    """Checkpoint bytes from the architecture when the checkpoint size is unknown."""
    h, L = f.hidden_size, f.num_hidden_layers
    q = f.num_attention_heads * f.head_dim
    kv = 2 * f.num_key_value_heads * f.head_dim
    attn = h * (q + kv) + q * h
    if f.num_experts:
        mlp = f.num_experts * 3 * h * f.moe_intermediate_size + h * f.num_experts
    else:
        mlp = 3 * h * f.intermediate_size
    body_params = L * (attn + mlp)
    bits = f.quant_bits or (
        _QUANT_BITS.get(f.quantization or "", 16.0) if f.quantization else 8.0 * dtype_bytes(f.dtype)
    )
    body = int(body_params * bits / 8)
    emb = f.vocab_size * h * dtype_bytes(f.dtype) * (1 if f.tie_word_embeddings else 2)
    return body + emb


def weights_bytes_per_rank(
    f: ModelFacts, tp: int = 1, max_model_len: int | None = None, quantization: str | None = None
) -> int:
    """Torch-allocated bytes after loading, per TP rank.

    `quantization` is the --quantization flag: "fp8" on an unquantized checkpoint quantizes the
    linear layers online to 1 byte per weight (embeddings and LM head stay in the model dtype);
    granite-4.0-micro: 0.48 GiB tied embedding + 3.14 G linear params x 1 B = 3.41 GiB (logged 3.42).
    """
    total = f.checkpoint_bytes if f.checkpoint_bytes is not None else estimated_param_bytes(f)
    total -= f.unloaded_bytes
    emb_full = embedding_bytes(f, 1)
    # the checkpoint stores the unpadded vocab; the body is everything else
    emb_ckpt = f.vocab_size * f.hidden_size * dtype_bytes(f.dtype) * (1 if f.tie_word_embeddings else 2)
    body = max(0, total - min(emb_ckpt, total))
    del emb_full
    if (f.quantization or "").lower() == "mxfp4":
        # MXFP4 MoE weights are padded (intermediate to 64/128/256, hidden to 128/256; mxfp4.py:187-228
        # @0.11.0): gpt-oss-120b logs 64.38 GiB (Triton) / 65.97 GiB (Marlin) for a 60.8 GiB checkpoint.
        body = int(body * MXFP4_PADDING)
    if quantization in ONLINE_FP8 and not f.quantization:
        body = body * ONLINE_FP8[quantization] // dtype_bytes(f.dtype)
    return body // tp + embedding_bytes(f, tp) + rope_cache_bytes(f, max_model_len)


def weights_gib_per_rank(
    f: ModelFacts, tp: int = 1, max_model_len: int | None = None, quantization: str | None = None
) -> float:
    return weights_bytes_per_rank(f, tp, max_model_len, quantization) / GiB
