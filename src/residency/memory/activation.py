"""Everything besides weights and KV that a vLLM process's budget (or the box) pays for.

vllm-memory.md §4 (profile-run activation peak and the sampler warm-up), §2.2 (non-torch memory,
NCCL inside the budget <= 0.10.2), §5 (CUDA graphs: capture sizes, inside the budget >= 0.20),
§5.3 (CUDA context). Unified-memory host growth: memory/unified.py.

Shapes come from vLLM's code (cited per function); the constants that no allocation in vLLM's
source gives are fitted to named dev records (see each one; bench/accuracy.py prints how well).
A calibration record of the real box replaces them.
"""

from __future__ import annotations

from dataclasses import dataclass

from residency.memory import moe
from residency.memory import unified as uma
from residency.memory.device import Device
from residency.memory.model_facts import ModelFacts, VisionFacts
from residency.memory.versions import VersionRules, profile_sampler_bytes, uses_v2_runner, warmup_sampler
from residency.memory.weights import pad_vocab
from residency.units import GiB, MiB

# GatedDeltaNet chunked prefill keeps one (heads, k, v) state per 64-token chunk (FLA chunk_size 64:
# fla/ops/chunk.py:35, chunk_delta_h.py:289 @0.19.1).
GDN_CHUNK = 64

# --- constants: each says where it comes from -------------------------------------------------
# "fitted to records rNNN" = chosen so bench/accuracy.py reproduces those dev records
# (tests/fixtures vendored vllm-logs.jsonl); no single vLLM allocation gives the figure.
#
# Allocator slack + custom-op scratch of the profile run beyond the tensors modelled below
# (caching-allocator block rounding, Triton/cuBLAS scratch, the 0.19.1 top-k/top-p scratch of
# min(SMs, rows) x vocab x 4 B, topk_topp_triton.py:1010-1016). Fitted to records r021, r053
# (dense, logged KV at known settings) and the V1 activation peaks logged by r019 (0.94 GiB) and
# r049 (1.04 GiB). Chosen before the V2 runner's graph-estimate and sampler-state rules
# ([V22-v2-no-graph-estimate], [V22-v2-sampler-state]) moved r021; left as written (bench/accuracy.py
# prints the least-squares value on today's rules beside it, 0.44 GiB on 2026-11-30).
ACT_BASE = 0.25 * GiB
# Hidden-size tensors alive at a decoder layer's MLP peak: the residual and the normed MLP input
# (LlamaDecoderLayer.forward, llama.py:316-333 @0.19.1), the down_proj output allocated while its
# input lives, and the previous layer's output held by the caching allocator: the first two from
# the model code, the other two fitted to records r021, r053.
ACT_HIDDEN_COPIES = 4
# Non-torch growth inside the budget (cuBLAS/cuBLASLt/cuDNN handles and workspaces created in the
# profile run, after the baseline snapshot): fitted to the logged non-torch figures of records
# r019 (0.26 GiB), r049 (0.06), r056/r057 (0.35, RTX 3090) - 0.12 GiB between them. >= 0.33 the
# handles exist before the snapshot (rules.cublas_before_snapshot): only the per-stream workspaces
# remain, taken as half (not fitted: no >= 0.33 record logs non-torch memory).
NON_TORCH = 0.12 * GiB
# <= 0.10.2, TP > 1: NCCL communicator + custom all-reduce buffers created after the snapshot
# (vllm-memory.md §2.2): fitted to record r002 (TP 2 logs 3.58 GiB non-torch against r001's 1.79 at
# TP 1, a pre-0.10 dev build whose figures include more than NCCL) - a rough figure.
NCCL_IN_BUDGET = 0.6 * GiB
# CUDA context + loaded kernels of one process, created before the baseline, so outside the budget
# in every version (vllm-memory.md §5.3 gives 0.3-0.6 GiB depending on the kernels loaded); the
# footprint checks (free memory at start) of r059 and the DGX Spark figures of unified-memory.md
# bound it; not derivable from vLLM's source.
CUDA_CONTEXT = 0.55 * GiB
# >= 0.11, TP > 1: the same NCCL buffers as NCCL_IN_BUDGET, now before the snapshot -> outside.
NCCL_CONTEXT = NCCL_IN_BUDGET
# NOT MODELLED (open question, >= 0.11, TP > 1): in 0.19.1 the profile run's logits all-gather goes
# through torch's own NCCL process group (base_device_communicator.all_gather ->
# dist.all_gather_into_tensor(group=device_group), not pynccl), and init_process_group gets no
# device_id, so if that is the group's first collective its communicator is created lazily inside the
# profiling window and its buffers count as non-torch growth inside the budget. Whether an earlier
# collective creates it first, and its size, are unchecked: no record with TP > 1 on >= 0.11 shows
# non-torch figures. A calibration on the box measures it.
# CUDA graph pool: per capture size per decoder layer, plus a base. Fitted to the logged graph
# memory of records r027 (granite-4.0-micro, 40 layers: 0.72 GiB), r019 (0.27 GiB) and r049
# (0.48 GiB); graph pools hold the captured kernels' intermediate outputs, which vLLM does not size
# (>= 0.18 it measures them, "Estimated CUDA graph memory", and the calibration uses that figure).
GRAPH_PER_SIZE_LAYER = 0.30 * MiB
GRAPH_BASE = 0.05 * GiB
# MoE and Mamba/GDN layers capture more kernels per layer (router + fused-MoE; state update +
# conv): x1.5 each, fitted to record r045 (Nemotron-3-Nano hybrid, 1.0 GiB) and r028 (Qwen3.6-35B-A3B
# MoE, 0.73 GiB) - both only partly expressible, so rough.
GRAPH_MOE_FACTOR = 1.5
GRAPH_MAMBA_FACTOR = 1.5
# --- multimodal encoder profile (vLLM profile_run, v1/worker/gpu_model_runner.py:5788-5840@0.20.2) ---
# Before the text dummy run, vLLM encodes N dummy images of the processor's maximum size and keeps
# the outputs in the encoder cache (and the batched dummy inputs in a local) until profile_run ends.
# N = max(1, min(encoder_budget // tokens_per_item, max_num_seqs x items_per_prompt)), encoder_budget
# = max(max_num_batched_tokens, tokens_per_item), items_per_prompt = max(1, min(limit, max_model_len //
# tokens_per_item)) (MultiModalBudget._get_max_items, multimodal/encoder_budget.py:140-180@0.20.2,
# v1/worker/utils.py:82-125@0.10.1: the same rule 0.10.1-0.33.0; compute_mm_encoder_budget,
# v1/core/encoder_cache_manager.py:309-314@0.20.2). Chunked prefill (the V1 default) is assumed.
# --limit-mm-per-prompt default per modality (config/multimodal.py:19, :270@0.20.2)
MM_LIMIT_PER_PROMPT = 999
# Checkpoints flagged multimodal whose vision tower residency cannot read (no vision_config, e.g.
# the catalog's trimmed Mistral-Small-3.2 / gemma-3-4b copies, or a tower other than Qwen-VL and
# gemma-3's SigLIP): a placeholder, NOT derived and not fitted to any record (the one VL record,
# r050, now has its tower read from its config); plus budget x hidden x MM_EMBED_COPIES of outputs.
MM_ENCODER_PEAK = 1.5 * GiB
# the per-item token count stood in for by 8192 in that placeholder (Qwen-VL items reach 16384,
# gemma-3's are 256)
MM_ITEM_TOKENS = 8192
# encoder output, scattered multimodal embeddings and merged inputs_embeds
# (gpu_model_runner._execute_mm_encoder / _gather_mm_embeddings @0.19.1) - placeholder path only
MM_EMBED_COPIES = 3


@dataclass(frozen=True)
class ProfileSettings:
    max_num_batched_tokens: int
    max_num_seqs: int
    max_model_len: int
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    enforce_eager: bool = False
    act_bytes: int = 2  # model dtype bytes (bf16/fp16 2, float32 4)
    # Pipeline parallel: the sampler warm-up runs on the last stage only (profile_run,
    # gpu_model_runner.py:5781-5790 @0.19.1); every stage but the first receives its input through a
    # persistent IntermediateTensors buffer (hidden_states + residual, max_num_batched_tokens rows,
    # allocated in the profile run's _dummy_run: gpu_model_runner.py:5437-5449 @0.19.1).
    runs_sampler: bool = True
    receives_intermediate: bool = False
    mxfp4_backend: moe.Mxfp4Backend | None = None  # MXFP4 checkpoints: the MoE kernel vLLM picks


def forward_peak_bytes(f: ModelFacts, s: ProfileSettings, rules: VersionRules) -> int:
    """Activation peak of the dummy forward at max_num_batched_tokens tokens (§4.1 step 2).

    Per token: the MLP's gate_up output + activation output (3 x intermediate / tp) plus a few
    hidden-size copies; MoE layers instead the fused-MoE kernel's workspace (moe.fused_moe_workspace_bytes);
    GatedDeltaNet layers add their projections and the chunked state (heads x k x v per 64-token chunk).
    Llama-3.1-8B at 8192 tokens: (3 x 14336 + 4 x 4096) x 2 B x 8192 = 0.95 GiB.
    """
    T, tp, b = s.max_num_batched_tokens, s.tensor_parallel_size, s.act_bytes
    h = f.hidden_size
    per_tok = ACT_HIDDEN_COPIES * h * b
    # the fused qkv projection's output, q + 2 kv heads wide (QKVParallelLinear, llama.py @0.19.1)
    per_tok += (f.num_attention_heads + 2 * f.num_key_value_heads) * f.head_dim // tp * b
    total = T * per_tok
    if f.num_experts:
        total += moe.fused_moe_workspace_bytes(f, T, tp, b, rules, s.mxfp4_backend)
    else:  # gate_up_proj output (2 I) + act_fn output (I) (LlamaMLP.forward, llama.py:117-121 @0.19.1)
        total += T * 3 * (f.intermediate_size // tp) * b
    if f.mamba is not None and f.mamba.kind == "gdn":
        m = f.mamba
        kdim = m.linear_num_key_heads * m.linear_key_head_dim
        vdim = m.linear_num_value_heads * m.linear_value_head_dim
        total += (
            T * (2 * kdim + 2 * vdim) // tp * b
        )  # in_proj_qkvz output (q, k, v, z: gdn_linear_attn.py:278 @0.19.1)
        total += (
            T
            * (m.linear_num_value_heads // tp)
            * m.linear_key_head_dim
            * m.linear_value_head_dim
            * b
            // GDN_CHUNK
        )
    elif f.mamba is not None and f.mamba.kind in ("mamba2", "mamba"):
        # in_proj's projected_states (x and gate z, 2 x intermediate; the B/C/dt columns are small):
        # mamba_mixer2.py:518 @0.19.1
        total += T * 2 * f.mamba.intermediate_size // tp * b
    return int(total)


def sampler_peak_bytes(f: ModelFacts, s: ProfileSettings, rules: VersionRules) -> int:
    """The sampler warm-up with min(max_num_seqs, max_num_batched_tokens) dummy requests (§4.1 step 3).

    Rows x padded vocab x bytes per element; the per-element figure is the version's sampler path for
    the runner that takes this model (versions.profile_sampler_bytes, docs/vllm-versions.md
    [V17-sampler]). Qwen3 (vocab 151,936), 256 rows, sort path (0.11): 256 x 151,936 x 36 B = 1.30 GiB.
    """
    rows = min(s.max_num_seqs, s.max_num_batched_tokens)
    base = profile_sampler_bytes(
        rules,
        f.architecture,
        moe=f.num_experts > 0,
        quantized=f.quantization is not None,
        stateful=f.mamba is not None,
        rows=rows,
    )
    return rows * pad_vocab(f.vocab_size) * sampler_bytes_per_elem(s.act_bytes, base)


def on_v2_runner(f: ModelFacts, rules: VersionRules) -> bool:
    """Whether `vllm serve` runs this model on the V2 model runner (versions.uses_v2_runner)."""
    return uses_v2_runner(
        rules,
        f.architecture,
        moe=f.num_experts > 0,
        quantized=f.quantization is not None,
        stateful=f.mamba is not None,
    )


def v2_sampler_state_bytes(f: ModelFacts, s: ProfileSettings) -> int:
    """The V2 model runner's penalty state, allocated with its Sampler in load_model after the weights
    are measured: output_bin_counts (max_num_seqs x vocab int32) + prompt_bin_mask (max_num_seqs x
    cdiv(vocab, 32) int32) (PenaltiesState.__init__, v1/worker/gpu/sample/penalties.py:32-42@0.22.0,
    :40-47@0.31.0, :43-50@0.33.0; created at gpu/model_runner.py:398@0.28.0, after the
    DeviceMemoryProfiler block). Qwen3 (vocab 151,936), 256 seqs: 256 x (151,936 + 4748) x 4 B = 0.15 GiB;
    gpt-oss (201,088), 1024 seqs: 0.77 GiB. Whether vLLM counts it: VersionRules.persistent_in_non_kv."""
    return s.max_num_seqs * (f.vocab_size + -(-f.vocab_size // 32)) * 4


def sampler_warmup_peak_bytes(f: ModelFacts, s: ProfileSettings, rules: VersionRules) -> int:
    """The sampler warm-up after the KV pool is allocated (compile_or_warm_up_model): hidden rows +
    rows x padded vocab x the warm-up's bytes per element (versions.warmup_sampler)."""
    rows, base = warmup_sampler(
        rules,
        f.architecture,
        moe=f.num_experts > 0,
        quantized=f.quantization is not None,
        stateful=f.mamba is not None,
        max_num_seqs=s.max_num_seqs,
        max_num_batched_tokens=s.max_num_batched_tokens,
    )
    return rows * f.hidden_size * s.act_bytes + rows * pad_vocab(f.vocab_size) * sampler_bytes_per_elem(
        s.act_bytes, base
    )


def sampler_bytes_per_elem(logits_bytes: int, base: int) -> int:
    """Bytes per (row x vocab) element of the sampler warm-up for logits in the model dtype.

    `base` (versions.profile_sampler_bytes) is for 2-byte (bf16/fp16) logits. Above the logits-only
    V2 figure (2) it includes them (2) and their fp32 copy (4, `logits.to(torch.float32)`, sampler.py:90
    @0.19.1). float32 logits are already fp32: that `.to()` returns the same tensor, so the figure is
    6 - 4 = 2 bytes smaller (0.19.1: 4 + probs 4 + q 4 = 12 instead of 14).
    """
    if base <= 2:  # the logits alone (V2 runner 0.26-0.32)
        return logits_bytes
    return base - 6 + (4 if logits_bytes >= 4 else logits_bytes + 4)


def mm_dummy_items(v: VisionFacts, s: ProfileSettings) -> int:
    """How many images of the maximum size the profile run encodes (see MM_LIMIT_PER_PROMPT).
    Qwen3-VL at 16,384 tokens per image, 8192 batched tokens, 4 seqs: budget 16,384 -> 1 image;
    gemma-3 (256 tokens) at 8192 batched tokens, 256 seqs: min(32, 256 x 999) = 32 images."""
    t = v.item_tokens
    budget = max(s.max_num_batched_tokens, t)
    per_prompt = max(1, min(MM_LIMIT_PER_PROMPT, s.max_model_len // t))
    return max(1, min(budget // t, s.max_num_seqs * per_prompt))


def _block_live_width(v: VisionFacts, tp: int) -> int:
    """Widths (x patches x bytes) alive at an encoder block's peak, per rank; the larger of attention
    and MLP. The tower is split by TP like the text model (mm_encoder_tp_mode "weights", the default).

    qwen-vl attention (Qwen2_5_VisionAttention.forward, model_executor/models/qwen2_5_vl.py:362-419
    @0.20.2; Qwen3_VisionBlock uses it, qwen3_vl.py:412-463; Qwen2VisionAttention, qwen2_vl.py:354-400,
    holds the same tensors): residual x + norm1(x) held by the caller, the qkv output (3), the
    contiguous q/k copy (2) and its rotated copy (2, ApplyRotaryEmb is out of place:
    rotary_embedding/common.py:226-247@0.20.2), the attention output (1), then proj's output (1):
    2 + 8/tp + 1 widths. siglip (SiglipAttention.forward, siglip.py:420-430@0.20.2; q/k/v are views of
    the qkv output): 2 + (3 + 1)/tp + 1.
    MLP: residual + norm2(x) + fc1 output + activation output (Qwen3_VisionMLP.forward qwen3_vl.py:407-409,
    SiglipMLP.forward siglip.py:471-475@0.20.2): 2 + 2 I/tp; gated (Qwen2_5_VisionMLP.forward,
    qwen2_5_vl.py:302-306@0.20.2): gate_up (2 I) + SiluAndMul output (I): 2 + 3 I/tp.
    """
    h, i = v.hidden_size, v.intermediate_size
    attn = 3 * h + (8 if v.kind == "qwen-vl" else 4) * h // tp
    mlp = 2 * h + (3 if v.gated_mlp else 2) * i // tp
    return max(attn, mlp)


def encoder_profile(v: VisionFacts, s: ProfileSettings, *, v2_runner: bool = False) -> tuple[int, int]:
    """(peak while the vision tower runs, bytes held through the text dummy run that follows).

    Peak: the dummy pixel values (already in the model dtype: multimodal/processing/context.py:225-236
    @0.20.2), Qwen3-VL's interpolated position embeddings (one width per patch, kept in the encoder
    metadata: qwen3_vl.py:721, :800@0.20.2) and its deepstack features (one merged output per level, kept to
    the end: qwen3_vl.py:804-823), plus the block peak (_block_live_width). Held: the pixel values
    (profile_run's batched_dummy_mm_inputs) and the encoder outputs in the encoder cache
    (gpu_model_runner.py:5830-5845@0.20.2), tokens x out_width each. The V2 runner moves the dummy
    batch to the GPU inside execute_mm_encoder and keeps only the outputs (EncoderRunner.
    profile_encoder_cache / execute_mm_encoder, v1/worker/gpu/mm/encoder_runner.py:100-161@0.28.0).
    Not counted (< 1 %): the rotary cos/sin tables (head_dim per patch), FlashAttention's fp32 LSE.
    Qwen3-VL-30B-A3B (1152 wide, 4304 MLP, 3 deepstack levels, out 2048) at 1 image of 65,536 patches,
    bf16: block 11 x 1152; pixels 1536 + positions 1152 + deepstack 3 x 2048 / 4 per patch:
    65,536 x (1536 + 1152 + 1536 + 12,672) x 2 B = 2.06 GiB; held 65,536 x 1536 x 2 + 16,384 x 8192 x 2
    = 0.44 GiB.
    """
    b, tp = s.act_bytes, max(1, s.tensor_parallel_size)
    items = mm_dummy_items(v, s)
    n = items * v.item_patches
    tokens = items * v.item_tokens
    pixels = n * v.patch_values * b
    positions = n * v.hidden_size * b if v.pos_embeds else 0
    deepstack = tokens * (v.out_width // (1 + v.deepstack)) * v.deepstack * b
    peak = pixels + positions + deepstack + n * _block_live_width(v, tp) * b
    held = (0 if v2_runner else pixels) + tokens * v.out_width * b
    return int(peak), int(held)


def deepstack_buffer_bytes(f: ModelFacts, s: ProfileSettings) -> int:
    """Qwen3-VL's deepstack input buffers, allocated with the model (so in vLLM's "Model loading took"
    figure): one max_num_batched_tokens x text hidden tensor per deepstack level, in the model dtype
    (Qwen3VLForConditionalGeneration.__init__, qwen3_vl.py:1669-1677@0.20.2, :1156-1161@0.11.0,
    :2031-2037@0.33.0). Qwen3-VL-30B-A3B at 8192 tokens: 3 x 8192 x 2048 x 2 B = 96 MiB."""
    if f.vision is None or not f.vision.deepstack:
        return 0
    return f.vision.deepstack * s.max_num_batched_tokens * f.hidden_size * s.act_bytes


def _placeholder_encoder_bytes(f: ModelFacts, s: ProfileSettings) -> int:
    """Multimodal checkpoints without readable vision facts: MM_ENCODER_PEAK + outputs (not derived)."""
    budget = max(s.max_num_batched_tokens, MM_ITEM_TOKENS)
    return int(MM_ENCODER_PEAK + budget * f.hidden_size * s.act_bytes * MM_EMBED_COPIES)


def activation_bytes(f: ModelFacts, s: ProfileSettings, rules: VersionRules) -> int:
    """Peak torch increase of the profile run: base + max(forward, hidden + sampler) [+ PP buffers],
    with a multimodal model's encoder first: max(encoder peak, what it leaves held + the rest)."""
    peak = forward_peak_bytes(f, s, rules)
    if s.runs_sampler:
        hidden_rows = min(s.max_num_seqs, s.max_num_batched_tokens) * f.hidden_size * s.act_bytes
        peak = max(peak, hidden_rows + sampler_peak_bytes(f, s, rules))
    if s.receives_intermediate:  # PP stages after the first: hidden_states + residual, kept
        peak += 2 * s.max_num_batched_tokens * f.hidden_size * s.act_bytes
    if f.vision is not None:
        enc_peak, held = encoder_profile(f.vision, s, v2_runner=on_v2_runner(f, rules))
        peak = max(enc_peak, held + peak)
    elif f.multimodal:
        peak += _placeholder_encoder_bytes(f, s)
    return int(ACT_BASE + peak)


def non_torch_bytes(s: ProfileSettings, rules: VersionRules) -> int:
    """Non-torch growth inside the budget: library workspaces; + NCCL with TP > 1 on <= 0.10.2
    (>= 0.11: outside, in the context; see the NOT MODELLED note on the lazy torch communicator)."""
    nt = NON_TORCH
    if rules.cublas_before_snapshot:  # >= 0.33: handles in the baseline; half remains (see NON_TORCH)
        nt = NON_TORCH // 2
    if rules.nccl_in_budget and s.tensor_parallel_size * s.pipeline_parallel_size > 1:
        nt += NCCL_IN_BUDGET
    return int(nt)


def cudagraph_capture_sizes(
    s: ProfileSettings, rules: VersionRules, device: Device | None = None
) -> list[int]:
    """Capture sizes by version (§5.1); [] with enforce_eager.

    max size min(2 x max_num_seqs, 512) (config/vllm.py:1349 @0.19.1); 0.33: 1024 on data-center
    Blackwell (cc 10.x), else 512 (config/vllm.py:2403 @0.33.0); sizes [1, 2, 4] + step 8 below 256 +
    step 16 from 256 (config/vllm.py:1352-1353 @0.19.1).
    """
    if s.enforce_eager:
        return []
    if rules.capture_scheme == "v033":
        cap_max = 1024 if device is not None and (device.compute_capability or "").startswith("10.") else 512
        cap = min(s.max_num_seqs * 2, cap_max)
    else:
        cap = min(s.max_num_seqs * 2, 512)
    cap = min(cap, s.max_num_batched_tokens)
    sizes = [x for x in (1, 2, 4) if x <= cap]
    if rules.capture_scheme == "step8":
        sizes += list(range(8, cap + 1, 8))
    else:
        sizes += list(range(8, min(cap, 255) + 1, 8)) + list(range(256, cap + 1, 16))
    if rules.capture_scheme == "v033":
        extra = [x for x in (s.max_num_batched_tokens, s.max_num_seqs) if x <= cap]
        sizes = sorted(set(sizes + extra))
    return sizes


def cudagraph_bytes(
    f: ModelFacts, s: ProfileSettings, rules: VersionRules, device: Device | None = None
) -> int:
    """CUDA graph pool estimate: base + sizes x layers x per-size cost (MoE and hybrid graphs cost more).

    `f` is the facts of the process's own layers (one pipeline stage's with PP: engine.stage_facts).
    Dense 32-layer model, 51 sizes: 0.05 GiB + 51 x 32 x 0.30 MiB = 0.53 GiB.
    """
    sizes = cudagraph_capture_sizes(s, rules, device)
    if not sizes:
        return 0
    layers = max(1, f.num_hidden_layers)
    per = GRAPH_PER_SIZE_LAYER
    if f.num_experts:
        per *= GRAPH_MOE_FACTOR
    if f.mamba is not None:
        per *= GRAPH_MAMBA_FACTOR
    return int(GRAPH_BASE + len(sizes) * layers * per)


def context_bytes(device: Device, s: ProfileSettings, rules: VersionRules) -> int:
    """Outside the budget: CUDA context (+ NCCL on >= 0.11 with TP > 1) (+ UMA frontend processes)."""
    ctx = CUDA_CONTEXT
    if not rules.nccl_in_budget and s.tensor_parallel_size * s.pipeline_parallel_size > 1:
        ctx += NCCL_CONTEXT
    if device.unified:  # API server + EngineCore, before the worker's snapshot (memory/unified.py)
        ctx += uma.FRONTEND
    return int(ctx)
