"""Model facts: what the memory model needs to know about a checkpoint.

The resolver (`residency.memory.resolve`) builds these from a config.json plus the checkpoint's
size; the memory model never reads config.json itself. Everything is for the whole model (TP=1);
per-rank splitting happens in the memory model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# One entry per decoder layer, in layer order.
#   full     - full attention (GQA/MHA)          sliding - sliding-window attention
#   chunked  - chunked local attention (Llama 4) mla     - multi-head latent attention (DeepSeek)
#   mamba2   - Mamba2 SSM (Nemotron-H, granite-4.0-h, Falcon-H1, Jamba uses mamba1 -> "mamba")
#   mamba    - Mamba1 SSM                         gdn     - GatedDeltaNet linear attention (Qwen3-Next)
#   linear   - MiniMax-style linear attention     none    - no KV (e.g. attention-free/MLP-only layer)
LayerKind = Literal["full", "sliding", "chunked", "mla", "mamba2", "mamba", "gdn", "linear", "none"]


@dataclass(frozen=True)
class MambaFacts:
    """State-space / linear-attention layer shape facts (only the fields of the kind in use)."""

    kind: Literal["mamba2", "mamba", "gdn", "linear"]
    conv_kernel: int = 4
    # mamba2 / mamba
    num_heads: int = 0
    head_dim: int = 0
    n_groups: int = 1
    d_state: int = 0
    intermediate_size: int = 0
    # gdn (Qwen3-Next): linear attention heads
    linear_num_key_heads: int = 0
    linear_num_value_heads: int = 0
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    # HF config may force the SSM state dtype (Qwen3.5 mamba_ssm_dtype)
    ssm_dtype: str | None = None


@dataclass(frozen=True)
class VisionFacts:
    """The vision tower's shape and the processor's largest image, as vLLM's profile run uses them.

    Read by memory/vision.py from config.json's `vision_config` and preprocessor_config.json; the
    encoder's profile peak is computed from them in activation.encoder_profile.
    """

    # the encoder code path: "qwen-vl" (Qwen2-VL / Qwen2.5-VL / Qwen3-VL: packed patches, rotary
    # attention) or "siglip" (gemma-3: a batch of fixed-size crops)
    kind: Literal["qwen-vl", "siglip"]
    depth: int
    hidden_size: int  # the tower's width
    intermediate_size: int
    gated_mlp: bool  # gate_up + SiluAndMul (Qwen2.5-VL) instead of fc1 + act
    patch_values: int  # pixel values per patch (channels x temporal patch x patch x patch)
    item_patches: int  # patches of the largest dummy image (the processor's maximum size)
    item_tokens: int  # decoder tokens that image becomes (after spatial merge / pooling)
    out_width: int  # encoder output width per token (text hidden x (1 + deepstack levels))
    deepstack: int = 0  # Qwen3-VL deepstack levels (their merged features stay alive to the end)
    pos_embeds: bool = False  # learned position embeddings interpolated per patch (Qwen3-VL)
    max_pixels_source: str = ""  # where the maximum image size came from


@dataclass(frozen=True)
class ModelFacts:
    id: str
    architecture: str
    model_type: str
    source: Literal["catalog", "local", "hf-cache", "hub", "manual"]
    num_hidden_layers: int
    hidden_size: int
    vocab_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    layer_kinds: tuple[LayerKind, ...]
    dtype: str = "bfloat16"  # checkpoint torch dtype of unquantized tensors
    intermediate_size: int = 0
    max_position_embeddings: int | None = None
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    attention_chunk_size: int | None = None
    # MoE
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    # MLA
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    # State-space layers
    mamba: MambaFacts | None = None
    # Quantization method as vLLM names it (fp8, awq, gptq, compressed-tensors, modelopt_fp4, mxfp4, ...)
    quantization: str | None = None
    quant_bits: float | None = None  # bits per quantized weight, when known
    # Checkpoint tensor bytes (safetensors index metadata.total_size); None if unknown.
    checkpoint_bytes: int | None = None
    # Bytes of checkpoint tensors vLLM does not load by default (MTP heads: read in the 0.32.0 source,
    # assumed for the other versions; see config_facts.estimate_params)
    unloaded_bytes: int = 0
    param_count: int | None = None
    multimodal: bool = False
    vision: VisionFacts | None = None  # None: no vision_config residency can read (see activation)
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Added by the resolver (optional):
    # Falcon-H1-style parallel hybrids: every decoder layer runs attention AND a Mamba2 mixer, and
    # vLLM registers a KV spec for each. layer_kinds then lists both per decoder layer, in order
    # (attention, mamba2, attention, mamba2, ...): len(layer_kinds) == 2 * num_hidden_layers.
    parallel_mamba: bool = False
    # Checkpoint tensor bytes estimated from the config (parameters x bytes per weight under the
    # quantization, MTP heads and vision tower included, like checkpoint_bytes would be). Set by
    # the config reader; use it when checkpoint_bytes is None.
    estimated_bytes: int | None = None

    @property
    def num_attention_layers(self) -> int:
        return sum(1 for k in self.layer_kinds if k in ("full", "sliding", "chunked", "mla"))

    @property
    def is_hybrid(self) -> bool:
        kinds = set(self.layer_kinds)
        return bool(kinds & {"mamba2", "mamba", "gdn", "linear"}) and bool(
            kinds & {"full", "sliding", "mla", "chunked"}
        )
