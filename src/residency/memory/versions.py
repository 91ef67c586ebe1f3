"""Every vLLM version branch the memory model needs, in one place (vllm-memory.md §11).

`rules_for("0.33.0")` returns a frozen `VersionRules`; nothing else in the memory model compares
version numbers. Each field names the versions it holds for and the section of the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from residency.spec import version_key

V = tuple[int, ...]


def _ge(key: V, v: str) -> bool:
    return key >= version_key(v)


@dataclass(frozen=True)
class VersionRules:
    version: str
    key: V
    # §2.1 requested memory and the startup check
    requested_ceil: bool  # >= 0.14: ceil(total x util) in request_memory(); <= 0.13 plain float product
    free_message_names_device: bool  # >= 0.14: "Free memory on device cuda:0 (...)"
    free_message_round_str: bool  # >= 0.14: format_gib() = str(round(x, 2)); <= 0.13 "%.2f"
    # §2.2 baseline
    nccl_in_budget: bool  # <= 0.10.2: snapshot before distributed init -> NCCL buffers inside the budget
    cublas_before_snapshot: bool  # >= 0.33: cuBLAS handles created before the snapshot (baseline)
    # §2.3 unified memory
    # >= 0.11.1: free = psutil available on cc 8.7/11.0/12.1 (>= 0.20: is_integrated)
    uma_free_is_memavailable: bool
    # §3.3 profiling formula
    formula_b: bool  # >= 0.27: non_kv = (init_free - after_free) + (torch_peak - torch_allocated)
    # §4.2 batch defaults
    big_batch_tier: bool  # >= 0.28: >= 160 GiB -> 16384 / 1024 for the OpenAI server too
    gb10_small_tier: bool  # >= 0.33: GB10 (cc 12.1) forced into the small tier
    sampler_bytes_per_elem: int  # dummy sampler warm-up bytes per (row x vocab) element (see SAMPLER_BYTES)
    sampler_twice: bool  # >= 0.33: V2 runner warms the sampler twice (same peak, a little more slack)
    # §5 CUDA graphs
    capture_scheme: Literal["step8", "step16", "v033"]  # <= 0.11.0 / 0.11.1-0.32 / 0.33
    cudagraph_estimate_logged: bool  # >= 0.18: "Estimated CUDA graph memory: X GiB total"
    cudagraph_in_budget: bool  # >= 0.20: estimate subtracted by default (0.18-0.19 only with the env var)
    # §6 checks
    need_minus_null_block: bool  # >= 0.29: one bytes_per_block subtracted before the checks
    models_typo: bool  # <= 0.21: "the models's max seq len"
    messages_docs_link: bool  # >= 0.33: errors end with a docs link
    need_from_groups: bool  # >= 0.33: needed = bytes_per_block x sum_groups cdiv(max_mem, page)
    # max_num_seqs > Mamba blocks with FULL decode graphs (issue #34094): < 0.17 graph capture aborts
    # (out-of-bounds Mamba state access); 0.17-0.32 capture sizes are capped with a warning
    # (adjust_cudagraph_sizes_for_mamba_cache @0.19.1); >= 0.33 ValueError (compilation.py @0.33.0)
    mamba_blocks_mode: Literal["abort", "cap", "raise"]
    # §7 KV specs, grouping, blocks, logs
    has_kv_cache_memory_bytes: bool  # >= 0.10.2 (PR #21489)
    uniform_type_specs: bool  # >= 0.11.0: UniformTypeKVCacheSpecs (one group, sum of pages)
    # 0.10.x: AttentionSpec(use_mla=True); >= 0.11.0 MLAAttentionSpec (+ fp8_ds_mla 656 B)
    mla_use_mla_flag: bool
    group_size_threshold: float | None  # 0.12-0.17: 1.25; >= 0.18: 1.5; before 0.12: always min
    log_tokens: Literal["blocks", "groups", "concurrency"]  # <= 0.10.2 uniform / 0.11.0-0.20.0 / >= 0.20.1
    combined_capacity_line: bool  # >= 0.33: one line with tokens and concurrency
    mla_block_alignment_64: bool  # 0.11.1-0.19: hybrid alignment 64 for MLA
    block_from_backend: bool  # >= 0.20: alignment = max(kernel min block, cache block_size)
    gdn_flashinfer_align64: bool  # >= 0.33: align mode + FlashInfer GDN prefill -> lcm(a, 64)
    mamba_cache_modes: bool  # >= 0.15: mamba_cache_mode none/align/all
    mamba_prefix_opt_in: bool  # 0.11.1-0.14: explicit --enable-prefix-caching -> chunk-aligned ("all")
    hybrid_prefix_caching_default: bool  # >= 0.26: prefix caching on for hybrid generative models
    # 0.26-0.27 "all", >= 0.28 "align" (models declaring SupportsMambaPrefixCaching)
    mamba2_default_mode: Literal["all", "align"]
    gdn_ssm_dtype_separate: bool  # >= 0.17: GDN temporal state honours mamba_ssm_cache_dtype
    loading_says_memory: bool  # >= 0.11.1: "Model loading took X GiB memory and Y seconds"
    # fused-MoE workspace (memory/moe.py): <= 0.12 fused_experts_impl chunked at 32768 tokens
    # (fused_moe.py:1538-1589 @0.11.0; 0.12 unread), 0.13-0.17 modular TritonExperts chunked
    # (modular_kernel.py:742-750 @0.13.0), >= 0.18 modular, whole batch (no chunk env in envs.py @0.18.0)
    moe_workspace: Literal["impl", "modular_chunked", "modular"]
    # < 0.13: MXFP4 MoE on Marlin for cc >= 9 too on a stock install: the Triton path needs the
    # optional `triton_kernels` package (has_triton_kernels, utils/__init__.py:3323 @0.10.1.1, :3431
    # @0.11.0; 0.10.1 also torch < 2.8, mxfp4.py:124-135), vendored as vllm/third_party/triton_kernels
    # from 0.13.0 (utils/import_utils.py:431-438 @0.13.0; 0.12 unread)
    mxfp4_marlin_stock: bool
    # >= 0.27: the Triton MXFP4 path deletes the unswizzled scales (oracle/mxfp4.py:1161-1166 @0.27.0;
    # kept in 0.22.0, 0.23-0.26 unread)
    mxfp4_triton_frees_scales: bool
    # >= 0.32: cc 12.x prefers Marlin over Triton for MXFP4 MoE (oracle/mxfp4.py:413-420 @0.32.0;
    # absent in 0.27.0, 0.28-0.31 unread)
    mxfp4_sm120_marlin: bool


def SAMPLER_BYTES(k: V) -> int:  # noqa: N802
    """Bytes per logits element of the sampler warm-up (top-k = vocab-1, top-p 0.9, §4.1 step 3).

    * <= 0.11.0 (assumed to 0.13): torch sort path - bf16 + fp32 logits 6, sorted values 4, int64 indices 8,
      probs 4, mask 1, scatter 4, probs + exponential q 8 = ~36 (topk_topp_sampler.py:164-203 @0.11.0).
    * 0.19.1 (assumed from 0.14): FlashInfer sampler opt-in; forward_native uses the Triton top-k/top-p
      kernel in place (>= 8 rows), then fp32 probs and q: bf16 2 + fp32 logits 4 + probs 4 + q 4 = 14.
    * 0.20-0.32 (assumed): FlashInfer sampling by default (VLLM_USE_FLASHINFER_SAMPLER True in 0.33): no
      probs/q copies, ~8; the 0.28 records (L40S, 256 rows) leave no room for more.
    * 0.33: FlashInfer, then a second warm-up through forward_native (gpu_model_runner.py:5907-5926): 14.
    The figures are for bf16/fp16 logits; activation.sampler_bytes_per_elem adjusts them for float32
    models (no separate fp32 copy: 2 bytes less). 0.19.1 also keeps a Triton top-k/top-p scratch buffer
    of min(SMs, rows) x vocab x 4 B (topk_topp_triton.py:1010-1016; 132 x 128,256 x 4 = 65 MiB on H100),
    not modelled (inside ACT_BASE's slack).
    """
    if _ge(k, "0.33.0"):
        return 14
    if _ge(k, "0.20.0"):
        return 8
    if _ge(k, "0.14.0"):
        return 14
    return 36


@cache
def rules_for(version: str) -> VersionRules:
    """The accounting rules of one vLLM version (0.10.1 ... 0.33.0)."""
    k = version_key(version)
    if _ge(k, "0.33.0"):
        scheme: Literal["step8", "step16", "v033"] = "v033"
    elif _ge(k, "0.11.1"):
        scheme = "step16"
    else:
        scheme = "step8"
    if _ge(k, "0.20.1"):
        log_tokens: Literal["blocks", "groups", "concurrency"] = "concurrency"
    elif _ge(k, "0.11.0"):
        log_tokens = "groups"
    else:
        log_tokens = "blocks"
    if _ge(k, "0.18.0"):
        thr: float | None = 1.5
    elif _ge(k, "0.12.0"):
        thr = 1.25
    else:
        thr = None
    return VersionRules(
        version=version,
        key=k,
        requested_ceil=_ge(k, "0.14.0"),
        free_message_names_device=_ge(k, "0.14.0"),
        free_message_round_str=_ge(k, "0.14.0"),
        nccl_in_budget=not _ge(k, "0.11.0"),
        cublas_before_snapshot=_ge(k, "0.33.0"),
        uma_free_is_memavailable=_ge(k, "0.11.1"),
        formula_b=_ge(k, "0.27.0"),
        big_batch_tier=_ge(k, "0.28.0"),
        gb10_small_tier=_ge(k, "0.33.0"),
        sampler_bytes_per_elem=SAMPLER_BYTES(k),
        sampler_twice=_ge(k, "0.33.0"),
        capture_scheme=scheme,
        cudagraph_estimate_logged=_ge(k, "0.18.0"),
        cudagraph_in_budget=_ge(k, "0.20.0"),
        need_minus_null_block=_ge(k, "0.29.0"),
        models_typo=not _ge(k, "0.22.0"),
        messages_docs_link=_ge(k, "0.33.0"),
        need_from_groups=_ge(k, "0.33.0"),
        mamba_blocks_mode="raise" if _ge(k, "0.33.0") else "cap" if _ge(k, "0.17.0") else "abort",
        has_kv_cache_memory_bytes=_ge(k, "0.10.2"),
        uniform_type_specs=_ge(k, "0.11.0"),
        mla_use_mla_flag=not _ge(k, "0.11.0"),
        group_size_threshold=thr,
        log_tokens=log_tokens,
        combined_capacity_line=_ge(k, "0.33.0"),
        mla_block_alignment_64=_ge(k, "0.11.1") and not _ge(k, "0.20.0"),
        block_from_backend=_ge(k, "0.20.0"),
        gdn_flashinfer_align64=_ge(k, "0.33.0"),
        mamba_cache_modes=_ge(k, "0.15.0"),
        mamba_prefix_opt_in=_ge(k, "0.11.1") and not _ge(k, "0.15.0"),
        hybrid_prefix_caching_default=_ge(k, "0.26.0"),
        mamba2_default_mode="align" if _ge(k, "0.28.0") else "all",
        gdn_ssm_dtype_separate=_ge(k, "0.17.0"),
        loading_says_memory=_ge(k, "0.11.1"),
        moe_workspace="modular" if _ge(k, "0.18.0") else "modular_chunked" if _ge(k, "0.13.0") else "impl",
        mxfp4_marlin_stock=not _ge(k, "0.13.0"),
        mxfp4_triton_frees_scales=_ge(k, "0.27.0"),
        mxfp4_sm120_marlin=_ge(k, "0.32.0"),
    )
