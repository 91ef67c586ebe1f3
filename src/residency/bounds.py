"""Field types and validators every spec field uses: bounded numbers, names, vLLM's value sets.

Hostile input is normal input: every number has a plausible range (a typo like 1e17 or .inf is an
error naming the field, never minutes of arithmetic or an OverflowError deep in the planner), booleans are
never read as numbers (`max_num_seqs: true` is not 1), and a name is checked once, here, for every command.
New spec fields reuse these types instead of bare int/float/str.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

# -- plausible upper bounds (far above any real value; they exist to stop absurd ones)
MAX_GIB = 16384.0  # 16 TiB: more than one box's accelerator memory (a GB200 NVL72 rack is ~13.5 TiB)
MAX_BYTES = int(MAX_GIB * 2**30)
MAX_DEVICES = 1024  # GPUs per box / hosts' counts; also the cap on replicas and parallel sizes
MAX_TOKENS = 1 << 25  # 33.5M: above the longest context any model configures (10M, Llama 4 Scout)
MAX_SEQS = 1 << 16  # vLLM's default max_num_seqs is 256-1024; 65,536 concurrent sequences is absurd
MAX_LAYERS = 4096  # the deepest published LLMs have ~200 layers
MAX_WIDTH = 1 << 20  # hidden/intermediate sizes (the largest are ~50k)
MAX_HEADS = 4096
MAX_VOCAB = 1 << 24
MAX_LIST = 4096  # models, hosts, extra_args, env entries


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("must be a number, not true/false")
    return v


def _finite(v: Any) -> Any:
    v = _no_bool(v)
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


def Int(lo: int, hi: int):  # noqa: N802 - a type factory reads like a type
    """An int in [lo, hi]; a YAML bool is refused."""
    return Annotated[int, BeforeValidator(_no_bool), Field(ge=lo, le=hi)]


def Float(lo: float, hi: float, *, lo_open: bool = False):  # noqa: N802
    """A finite float in [lo, hi] (or (lo, hi] with lo_open); a YAML bool is refused."""
    rng = Field(gt=lo, le=hi, allow_inf_nan=False) if lo_open else Field(ge=lo, le=hi, allow_inf_nan=False)
    return Annotated[float, BeforeValidator(_finite), rng]


Port = Int(1, 65535)
Count = Int(1, MAX_DEVICES)
Tokens = Int(1, MAX_TOKENS)
GiB = Float(0.0, MAX_GIB, lo_open=True)
GiBOrZero = Float(0.0, MAX_GIB)
Bytes = Int(1, MAX_BYTES)
Fraction = Float(0.0, 1.0, lo_open=True)

# -- names: model, host and similar names become served model names, file names (logs), compose
# services and Kubernetes objects, so one DNS-label-like rule holds for every command.
NAME_MAX = 63  # a DNS label (RFC 1123), which Kubernetes object names derive from
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
RESERVED_NAMES = frozenset({"litellm", "proxy", "residency"})  # the proxy's service and our own files


def check_name(v: str) -> str:
    if len(v) > NAME_MAX:
        raise ValueError(f"is {len(v)} characters; names are at most {NAME_MAX}")
    if not _NAME_RE.fullmatch(v):
        raise ValueError(
            "must be letters, digits, '.', '_' or '-', starting and ending with a letter or digit "
            "(it becomes a served model name, a file name and a service name)"
        )
    if v.lower() in RESERVED_NAMES:
        raise ValueError(f"{v!r} is reserved ({', '.join(sorted(RESERVED_NAMES))}); choose another name")
    return v


def name_key(v: str) -> str:
    """What two names must differ in: case and '.', '_' vs '-' do not make names distinct (services)."""
    return re.sub(r"[._-]+", "-", v.lower())


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX), AfterValidator(check_name)]
# An environment variable name: it is written into the 0600 .env as NAME=value and passed to processes,
# so a newline or '=' in it would inject another variable.
EnvName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# A command-line argument or environment value: a NUL byte cannot be passed to a process.
Arg = Annotated[str, Field(max_length=65536, pattern=r"^[^\x00]*$")]

# -- vLLM's value sets: the union over the versions residency supports, from vllm/config/*.py
# (0.13.0-0.33.0 read; older releases' extra values added by hand, marked).
MODEL_DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")  # config/model.py ModelDType
KV_CACHE_DTYPES = (  # config/cache.py CacheDType
    "auto", "bfloat16", "float16", "fp8", "fp8_ds_mla", "fp8_e4m3", "fp8_e5m2", "fp8_inc",
    "fp8_per_token_head", "int4_per_token_head", "int8_per_token_head", "nvfp4", "nvfp4_4over6",
    "nvfp4_ds_mla", "octave_k3v3", "octave_k3v3_compact", "octave_k3v4", "turboquant_3bit_nc",
    "turboquant_4bit_nc", "turboquant_k3v4_nc", "turboquant_k8v4", "ultraquant_4bit",
)  # fmt: skip
MAMBA_DTYPES = ("auto", "bfloat16", "float16", "float32")  # config/cache.py MambaDType
QUANTIZATION_METHODS = (  # model_executor/layers/quantization/__init__.py QuantizationMethods
    "auto-round", "auto_awq", "auto_gptq", "awq", "awq_marlin", "bitblas", "bitsandbytes",
    "compressed-tensors", "cpu_awq", "cpu_gptq", "deepseek_v4_fp8", "deepspeedfp", "experts_int8",
    "fbgemm_fp8", "fp8", "fp8_per_block", "fp8_per_channel", "fp8_per_tensor", "fp_quant", "gguf",
    "gpt_oss_mxfp4", "gptq", "gptq_bitblas", "gptq_marlin", "gptq_marlin_24", "hqq", "humming", "inc",
    "int8_per_channel_weight_only", "ipex", "modelopt", "modelopt_fp4", "modelopt_mixed", "modelopt_mxfp8",
    "moe_wna16", "mxfp4", "mxfp8", "nvfp4_per_token", "online", "petit_nvfp4", "ptpc_fp8", "quark", "rtn",
    "torchao", "tpu_int8",
    "aqlm", "marlin", "qqq", "neuron_quant", "modelopt_nvfp4",  # 0.10-0.12 (hand-added, later removed)
)  # fmt: skip


def _one_of(allowed: tuple[str, ...], what: str):
    def check(v: str) -> str:
        if v not in allowed:
            close = [a for a in allowed if a.startswith(v[:3])] or list(allowed[:6])
            raise ValueError(f"{v[:40]!r} is not a vLLM {what}; use one of {', '.join(close)}")
        return v

    return AfterValidator(check)


ModelDType = Annotated[str, _one_of(MODEL_DTYPES, "dtype")]
KVCacheDType = Annotated[str, _one_of(KV_CACHE_DTYPES, "kv_cache_dtype")]
MambaDType = Annotated[str, _one_of(MAMBA_DTYPES, "mamba_ssm_cache_dtype")]
Quantization = Annotated[str, _one_of(QUANTIZATION_METHODS, "quantization method")]
# Which sizes vLLM takes depends on its version: StackSpec checks them (memory/versions.block_size_refusal)
BlockSize = Int(1, MAX_TOKENS)
ComputeCapability = Annotated[str, Field(pattern=r"^\d{1,2}\.\d{1,2}$")]
