"""Fused-MoE memory from vLLM's kernels: the experts' workspace in the profile run, and MXFP4 expert
weights as each backend allocates them (padding, scale copies, bias dtype).

Which kernel runs is vLLM's choice per version and device (`mxfp4_backend`); the byte counts below
are the shapes the kernels allocate, cited per version. vllm-memory.md §4.1 (profile run) and §10
(weights).
"""

from __future__ import annotations

from typing import Literal

from residency.memory.dtypes import MXFP4_BITS
from residency.memory.model_facts import ModelFacts
from residency.memory.versions import VersionRules

Mxfp4Backend = Literal["marlin", "triton", "flashinfer"]

# OCP MX block: one e8m0 scale per 32 values (ocp_mx_utils.py:21 @0.32.0).
MX_BLOCK = 32


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _major(cc: str | None) -> int | None:
    try:
        return int(str(cc).split(".")[0]) if cc else None
    except ValueError:
        return None


def mxfp4_backend(compute_capability: str | None, rules: VersionRules) -> Mxfp4Backend:
    """The MXFP4 MoE kernel vLLM picks on CUDA without backend env vars.

    * cc < 9.0: Marlin in every version (_should_use_marlin, mxfp4.py:123-135 @0.10.1.1;
      get_mxfp4_backend, mxfp4.py:95-99 @0.11.0).
    * cc 10.x (B200) with FlashInfer (shipped with vLLM's CUDA wheels): FlashInfer TRTLLM MXFP4 x BF16
      (mxfp4.py:36-50 @0.10.1.1, :79-85 @0.11.0).
    * cc 9.x / 12.x: the OpenAI Triton kernels when `triton_kernels` imports and torch >= 2.8, else
      Marlin (mxfp4.py:95-102 @0.11.0): Marlin on a stock install before 0.12, which did not ship
      triton_kernels (rules.mxfp4_marlin_stock, V12-mxfp4-triton); >= 0.32 the 12.x family prefers Marlin
      (rules.mxfp4_sm120_marlin, oracle/mxfp4.py:413-420 @0.32.0).
    An unknown device is taken as Hopper-class.
    """
    major = _major(compute_capability)
    if major is not None and major < 9:
        return "marlin"
    if major == 10:
        return "flashinfer"
    if rules.mxfp4_marlin_stock:
        return "marlin"
    if major is not None and major >= 12 and rules.mxfp4_sm120_marlin:
        return "marlin"
    return "triton"


def _mxfp4_padded(f: ModelFacts, tp: int, backend: Mxfp4Backend, rules: VersionRules) -> tuple[int, int]:
    """(intermediate per partition, hidden) after the backend's padding (Mxfp4MoEMethod.create_weights:
    Marlin n % 256 / k % 128, mxfp4.py:155-167 @0.10.1.1; FlashInfer TRTLLM 256/256, mxfp4.py:207-214
    @0.11.0, intermediate to 128 from 0.27 (rules.mxfp4_trtllm_pad128); Triton intermediate to 64,
    hidden as is, mxfp4.py:224-226 @0.11.0)."""
    inter = f.moe_intermediate_size // tp
    if backend == "marlin":
        return _round_up(inter, 128), _round_up(f.hidden_size, 256)
    if backend == "flashinfer":
        return _round_up(inter, 128 if rules.mxfp4_trtllm_pad128 else 256), _round_up(f.hidden_size, 256)
    return _round_up(inter, 64), f.hidden_size


def mxfp4_checkpoint_expert_bytes(f: ModelFacts) -> int:
    """Expert tensors as the checkpoint stores them: e2m1 weights + e8m0 scales, bf16 biases."""
    e, i, h = f.num_experts, f.moe_intermediate_size, f.hidden_size
    per_layer = int(e * 3 * i * h * MXFP4_BITS / 8) + e * (2 * i + h) * 2
    return per_layer * f.num_hidden_layers


def mxfp4_loaded_expert_bytes(
    f: ModelFacts, tp: int, backend: Mxfp4Backend, rules: VersionRules, compute_capability: str | None = None
) -> int:
    """Expert tensors per rank after process_weights_after_loading.

    w13 (E, 2I, H/2) + w2 (E, H, I/2) uint8, scales (E, 2I, H/32) + (E, H, I/32) uint8, biases (E, 2I)
    + (E, H) (mxfp4.py:189-260 @0.10.1.1), at the padded sizes. Triton and FlashInfer cast the biases
    to fp32 (mxfp4.py:390-391 / 307-308 @0.10.1.1). Triton swizzles weights and scales into new
    tensors and deletes the old weights but, before 0.25, not the old scales (mxfp4.py:403-420
    @0.10.1.1, :599-616 @0.11.0): the scales are held twice (rules.mxfp4_triton_frees_scales,
    V25-mxfp4-scales; oracle/mxfp4.py:1161-1166 @0.27.0). Marlin keeps one repacked copy of each (marlin_utils_fp4.py
    prepare_moe_fp4_layer_for_marlin @0.10.1.1).
    gpt-oss-120b, one H100: Triton 64.32 GiB in all (logged 64.38, r017), Marlin 65.91 GiB (logged
    65.97, r015).
    """
    i, h = _mxfp4_padded(f, tp, backend, rules)
    e = f.num_experts
    weights = e * 3 * i * h // 2
    scales = e * 3 * i * h // MX_BLOCK
    if backend == "triton":
        kept = 0 if rules.mxfp4_triton_frees_scales else scales
        scales = kept + _triton_swizzled_scale_bytes(e, i, h, _major(compute_capability))
    bias = e * (2 * i + h) * (2 if backend == "marlin" else 4)
    return (weights + scales + bias) * f.num_hidden_layers


def _triton_swizzled_scale_bytes(e: int, i: int, h: int, cc_major: int | None) -> int:
    """The Triton path's swizzled copy of the e8m0 scales, padded by the triton_kernels layout
    (vendored as vllm/third_party/triton_kernels from 0.12): per matrix, `other` rows (2I for w13,
    H for w2) by `mx` blocks (H/32, I/32). Hopper (cc 9.x) HopperMXScaleLayout pads rows to
    2 x num_warps x 2 x 8 = 256 (num_warps 8, mxfp4.py:764 @0.14.0) and blocks to 2
    (hopper_scale.py:22-29 @0.14.0); cc >= 10 BlackwellMXScaleLayout pads rows to 128 and blocks to
    8 (blackwell_scale.py:15-26 @0.14.0). The value layouts pad to 16/32 elements, which the
    padded intermediate (64) already meets; not modelled.
    gpt-oss-120b on H100: (5888 + 3072) x 90 B per expert against 8640 x 90 unpadded, +0.12 GiB.
    """
    rows, blocks = (256, 2) if cc_major is None or cc_major == 9 else (128, 8)
    return sum(
        e * _round_up(other, rows) * _round_up(mx, blocks)
        for other, mx in ((2 * i, h // MX_BLOCK), (h, i // MX_BLOCK))
    )


def fused_moe_workspace_bytes(
    f: ModelFacts,
    tokens: int,
    tp: int,
    act_bytes: int,
    rules: VersionRules,
    mxfp4: Mxfp4Backend | None = None,
) -> int:
    """Peak scratch of one fused-MoE call on `tokens` tokens (the profile run's largest), per rank;
    `mxfp4` is the MXFP4 backend for MXFP4 checkpoints (None: vLLM's default Triton fused experts).

    N = 2 x moe_intermediate / tp (gate_up), K = hidden, top-k rows per token:
    * <= 0.13 fused_experts_impl: cache13 M x topk x max(N, K) + cache2 M x topk x N/2 + output M x K,
      M = min(tokens, rules.fused_moe_chunk) (fused_moe.py:1538-1589 @0.11.0);
    * >= 0.14 modular TritonExperts: workspace13 M x topk x max(N/2, K) (the output reuses it) +
      workspace2 M x topk x max(N, K) (fused_moe.py:2067-2069 @0.13.0, :1988-1989 @0.19.1;
      experts/triton_moe.py:238-240 @0.32.0), chunked (rules.fused_moe_chunk) until 0.17
      (modular_kernel.py:742-750 @0.13.0), whole batch from 0.18;
    * MXFP4 Marlin: cache13 M x topk x max(2I, K) + cache2 M x topk x I, padded sizes, no chunking
      (fused_marlin_moe.py:114-123 @0.10.1.1) + output M x K;
    * MXFP4 Triton (matmul_ogs, swiglu fused): M x topk x I + output M x K
      (triton_kernel_fused_experts, gpt_oss_triton_kernels_moe.py @0.11.0);
    * MXFP4 FlashInfer: workspace internal to FlashInfer, not read: the Marlin shape is used.
    """
    if not f.num_experts or not f.num_experts_per_tok:
        return 0
    k, h = f.num_experts_per_tok, f.hidden_size
    if mxfp4 in ("marlin", "flashinfer"):
        i, hp = _mxfp4_padded(f, tp, mxfp4, rules)
        return tokens * (k * (max(2 * i, hp) + i) + h) * act_bytes
    if mxfp4 == "triton":
        i, _ = _mxfp4_padded(f, tp, mxfp4, rules)
        return tokens * (k * i + h) * act_bytes
    i = f.moe_intermediate_size // tp
    n = 2 * i
    m = min(tokens, rules.fused_moe_chunk or tokens)  # VLLM_FUSED_MOE_CHUNK_SIZE by version
    if rules.moe_workspace == "impl":
        return m * (k * (max(n, h) + n // 2) + h) * act_bytes
    return m * k * (max(n // 2, h) + max(n, h)) * act_bytes
