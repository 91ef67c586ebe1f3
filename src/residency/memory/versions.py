"""Every vLLM version branch the memory model needs, in one place.

`rules_for("0.33.0")` returns a frozen `VersionRules`; nothing else in the memory model compares
version numbers. Every field and boundary names the row of docs/vllm-versions.md that shows it in
vLLM's released source (row ids in brackets, e.g. [V17-sampler]); that file cites file:line@version.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from residency.spec import version_key

V = tuple[int, ...]


def _ge(key: V, v: str) -> bool:
    return key >= version_key(v)


# Which runner a plain `vllm serve` uses, by version [V22-v2-runner .. V29-v2-runner]:
# "v1" always before 0.22; then the V2 model runner for the architectures/classes below; "all" from 0.29.
V2Scheme = Literal["v1", "v022", "v023", "v024", "v025", "v028", "all"]
# DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES (vllm/config/vllm.py:69@0.22.0, :69@0.23.0, :68@0.24.0,
# :68@0.25.0, :69@0.28.0); MoE architectures listed there run V2 although MoE (0.24 on). "v025" serves
# 0.25-0.27 with the 0.25 list (0.26 adds Inkling/LongcatFlashNgram, 0.27 Kimi-K3: MoE models residency
# does not catalog).
_V2_ARCHS: dict[str, frozenset[str]] = {
    "v022": frozenset({"Qwen3ForCausalLM"}),
    "v023": frozenset({"LlamaForCausalLM", "MistralForCausalLM", "Qwen3ForCausalLM"}),
    "v024": frozenset(
        {
            "Qwen3ForCausalLM",
            "DeepseekV2ForCausalLM",
            "Qwen2MoeForCausalLM",
            "GraniteMoeForCausalLM",
            "LlamaForCausalLM",
            "MistralForCausalLM",
        }
    ),
    "v025": frozenset({"DeepseekV2ForCausalLM", "Qwen2MoeForCausalLM", "GraniteMoeForCausalLM"}),
    "v028": frozenset(
        {
            "DeepseekV2ForCausalLM",
            "DeepseekV4ForCausalLM",
            "GraniteMoeForCausalLM",
            "InklingForCausalLM",
            "InklingForConditionalGeneration",
            "KimiK3ForConditionalGeneration",
            "LongcatFlashNgramForCausalLM",
            "Qwen2MoeForCausalLM",
        }
    ),
}


@dataclass(frozen=True)
class VersionRules:
    version: str
    key: V
    # requested memory and the startup check
    requested_ceil: bool  # [V14-request-ceil] ceil(total x util) in request_memory(); before, a float product
    free_message_names_device: bool  # [V14-request-ceil] "Free memory on device cuda:0 (...)"
    free_message_round_str: bool  # [V14-request-ceil] format_gib() = str(round(x, 2)); before "%.2f"
    # baseline
    nccl_in_budget: bool  # [V10-nccl-in-budget] / [V11-nccl-outside]
    cublas_before_snapshot: bool  # [V33-cublas-baseline]
    uma_free_is_memavailable: bool  # [V11.1-uma-memavailable], [V20-uma-integrated]
    # batch defaults
    big_batch_tier: bool  # [V28-big-tier]
    gb10_small_tier: bool  # [V33-gb10-small-tier]
    # the profile run's sampler warm-up [V17-sampler], [V21-flashinfer-sampler], [V33-sampler-two-pass]
    sampler_bytes_per_elem: int  # [V17-sampler] V1 model runner, bytes per (row x vocab) element, bf16 logits
    v2_runner: V2Scheme  # [V22-v2-runner] which models the V2 runner takes by default (uses_v2_runner)
    # CUDA graphs
    capture_scheme: Literal["step8", "step16", "v033"]  # [V11.1-capture-sizes], [V33-capture-sizes]
    cudagraph_in_budget: bool  # [V18-graph-estimate] (computed, not applied), [V20-graphs-in-budget]
    # the V2 runner estimates its graphs (>= 0.29); 0.22-0.28 it returns 0 [V22-v2-no-graph-estimate]
    v2_graph_estimate: bool
    # [V27-formula-b]: >= 0.27 non_kv starts from the free memory before the model was created, so
    # persistent allocations made after the weights were measured and before the profile count in it;
    # <= 0.26 (Formula A: weights + the profile's torch peak above what was allocated at its start) they
    # do not, and sit beyond the budget
    persistent_in_non_kv: bool
    # checks
    need_minus_null_block: bool  # [V29-null-block]
    models_typo: bool  # [V22-typo]
    messages_docs_link: bool  # [V33-messages]
    need_from_groups: bool  # [V33-need-from-groups]
    # max_num_seqs > Mamba blocks with FULL decode graphs (issue #34094): nothing checks it before
    # 0.18 (capture reads past the state tensors) [V18-mamba-cap]; 0.18-0.19 capture sizes capped with
    # a warning [V18-mamba-cap]; >= 0.20 ValueError [V20-mamba-raise]
    mamba_blocks_mode: Literal["abort", "cap", "raise"]  # [V18-mamba-cap], [V20-mamba-raise]
    # KV specs, grouping, blocks, logs
    has_kv_cache_memory_bytes: bool  # [V10.2-kv-cache-memory-bytes]
    uniform_type_specs: bool  # [V11-uniform-type-specs]
    mla_use_mla_flag: bool  # [V11-mla-spec]: 0.10.x AttentionSpec(use_mla=True)
    group_size_threshold: float | None  # [V12-group-size], [V18-group-size]
    log_tokens: Literal["blocks", "groups", "concurrency"]  # [V11-log-tokens], [V20.1-log-tokens]
    mla_block_alignment_64: bool  # [V11.1-hybrid-align], ends at [V20-block-from-backend]
    block_from_backend: bool  # [V20-block-from-backend]
    gdn_flashinfer_align64: bool  # [V33-gdn-align64]
    mamba_cache_modes: bool  # [V15-mamba-cache-mode]
    mamba_prefix_opt_in: bool  # [V11.1-mamba-prefix], ends at [V15-mamba-cache-mode]
    hybrid_prefix_caching_default: bool  # [V26-hybrid-prefix-caching]
    mamba2_default_mode: Literal["all", "align"]  # [V26-hybrid-prefix-caching], [V28-mamba2-align]
    gdn_ssm_dtype_separate: bool  # [V17-gdn-ssm-dtype]
    # fused-MoE workspace (memory/moe.py): <= 0.13 UnquantizedFusedMoEMethod.forward_cuda calls
    # fused_experts -> fused_experts_impl (unquantized_fused_moe_method.py:325 @0.13.0, fused_moe.py:1538-1589
    # @0.11.0); >= 0.14 it calls its modular kernel (self.kernel(...), :324 @0.14.0, TritonExperts
    # workspace_shapes) [V14-moe-modular], chunked until 0.17, whole batch from 0.18 [V18-moe-no-chunk]
    moe_workspace: Literal["impl", "modular"]
    # VLLM_FUSED_MOE_CHUNK_SIZE default, the most tokens one fused-MoE call works on: 32768 to 0.11.x
    # [V10-moe-chunk], 16384 in 0.12-0.17 [V12-moe-chunk], None (no chunking) from 0.18 [V18-moe-no-chunk]
    fused_moe_chunk: int | None
    # < 0.12: MXFP4 MoE on Marlin for cc >= 9 too on a stock install: the Triton path needs the optional
    # `triton_kernels` package, vendored as vllm/third_party/triton_kernels from 0.12 [V12-mxfp4-triton]
    mxfp4_marlin_stock: bool
    # >= 0.25: the Triton MXFP4 path deletes the unswizzled weights/scales [V25-mxfp4-scales]
    mxfp4_triton_frees_scales: bool
    # >= 0.32: cc 12.x prefers Marlin over Triton for MXFP4 MoE [V32-mxfp4-sm120-marlin]
    mxfp4_sm120_marlin: bool
    # >= 0.27: the FlashInfer TRTLLM MXFP4 path pads the expert intermediate size to 128, not 256
    # (oracle/mxfp4.py:656-658 @0.27.0; 256 before) [V27-mxfp4-trtllm-pad]
    mxfp4_trtllm_pad128: bool
    # --block-size: the argparse choices (CacheConfig's BlockSize Literal; None = any int > 0)
    # [V10-block-size], [V11.1-block-size], [V18-block-size]; and the multiple every CUDA attention
    # backend vLLM can pick needs (1: FlexAttention takes any size) [V10-block-size], [V21-block-size]
    block_size_choices: tuple[int, ...] | None
    block_size_multiple: int  # [V10-block-size], [V11.1-block-size], [V21-block-size]


def SAMPLER_BYTES(k: V) -> int:  # noqa: N802
    """V1 model runner: bytes per logits element of the profile's sampler warm-up (top-k = vocab-1,
    top-p 0.9, gpu_model_runner.py _dummy_sampler_run), for bf16/fp16 logits.

    * < 0.17 [V17-sampler]: torch sort path - bf16 2 + fp32 logits 4, sorted values 4, int64 indices 8,
      probs 4, mask 1, scatter 4, probs + exponential q 8 = 36 (topk_topp_sampler.py:243-283 @0.16.0).
    * 0.17-0.20 [V17-sampler]: Triton top-k/top-p kernel in place for >= 8 rows, then fp32 probs and
      q: bf16 2 + fp32 logits 4 + probs 4 + q 4 = 14 (topk_topp_sampler.py:245-252 @0.17.0); fewer
      than 8 rows keep the sort path (see profile_sampler_bytes).
    * >= 0.21 [V21-flashinfer-sampler]: FlashInfer sampling on by default; top_k_top_p_sampling_from_logits
      masks into a new fp32 tensor and softmaxes it: bf16 2 + fp32 4 + masked 4 + probs 4 = 14.
    * 0.33 [V33-sampler-two-pass]: the same figure; the runners add a warm-up-parameters pass.
    activation.sampler_bytes_per_elem adjusts the figures for float32 logits.
    """
    if _ge(k, "0.17.0"):
        return 14
    return 36


def V2_SAMPLER_BYTES(k: V) -> int:  # noqa: N802
    """V2 model runner: bytes per logits element of the profile's sampler, bf16 logits [V22-v2-runner].

    The profile's dummy batch carries no sampling parameters (V2 _dummy_sampler_run, "the sampler may
    skip top_k, top_p, and logprobs", gpu/model_runner.py:569-580 @0.22.0), and Gumbel sampling works
    in place, so only the logits and what the sampler copies them into count:
    * 0.22-0.25: an unconditional fp32 copy (gpu/sample/sampler.py:133 @0.22.0): 2 + 4 = 6.
    * 0.26-0.32: no copy (in place, sampler.py:162-168 @0.26.0; copied only when a request needs
      processing, sampler.py:200 @0.27.0, :192 @0.28.0): the logits, 2.
    * >= 0.33: a second pass with SamplingParams.for_sampler_warmup() (fp32 copy, penalties, top-k/top-p,
      logprobs) "so the profiled peak must too" (gpu/model_runner.py:1008-1014 @0.33.0)
      [V33-sampler-two-pass]: counted like V1's 14.
    """
    if _ge(k, "0.33.0"):
        return 14
    if _ge(k, "0.26.0"):
        return 2
    return 6


def uses_v2_runner(
    rules: VersionRules, architecture: str, *, moe: bool, quantized: bool, stateful: bool
) -> bool:
    """Whether `vllm serve` runs this model on the V2 model runner by default (VLLM_USE_V2_MODEL_RUNNER
    unset, no feature V2 lacks). `stateful`: Mamba/linear-attention layers (has_inner_state)."""
    s = rules.v2_runner
    if s == "v1":
        return False
    if s == "all":
        return True
    listed = architecture in _V2_ARCHS[s]
    if s in ("v022", "v023"):  # [V22-v2-runner], [V23-v2-runner]
        return listed and not moe and not quantized and not stateful
    if s == "v024":  # [V24-v2-runner]
        return listed and not stateful
    if s == "v025":  # [V25-v2-runner]: any dense model, listed MoE; no hybrids
        return not stateful and (listed or not moe)
    return listed or (not moe and not stateful)  # v028 [V28-v2-runner]: listed hybrids too


def cudagraphs_in_budget(rules: VersionRules, *, on_v2_runner: bool) -> bool:
    """Whether the KV budget reserves the CUDA graph estimate [V20-graphs-in-budget]. The V2 model
    runner's profile_cudagraph_memory returns 0 in 0.22-0.28 (gpu/model_runner.py:620-622@0.22.0,
    :843-845@0.28.0) [V22-v2-no-graph-estimate]: its graphs are captured after the KV pool is sized,
    outside the budget, as before 0.20; it estimates them from 0.29 (:896-898@0.29.0).
    `on_v2_runner`: uses_v2_runner for the model."""
    if not rules.cudagraph_in_budget:
        return False
    return rules.v2_graph_estimate or not on_v2_runner


def profile_sampler_bytes(
    rules: VersionRules, architecture: str, *, moe: bool, quantized: bool, stateful: bool, rows: int
) -> int:
    """Bytes per (row x vocab) element of the profile run's sampler, bf16 logits [V17-sampler]."""
    k = rules.key
    if uses_v2_runner(rules, architecture, moe=moe, quantized=quantized, stateful=stateful):
        return V2_SAMPLER_BYTES(k)
    if rows < 8 and _ge(k, "0.17.0") and not _ge(k, "0.21.0"):
        return SAMPLER_BYTES(version_key("0.16.0"))  # 0.17-0.20: the Triton kernel only from 8 rows
    return rules.sampler_bytes_per_elem


def warmup_sampler(
    rules: VersionRules,
    architecture: str,
    *,
    moe: bool,
    quantized: bool,
    stateful: bool,
    max_num_seqs: int,
    max_num_batched_tokens: int,
) -> tuple[int, int]:
    """(rows, bytes per row x vocab element) of the sampler warm-up after the KV pool is allocated.

    V1 runner: `_dummy_sampler_run` on min(max_num_seqs, max_num_batched_tokens) rows, as in the profile
    [ALL-sampler-after-kv]. V2 runner 0.22-0.32: `warmup_kernels` runs execute_model + sample_tokens with
    SamplingParams.for_sampler_warmup() (the full fp32 pipeline, 14 B) on min(max_num_seqs,
    max_num_batched_tokens // 2) two-token requests (gpu/warmup.py:40-75 @0.22.0, :255-290 @0.32.0),
    while the profile counted 6 or 2 B [V22-v2-warmup]; 0.33 profiles the same pass [V33-sampler-two-pass].
    """
    rows = min(max_num_seqs, max_num_batched_tokens)
    v2 = uses_v2_runner(rules, architecture, moe=moe, quantized=quantized, stateful=stateful)
    if v2 and not _ge(rules.key, "0.33.0"):
        return min(max_num_seqs, max(1, max_num_batched_tokens // 2)), V2_SAMPLER_BYTES(version_key("0.33.0"))
    per = profile_sampler_bytes(
        rules, architecture, moe=moe, quantized=quantized, stateful=stateful, rows=rows
    )
    return rows, per


# CacheConfig's BlockSize Literal, the --block-size choices (config/cache.py:24@0.10.1, :23@0.11.1)
_BLOCK_CHOICES_010 = (1, 8, 16, 32, 64, 128)
_BLOCK_CHOICES_0111 = (1, 8, 16, 32, 64, 128, 256)


def block_size_refusal(rules: VersionRules, block_size: int) -> str | None:
    """Why this vLLM version refuses `--block-size N` on a CUDA device, or None when it takes it.

    Only vLLM's own refusals: the CLI choices (argparse: "invalid choice") and the attention backend
    selection ("No valid attention backend found" from 0.21, FlashAttention's "Block size must be a
    multiple of 16." at KV-cache setup before 0.11.1). A size only FlexAttention takes is accepted
    (see flex_only_block_size)."""
    ch = rules.block_size_choices
    if ch is not None and block_size not in ch:
        return f"vLLM {rules.version} takes --block-size {', '.join(map(str, ch))} only"
    m = rules.block_size_multiple
    if block_size % m:
        return f"vLLM {rules.version}'s CUDA attention backends need a multiple of {m}"
    return None


def block_size_fix(rules: VersionRules, block_size: int) -> str:
    """The accepted sizes nearest a refused one, as 'use 16 or 32'."""
    m = rules.block_size_multiple
    ok = [c for c in rules.block_size_choices or () if c % m == 0]
    if not ok:
        lo = block_size // m * m
        ok = [x for x in (lo, lo + m) if x > 0]
    near = sorted(sorted(ok, key=lambda c: abs(c - block_size))[:2])
    return "use " + " or ".join(map(str, near))


def flex_only_block_size(rules: VersionRules, block_size: int) -> bool:
    """A block size vLLM accepts but only FlexAttention runs (0.11.1-0.20.x, not a multiple of 16):
    slower, and refused for MLA models, whose backends all need multiples of 16 or more
    [V11.1-block-size], [V18-block-size]."""
    return block_size % 16 != 0 and block_size_refusal(rules, block_size) is None


def _v2_scheme(k: V) -> V2Scheme:
    for v, s in (("0.29.0", "all"), ("0.28.0", "v028"), ("0.25.0", "v025"), ("0.24.0", "v024")):
        if _ge(k, v):
            return s  # type: ignore[return-value]
    if _ge(k, "0.23.0"):
        return "v023"
    if _ge(k, "0.22.0"):
        return "v022"
    return "v1"


@cache
def rules_for(version: str) -> VersionRules:
    """The accounting rules of one vLLM version (0.10.1 ... 0.33.x)."""
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
        big_batch_tier=_ge(k, "0.28.0"),
        gb10_small_tier=_ge(k, "0.33.0"),
        sampler_bytes_per_elem=SAMPLER_BYTES(k),
        v2_runner=_v2_scheme(k),
        capture_scheme=scheme,
        cudagraph_in_budget=_ge(k, "0.20.0"),
        v2_graph_estimate=_ge(k, "0.29.0"),
        persistent_in_non_kv=_ge(k, "0.27.0"),
        need_minus_null_block=_ge(k, "0.29.0"),
        models_typo=not _ge(k, "0.22.0"),
        messages_docs_link=_ge(k, "0.33.0"),
        need_from_groups=_ge(k, "0.33.0"),
        mamba_blocks_mode="raise" if _ge(k, "0.20.0") else "cap" if _ge(k, "0.18.0") else "abort",
        has_kv_cache_memory_bytes=_ge(k, "0.10.2"),
        uniform_type_specs=_ge(k, "0.11.0"),
        mla_use_mla_flag=not _ge(k, "0.11.0"),
        group_size_threshold=thr,
        log_tokens=log_tokens,
        mla_block_alignment_64=_ge(k, "0.11.1") and not _ge(k, "0.20.0"),
        block_from_backend=_ge(k, "0.20.0"),
        gdn_flashinfer_align64=_ge(k, "0.33.0"),
        mamba_cache_modes=_ge(k, "0.15.0"),
        mamba_prefix_opt_in=_ge(k, "0.11.1") and not _ge(k, "0.15.0"),
        hybrid_prefix_caching_default=_ge(k, "0.26.0"),
        mamba2_default_mode="align" if _ge(k, "0.28.0") else "all",
        gdn_ssm_dtype_separate=_ge(k, "0.17.0"),
        moe_workspace="modular" if _ge(k, "0.14.0") else "impl",
        fused_moe_chunk=None if _ge(k, "0.18.0") else 16384 if _ge(k, "0.12.0") else 32768,
        mxfp4_marlin_stock=not _ge(k, "0.12.0"),
        mxfp4_triton_frees_scales=_ge(k, "0.25.0"),
        mxfp4_sm120_marlin=_ge(k, "0.32.0"),
        mxfp4_trtllm_pad128=_ge(k, "0.27.0"),
        block_size_choices=None
        if _ge(k, "0.18.0")
        else _BLOCK_CHOICES_0111
        if _ge(k, "0.11.1")
        else _BLOCK_CHOICES_010,
        block_size_multiple=1 if _ge(k, "0.11.1") and not _ge(k, "0.21.0") else 16,
    )
