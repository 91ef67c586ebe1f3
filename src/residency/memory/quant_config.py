"""A checkpoint's quantization as vLLM names it, and its storage cost per quantized weight, from the
`quantization_config` of config.json or ModelOpt's separate hf_quant_config.json. Pure: no I/O.

One reader per quant_method (`_READERS`); the bits per weight come from memory/dtypes.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from residency.memory.dtypes import MXFP4_BITS, NVFP4_BITS, block_fp8_bits, bnb_bits, int_group_bits


@dataclass(frozen=True)
class Quant:
    """A checkpoint's quantization as vLLM names it, and its storage cost per quantized weight."""

    method: str  # vLLM's --quantization name
    bits: float  # bits per quantized weight including its scales/zeros (storage)
    scope: str = "linear"  # "linear": every decoder linear; "experts": MoE experts only (mxfp4)
    attention_quantized: bool = True
    note: str = ""
    # decoder layers whose mixer (attention / SSM) the exclusion list names one by one, e.g. ModelOpt's
    # "backbone.layers.5.mixer.q_proj" (NVIDIA-Nemotron-3-Nano NVFP4 keeps its 6 attention mixers and
    # the 6 Mamba mixers before them unquantized; the other 17 Mamba mixers are NVFP4): their linears
    # stay in the checkpoint dtype
    excluded_mixers: frozenset[int] = frozenset()


def _text_quant_config(config: dict[str, Any]) -> dict[str, Any] | None:
    qc = config.get("quantization_config")
    if isinstance(qc, dict):
        return qc
    for k in ("text_config", "llm_config", "language_config", "text_model_config"):
        sub = config.get(k)
        inner = sub.get("quantization_config") if isinstance(sub, dict) else None
        if isinstance(inner, dict):
            return inner
    return None


def _fp8(qc: dict[str, Any], method: str, attn_q: bool) -> Quant:
    blk = qc.get("weight_block_size")
    scales = " with " + "x".join(map(str, blk)) + " block scales" if blk else ""
    return Quant("fp8", block_fp8_bits(blk), attention_quantized=attn_q, note=f"fp8 e4m3 weights{scales}")


def _awq_gptq(qc: dict[str, Any], method: str, attn_q: bool) -> Quant:
    base = method.split("_")[0]
    bits = int(qc.get("bits", qc.get("w_bit", 4)))
    group = qc.get("group_size", qc.get("q_group_size", 128))
    return Quant(
        base,
        int_group_bits(bits, group),
        attention_quantized=attn_q,
        note=f"{base} int{bits} group {group}; vLLM picks {base}_marlin on cc >= 8.0",
    )


def _mxfp4(qc: dict[str, Any], method: str, attn_q: bool) -> Quant:
    # gpt-oss: MoE experts only (Mxfp4Config.get_quant_method: FusedMoE layers only), bf16 elsewhere
    return Quant(
        "mxfp4", MXFP4_BITS, scope="experts", attention_quantized=False, note="mxfp4 experts, bf16 elsewhere"
    )


def _modelopt(qc: dict[str, Any], method: str, attn_q: bool) -> Quant:
    algo = str(qc.get("quant_algo", "")).upper()
    kv = qc.get("kv_cache_quant_algo")
    extra = f"; checkpoint KV cache quant {kv}" if kv else ""
    if "FP4" in algo:
        return Quant(
            "modelopt_fp4",
            NVFP4_BITS,
            attention_quantized=attn_q,
            note=f"ModelOpt NVFP4 (e2m1 + fp8 scale per 16){extra}",
        )
    name = "FP8" if "FP8" in algo or method == "modelopt_fp8" else (algo or "?")
    return Quant("modelopt", 8.0, attention_quantized=attn_q, note=f"ModelOpt {name}{extra}")


def _compressed_tensors(qc: dict[str, Any], method: str, attn_q: bool) -> Quant:
    """llm-compressor's config_groups: the first group's weight scheme (FP8, INT8, INT4/8 groups,
    NVFP4/MXFP4). Mixed-scheme checkpoints (one group per target) are read by their first group."""
    fmt = str(qc.get("format", "")).lower()
    w: dict[str, Any] = {}
    for grp in (qc.get("config_groups") or {}).values():
        if isinstance(grp, dict) and isinstance(grp.get("weights"), dict):
            w = grp["weights"]
            break
    nbits = int(w.get("num_bits", 8)) if w else (4 if "fp4" in fmt or "pack" in fmt else 8)
    wtype = str(w.get("type", "int")).lower()
    group = w.get("group_size")
    if "nvfp4" in fmt or (nbits == 4 and wtype == "float"):
        # fp4 e2m1 + one 8-bit scale per group: NVFP4 (group 16, fp8 scale) or MXFP4 (group 32,
        # e8m0 scale; compressed_tensors_w4a4_nvfp4.py / _w4a4_mxfp4.py @0.32.0)
        g = int(group) if isinstance(group, int) and group > 0 else 16
        kind = "MXFP4" if g == 32 else "NVFP4"
        bits = NVFP4_BITS if g == 16 else 4 + 8 / g
        return Quant(
            "compressed-tensors", bits, attention_quantized=attn_q, note=f"compressed-tensors {kind}"
        )
    if nbits == 8:
        kind = "FP8" if wtype == "float" else "INT8 (W8A8)"
        return Quant("compressed-tensors", 8.0, attention_quantized=attn_q, note=f"compressed-tensors {kind}")
    return Quant(
        "compressed-tensors",
        int_group_bits(nbits, group, zero_point=not w.get("symmetric", True)),
        attention_quantized=attn_q,
        note=f"compressed-tensors INT{nbits} group {group}",
    )


def _bitsandbytes(qc: dict[str, Any], method: str, attn_q: bool) -> Quant:
    four = bool(qc.get("load_in_4bit"))
    return Quant(
        "bitsandbytes",
        bnb_bits(four, bool(qc.get("bnb_4bit_use_double_quant"))),
        attention_quantized=attn_q,
        note=f"bitsandbytes {4 if four else 8}-bit",
    )


def _eight_bits_assumed(qc: dict[str, Any], method: str, attn_q: bool) -> Quant:
    return Quant(
        method, 8.0, attention_quantized=attn_q, note=f"{method} (bits per weight not modelled: 8 assumed)"
    )


_READERS = {
    "fp8": _fp8,
    "awq": _awq_gptq,
    "gptq": _awq_gptq,
    "awq_marlin": _awq_gptq,
    "gptq_marlin": _awq_gptq,
    "mxfp4": _mxfp4,
    "modelopt": _modelopt,
    "modelopt_fp4": _modelopt,
    "modelopt_fp8": _modelopt,
    "compressed-tensors": _compressed_tensors,
    "bitsandbytes": _bitsandbytes,
    **{
        m: _eight_bits_assumed
        for m in (
            "fbgemm_fp8",
            "ptpc_fp8",
            "fp_quant",
            "quark",
            "torchao",
            "gguf",
            "bitblas",
            "hqq",
            "experts_int8",
        )
    },
}


# an exclusion naming a layer's whole mixer or its main input projection (not a side tensor such as
# Qwen3-Next's linear_attn.in_proj_ba or conv1d, which the FP8 release lists layer by layer)
_EXCLUDED_MIXER = re.compile(
    r"layers\.(\d+)\.(?:mixer|self_attn|linear_attn|attention)"
    r"(?:\.(?:in_proj|in_proj_qkvz|q_proj|qkv_proj|query_key_value|Wqkv))?$"
)


def read_quantization(config: dict[str, Any], hf_quant_config: dict[str, Any] | None = None) -> Quant | None:
    """The checkpoint's quantization as vLLM names it (`--quantization`), or None for bf16/fp16.

    ModelOpt checkpoints without a quantization_config carry it in hf_quant_config.json
    ({"producer": ..., "quantization": {"quant_algo": ...}}), which vLLM reads the same way.
    """
    qc = _text_quant_config(config)
    if qc is None and hf_quant_config:
        q = hf_quant_config.get("quantization", hf_quant_config)
        qc = {"quant_method": "modelopt", **q}
    if qc is None:
        return None
    method = str(qc.get("quant_method", "")).lower()
    not_conv = (
        qc.get("modules_to_not_convert")
        or qc.get("exclude_modules")
        or qc.get("ignore")
        or qc.get("ignored_layers")
        or []
    )
    attn_q = not any(re.search(r"(self_attn|attention)\*?$", str(m)) for m in not_conv)
    reader = _READERS.get(method)
    if reader is None:
        return Quant(
            method or "unknown", 8.0, note=f"quant_method {method!r} not modelled: 8 bits per weight assumed"
        )
    q = reader(qc, method, attn_q)
    layers = frozenset(int(m.group(1)) for x in not_conv if (m := _EXCLUDED_MIXER.search(str(x))))
    return replace(q, excluded_mixers=layers) if layers else q
