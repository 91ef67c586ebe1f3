"""The one table of element sizes: torch dtypes, KV-cache dtypes and quantized-weight storage.

Every module of the memory model that turns a dtype name into bytes, or a quantization scheme into
bits per stored weight, reads it here (config_facts for the checkpoint estimate, weights for the
loaded tensors, kv_specs for the cache pages).
"""

from __future__ import annotations

from typing import Any

# Bytes per element by the names config.json, `--dtype`, `--kv-cache-dtype` and
# `--mamba-ssm-cache-dtype` use (vLLM's STR_DTYPE_TO_TORCH_DTYPE, utils/torch_utils.py:33 @0.32.0,
# plus torch's own spellings as HF configs write them).
DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "bfloat16": 2,
    "bf16": 2,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "fp8": 1,
    "float8": 1,
    "float8_e4m3fn": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "fp8_inc": 1,
    "fp8_ds_mla": 1,
    "int8": 1,
    "uint8": 1,
}

_ALIASES = {"half": "float16", "float": "float32", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def dtype_bytes(name: str | None, default: int = 2) -> int:
    """Bytes per element of a dtype name; `default` for None/"auto"/unknown names."""
    if not name or name == "auto":
        return default
    return DTYPE_BYTES.get(name.lower().replace("torch.", ""), default)


def norm_dtype(v: Any) -> str | None:
    """A config's torch_dtype / dtype string in torch's long spelling ("bf16" -> "bfloat16")."""
    if not isinstance(v, str):
        return None
    name = v.removeprefix("torch.")
    return _ALIASES.get(name, name)


# --- quantized weights: bits per stored weight, scales and zero points included --------------------


def int_group_bits(bits: int, group: int | None, zero_point: bool = True) -> float:
    """Pack-quantized int-N weights: N bits per weight, plus per group of `group` input rows one
    params_dtype (16-bit) scale and, with `zero_point`, one N-bit zero point per output column.

    AWQ and GPTQ allocate the zero points whether or not the checkpoint is symmetric: qweight int32
    (in x out/pack), qzeros int32 (in/group x out/pack), scales params_dtype (in/group x out)
    (auto_awq.py:456-497, auto_gptq.py:375-429 @0.32.0); 4-bit group 128: 4 + 16/128 + 4/128 = 4.15625.
    compressed-tensors W4A16/W8A16 registers weight_zero_point only when not symmetric
    (compressed_tensors_wNa16.py:195-228 @0.32.0): symmetric 4-bit g128 = 4.125.
    Channel-wise (group -1 / None): N bits (+ one scale per output column, negligible).
    """
    if not group or group <= 0:
        return float(bits)
    return bits + 16 / group + (bits / group if zero_point else 0)


def block_fp8_bits(block: list[int] | None) -> float:
    """FP8 e4m3 weights (1 byte) + one fp32 scale per weight block (fp8.py create_weights,
    weight_scale_inv (out/b0 x in/b1) fp32 @0.32.0); 128x128 blocks: 8 + 32/16384 = 8.00195."""
    if isinstance(block, list) and len(block) == 2 and block[0] and block[1]:
        return 8 + 32 / (int(block[0]) * int(block[1]))
    return 8.0


# Microscaling formats: 4-bit e2m1 values plus one shared scale per block.
# OCP MX: one e8m0 scale per 32 values (OCP_MX_BLOCK_SIZE, quantization/utils/ocp_mx_utils.py:21 @0.32.0)
MXFP4_BITS = 4 + 8 / 32
# NVFP4: one fp8 e4m3 scale per 16 values (ModelOptNvFp4Config group_size 16, modelopt.py:734 @0.32.0)
NVFP4_BITS = 4 + 8 / 16


def bnb_bits(load_in_4bit: bool, double_quant: bool) -> float:
    """bitsandbytes: 4-bit NF4/FP4 with one absmax per 64-value block (bitsandbytes' default
    blocksize 64), fp32, or with bnb_4bit_use_double_quant an 8-bit absmax plus one fp32 per 256
    absmax values; 8-bit LLM.int8: 1 byte + one fp32 scale per output row (negligible)."""
    if not load_in_4bit:
        return 8.0
    return 4 + (8 / 64 + 32 / (64 * 256) if double_quant else 32 / 64)
