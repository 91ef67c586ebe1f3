"""Helpers for the resolver tests: a tiny Llama-shaped checkpoint written by hand."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

DTYPE_SIZE = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "I32": 4, "U8": 1}

# hidden 64, 2 layers, 4 q heads / 2 kv heads (head_dim 64 / 4 = 16), MLP 128, vocab 128, untied
TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 128,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def tiny_tensors(layers: int = 2) -> dict[str, tuple[str, list[int]]]:
    t: dict[str, tuple[str, list[int]]] = {"model.embed_tokens.weight": ("BF16", [128, 64])}
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = ("BF16", [64, 64])
        t[p + "self_attn.k_proj.weight"] = ("BF16", [32, 64])
        t[p + "self_attn.v_proj.weight"] = ("BF16", [32, 64])
        t[p + "self_attn.o_proj.weight"] = ("BF16", [64, 64])
        t[p + "mlp.gate_proj.weight"] = ("BF16", [128, 64])
        t[p + "mlp.up_proj.weight"] = ("BF16", [128, 64])
        t[p + "mlp.down_proj.weight"] = ("BF16", [64, 128])
        t[p + "input_layernorm.weight"] = ("BF16", [64])
        t[p + "post_attention_layernorm.weight"] = ("BF16", [64])
    t["model.norm.weight"] = ("BF16", [64])
    t["lm_head.weight"] = ("BF16", [128, 64])
    return t


# Tensor bytes of tiny_tensors(2), by hand:
#   embed 128*64 = 8,192 + lm_head 8,192 + final norm 64 = 16,448
#   per layer: q 4,096 + k 2,048 + v 2,048 + o 4,096 + MLP 3*8,192 = 24,576 + norms 128 = 36,992
#   2 layers = 73,984 -> 90,432 params * 2 bytes = 180,864 bytes
TINY_BYTES = 180_864


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]]) -> tuple[bytes, int]:
    """A complete .safetensors file (header + zero data) and its tensor byte total."""
    header: dict = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, (dt, shape) in tensors.items():
        n = math.prod(shape) * DTYPE_SIZE[dt]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    return struct.pack("<Q", len(hb)) + hb + bytes(off), off


def write_checkpoint(d: Path, *, sharded: bool = False, config: dict | None = None) -> int:
    """config.json + safetensors (one file, or two shards + index). Returns tensor bytes."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config or TINY_CONFIG))
    tensors = tiny_tensors()
    if not sharded:
        data, total = safetensors_bytes(tensors)
        (d / "model.safetensors").write_bytes(data)
        return total
    names = list(tensors)
    half = len(names) // 2
    total = 0
    weight_map = {}
    for k, part in enumerate((names[:half], names[half:])):
        fname = f"model-0000{k + 1}-of-00002.safetensors"
        data, n = safetensors_bytes({x: tensors[x] for x in part})
        (d / fname).write_bytes(data)
        total += n
        weight_map.update(dict.fromkeys(part, fname))
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    return total
