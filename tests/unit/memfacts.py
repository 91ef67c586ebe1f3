"""Hand-built ModelFacts for the memory-model tests (configs as published on the Hub)."""

from __future__ import annotations

from residency.memory.model_facts import MambaFacts, ModelFacts


def dense(n_layers=36, kv=8, head=128, hidden=2560, inter=9728, vocab=151936, **kw) -> ModelFacts:
    """Qwen3-4B by default: 36 layers, 8 KV heads x 128, tied embeddings."""
    base = dict(
        id="Qwen/Qwen3-4B-Instruct-2507",
        architecture="Qwen3ForCausalLM",
        model_type="qwen3",
        source="manual",
        num_hidden_layers=n_layers,
        hidden_size=hidden,
        vocab_size=vocab,
        num_attention_heads=32,
        num_key_value_heads=kv,
        head_dim=head,
        layer_kinds=("full",) * n_layers,
        intermediate_size=inter,
        max_position_embeddings=262144,
        tie_word_embeddings=True,
        checkpoint_bytes=8045591552,
    )
    base.update(kw)
    return ModelFacts(**base)


def qwen3_next(**kw) -> ModelFacts:
    """Qwen3-Next-80B-A3B: 48 layers, every 4th full attention (2 KV heads x 256), 36 GDN layers."""
    base = dict(
        id="Qwen/Qwen3-Next-80B-A3B-Instruct-FP8",
        architecture="Qwen3NextForCausalLM",
        model_type="qwen3_next",
        source="manual",
        num_hidden_layers=48,
        hidden_size=2048,
        vocab_size=151936,
        num_attention_heads=16,
        num_key_value_heads=2,
        head_dim=256,
        layer_kinds=("gdn", "gdn", "gdn", "full") * 12,
        intermediate_size=5120,
        max_position_embeddings=262144,
        num_experts=512,
        num_experts_per_tok=10,
        moe_intermediate_size=512,
        quantization="fp8",
        checkpoint_bytes=82032869120,
        unloaded_bytes=1660322048,
        mamba=MambaFacts(
            kind="gdn",
            conv_kernel=4,
            linear_num_key_heads=16,
            linear_num_value_heads=32,
            linear_key_head_dim=128,
            linear_value_head_dim=128,
        ),
    )
    base.update(kw)
    return ModelFacts(**base)


def deepseek_v3(**kw) -> ModelFacts:
    """DeepSeek-V3: 61 MLA layers, kv_lora_rank 512 + rope 64 = 576 latent."""
    base = dict(
        id="deepseek-ai/DeepSeek-V3",
        architecture="DeepseekV3ForCausalLM",
        model_type="deepseek_v3",
        source="manual",
        num_hidden_layers=61,
        hidden_size=7168,
        vocab_size=129280,
        num_attention_heads=128,
        num_key_value_heads=128,
        head_dim=192,
        layer_kinds=("mla",) * 61,
        kv_lora_rank=512,
        qk_rope_head_dim=64,
        num_experts=256,
        num_experts_per_tok=8,
        moe_intermediate_size=2048,
        intermediate_size=18432,
        max_position_embeddings=163840,
    )
    base.update(kw)
    return ModelFacts(**base)


def gemma3_27b(**kw) -> ModelFacts:
    """gemma-3-27b: 62 layers, 5 sliding (window 1024) : 1 full, 16 KV heads x 128."""
    kinds = tuple("full" if (i + 1) % 6 == 0 else "sliding" for i in range(62))
    base = dict(
        id="google/gemma-3-27b-it",
        architecture="Gemma3ForConditionalGeneration",
        model_type="gemma3_text",
        source="manual",
        num_hidden_layers=62,
        hidden_size=5376,
        vocab_size=262208,
        num_attention_heads=32,
        num_key_value_heads=16,
        head_dim=128,
        layer_kinds=kinds,
        sliding_window=1024,
        intermediate_size=21504,
        max_position_embeddings=131072,
        tie_word_embeddings=True,
    )
    base.update(kw)
    return ModelFacts(**base)


def nemotron_h(**kw) -> ModelFacts:
    """A Mamba2 hybrid (Nemotron-H-8B-like): 52 layers, 4 attention (8 KV x 128), 48 Mamba2."""
    kinds = tuple("full" if i in (7, 18, 29, 40) else "mamba2" for i in range(52))
    base = dict(
        id="nvidia/Nemotron-H-8B",
        architecture="NemotronHForCausalLM",
        model_type="nemotron_h",
        source="manual",
        num_hidden_layers=52,
        hidden_size=4096,
        vocab_size=131072,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        layer_kinds=kinds,
        intermediate_size=21504,
        max_position_embeddings=8192,
        mamba=MambaFacts(
            kind="mamba2",
            conv_kernel=4,
            num_heads=128,
            head_dim=64,
            n_groups=8,
            d_state=128,
            intermediate_size=8192,
        ),
    )
    base.update(kw)
    return ModelFacts(**base)
