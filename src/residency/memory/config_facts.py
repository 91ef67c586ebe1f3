"""Read a Hugging Face config.json (raw, transformers-rendered, or trimmed) into `ModelFacts`.

Pure: no I/O. `resolve.py` finds the config and the checkpoint size; this module only reads keys.

What it understands (each reader names the HF keys it reads):
  * dense GQA/MHA (Llama, Qwen2/3, Mistral, Phi-3/4): `head_dim` defaults to hidden / heads and
    `num_key_value_heads` to `num_attention_heads` (MHA), as vLLM's ModelConfig does;
  * MoE (Qwen3-MoE, Qwen3-Next, GLM-4.5, DeepSeek, gpt-oss, Mixtral, Jamba, granite-4.0-h);
  * MLA (DeepSeek-V2/V3, Kimi-K2: `kv_lora_rank` + `qk_rope_head_dim`);
  * sliding window (gemma-3 5:1, gpt-oss alternating 128, all-sliding Mistral-7B-v0.1,
    Qwen2 `use_sliding_window` from `max_window_layers`), chunked local attention (Llama 4);
  * hybrids: Qwen3-Next GatedDeltaNet, Nemotron-H `hybrid_override_pattern` or its per-layer
    `layers_block_type` list, granite-4.0-h `layer_types` (also as transformers 5.x renders them),
    Falcon-H1 (attention AND Mamba2 in every layer), Jamba (Mamba1), pure Mamba; one layout reader
    per architecture family (`_LAYOUT_READERS`);
  * quantization_config (fp8, awq, gptq, compressed-tensors, modelopt, mxfp4, bitsandbytes) and
    ModelOpt's separate hf_quant_config.json (read by quant_config.py);
  * multimodal wrappers: the text backbone in `text_config` (gemma-3, Mistral3, Qwen-VL, Llama-4).

It also estimates the parameter count and checkpoint bytes from the architecture (used when the
checkpoint size is unknown, and to size MTP heads vLLM leaves unloaded; see `estimate_params`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import wraps
from typing import Any, ParamSpec

from residency.errors import UnknownModelError
from residency.memory.dtypes import DTYPE_BYTES, norm_dtype
from residency.memory.model_facts import LayerKind, MambaFacts, ModelFacts
from residency.memory.quant_config import Quant, read_quantization
from residency.memory.vision import QWEN3_VL_PATCH, vision_facts
from residency.units import GiB

_P = ParamSpec("_P")

# transformers config-class defaults for keys real config.json files often omit (vLLM reads the
# config through transformers, so a missing key means the class default).
_TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Gemma3TextConfig (transformers 4.50+): vocab 262208, 131072 ctx, 5 local : 1 global.
    "gemma3_text": {
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "sliding_window": 4096,
        "sliding_window_pattern": 6,
        "head_dim": 256,
    },
    # Qwen3NextConfig: one full-attention layer every 4.
    "qwen3_next": {"full_attention_interval": 4, "linear_conv_kernel_dim": 4},
    # Llama4TextConfig: chunked local attention of 8192 tokens, NoPE (global) every 4th layer.
    "llama4_text": {"attention_chunk_size": 8192, "no_rope_layer_interval": 4},
    # GptOssConfig: alternating sliding (128) / full.
    "gpt_oss": {"sliding_window": 128},
}
_TYPE_DEFAULTS["gemma3"] = _TYPE_DEFAULTS["gemma3_text"]

# Spec keys (ModelSpec.facts, spec.ModelFactsOverride) a user can give by hand, per missing fact.
_OVERRIDE_KEY = {
    "num_hidden_layers": "num_hidden_layers",
    "hidden_size": "hidden_size",
    "num_attention_heads": "num_attention_heads",
    "num_key_value_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "vocab_size": "vocab_size",
}

_ALIASES: dict[str, tuple[str, ...]] = {
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_key_value_heads": (
        "num_key_value_heads",
        "num_kv_heads",
        "n_head_kv",
        "multi_query_group_num",
        "n_kv_heads",
    ),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
    "max_position_embeddings": (
        "max_position_embeddings",
        "max_sequence_length",
        "seq_length",
        "n_positions",
    ),
}


class _Cfg:
    """Key lookup over the text config, then the top config, then transformers defaults."""

    def __init__(self, top: dict[str, Any], text: dict[str, Any], model_type: str) -> None:
        self.top, self.text, self.model_type = top, text, model_type
        self.defaults = _TYPE_DEFAULTS.get(model_type, {})

    def get(self, key: str, default: Any = None) -> Any:
        for src in (self.text, self.top):
            if key in src and src[key] is not None:
                return src[key]
        return self.defaults.get(key, default)

    def first(self, fact: str, default: Any = None) -> Any:
        for k in _ALIASES.get(fact, (fact,)):
            v = self.get(k)
            if v is not None:
                return v
        return default

    def has(self, key: str) -> bool:
        return self.get(key) is not None


def _text_config(top: dict[str, Any]) -> dict[str, Any]:
    for k in ("text_config", "llm_config", "language_config", "text_model_config"):
        v = top.get(k)
        if isinstance(v, dict) and v:
            return v
    thinker = top.get("thinker_config")  # Qwen-Omni
    inner = thinker.get("text_config") if isinstance(thinker, dict) else None
    return inner if isinstance(inner, dict) else top


def _missing(field: str, model_id: str, arch: str, what: list[str], why: str = "") -> UnknownModelError:
    keys = [_OVERRIDE_KEY[w] for w in what if w in _OVERRIDE_KEY]
    problem = f"cannot read {arch or 'the architecture'} of {model_id!r}: config.json lacks {', '.join(what)}"
    if why:
        problem += f" ({why})"
    give = ", ".join(
        dict.fromkeys(
            keys
            + [
                "num_hidden_layers",
                "num_key_value_heads",
                "head_dim",
                "hidden_size",
                "vocab_size",
                "weights_gib",
            ]
        )
    )
    fix = f"give the facts by hand under {field.rsplit('.', 1)[0]}.facts: {give}"
    return UnknownModelError(field, problem, fix)


# --------------------------------------------------------------------------------------------
# layer kinds

_LAYER_TYPE_NAMES: dict[str, str] = {
    "full_attention": "full",
    "attention": "full",
    "global_attention": "full",
    "global": "full",
    "full": "full",
    "sliding_attention": "sliding",
    "sliding_window": "sliding",
    "local_attention": "sliding",
    "local": "sliding",
    "sliding": "sliding",
    "chunked_attention": "chunked",
    "linear_attention": "linear",
    "mamba": "mamba2",
    "mamba2": "mamba2",
    "mamba1": "mamba",
    "conv": "none",
    "mlp": "none",
    "moe": "none",
}
_GDN_TYPES = {"qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text", "qwen3_next_text"}


# Keys that mean "this model has state-space / linear-attention layers": if none of the layouts
# above placed such a layer, the architecture is one residency cannot read (e.g. Zamba2).
_SSM_HINT_KEYS = (
    "ssm_state_size",
    "mamba_d_state",
    "mamba_n_heads",
    "mamba_num_heads",
    "linear_num_value_heads",
    "layers_block_type",
    "hybrid_layer_ids",
)


# Nemotron-H per-layer block names (transformers' NemotronHConfig.layers_block_type, the list form
# newer configs and transformers 5.x write) -> the hybrid_override_pattern symbol vLLM's
# nemotron_h.py reads (M Mamba2, * attention, - MLP, E MoE).
_BLOCK_TYPE_SYMBOL = {
    "mamba": "M",
    "mamba2": "M",
    "linear_attention": "M",  # transformers 5.x's name for Nemotron-H's Mamba2 mixers
    "attention": "*",
    "full_attention": "*",
    "mlp": "-",
    "moe": "E",
}


def _with_block_pattern(text: dict[str, Any]) -> dict[str, Any]:
    """A Nemotron-H config carrying `layers_block_type` (or `layer_types`) as a per-layer list of block
    names (and no hybrid_override_pattern) gets the equivalent pattern string, which also tells the
    parameter estimate its MoE layers, and num_hidden_layers from the list when absent. Lists with other names (Zamba2's "hybrid") are left for the layout check to refuse."""
    lbt = text.get("layers_block_type")
    if not isinstance(lbt, list):
        lbt = text.get("layer_types")  # the same names under transformers 5.x's generic key
    if text.get("hybrid_override_pattern") or not isinstance(lbt, list) or not lbt:
        return text
    if not str(text.get("model_type", "")).startswith("nemotron_h"):
        return text  # Jamba's "mamba" is Mamba1 (read from attn_layer_period); Zamba2's lists are refused
    names = [str(t).lower() for t in lbt]
    if not all(t in _BLOCK_TYPE_SYMBOL for t in names):
        return text
    out = {**text, "hybrid_override_pattern": "".join(_BLOCK_TYPE_SYMBOL[t] for t in names)}
    out.setdefault("num_hidden_layers", len(names))
    return out


def _is_mla(c: _Cfg) -> bool:
    # vLLM ModelConfig.is_deepseek_mla: deepseek_v2/v3/v32, kimi_k2, ... with kv_lora_rank set.
    return c.get("kv_lora_rank") is not None and c.get("qk_rope_head_dim") is not None


@dataclass(frozen=True)
class _Where:
    """What an error about this config names: the spec field, the model and its architecture."""

    field: str
    model_id: str
    arch: str

    def missing(self, what: list[str], why: str = "") -> UnknownModelError:
        return _missing(self.field, self.model_id, self.arch, what, why)


Kinds = tuple[tuple[str, ...], bool]  # per-layer kinds, and "every layer holds attention AND Mamba"


def _nemotron_pattern(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    """Nemotron-H hybrid_override_pattern: M = Mamba2, * = attention, - = MLP, E = MoE (no cache)."""
    pattern = c.get("hybrid_override_pattern")
    if not (isinstance(pattern, str) and pattern):
        return None
    table = {"M": "mamba2", "*": attn, "-": "none", "E": "none"}
    bad = sorted(set(pattern) - set(table))
    if bad:
        raise w.missing(["a readable hybrid_override_pattern"], f"unknown layer symbols {''.join(bad)!r}")
    if len(pattern) != n:
        raise w.missing(
            ["num_hidden_layers"],
            f"hybrid_override_pattern has {len(pattern)} layers, num_hidden_layers says {n}",
        )
    return tuple(table[ch] for ch in pattern), False


def _falcon_h1(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    """Falcon-H1: each decoder layer runs attention and Mamba2 in parallel; vLLM registers both, so
    the KV spec has 2 x num_hidden_layers entries (model.layers.i.self_attn + .mamba;
    FalconH1ParallelHybrid, checked in the vLLM 0.32.0 source)."""
    if c.model_type != "falcon_h1":
        return None
    return tuple(k for _ in range(n) for k in (attn, "mamba2")), True


def _jamba_period(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    """Jamba: attention every attn_layer_period layers from attn_layer_offset, Mamba1 elsewhere."""
    if not c.has("attn_layer_period"):
        return None
    period, offset = int(c.get("attn_layer_period")), int(c.get("attn_layer_offset", 0))
    return tuple(attn if i % period == offset else "mamba" for i in range(n)), False


def _linear_kind(c: _Cfg) -> str:
    """transformers 5 renders Mamba layers as "linear_attention" too (granite-4.0-h, Nemotron-H): the
    state keys tell GatedDeltaNet, Mamba1, Mamba2 and MiniMax lightning attention apart."""
    if c.model_type in _GDN_TYPES or c.has("linear_num_value_heads"):
        return "gdn"
    if c.model_type == "jamba" or (
        c.has("mamba_d_state") and c.has("mamba_expand") and not c.has("mamba_n_heads")
    ):
        return "mamba"
    if any(c.has(x) for x in ("mamba_n_heads", "mamba_num_heads", "ssm_state_size", "mamba_d_state")):
        return "mamba2"
    return "linear"


def _layer_types(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    """`layer_types`, one name per layer (granite-4.0-h, gpt-oss, gemma-3 / transformers 5.x renders)."""
    lt = c.get("layer_types")
    if not (isinstance(lt, list) and lt):
        return None
    if len(lt) != n:
        raise w.missing(
            ["num_hidden_layers"], f"layer_types has {len(lt)} entries, num_hidden_layers says {n}"
        )
    sliding = c.get("sliding_window")
    out = []
    for t in lt:
        k = _LAYER_TYPE_NAMES.get(str(t).lower())
        if k is None:
            raise w.missing(
                [f"a known layer type (got {t!r})"], "layer_types names a layer kind residency does not model"
            )
        if k == "full":
            k = attn
        elif k == "sliding" and not sliding:
            k = "full"  # rendered configs may say sliding with no window: full attention then (assumed for 0.10.1-0.33.0, not checked in the source)
        elif k == "linear":
            k = _linear_kind(c)
        elif k == "mamba2" and c.model_type == "jamba":
            k = "mamba"
        out.append(k)
    return tuple(out), False


def _minimax(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    """MiniMax-Text-01 / M1 attn_type_list: 0 = lightning (linear) attention, 1 = softmax attention."""
    atl = c.get("attn_type_list")
    if not (isinstance(atl, list) and len(atl) == n):
        return None
    return tuple(attn if int(t) == 1 else "linear" for t in atl), False


def _gdn_interval(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    """Qwen3-Next / Qwen3.5: full attention every full_attention_interval layers, GatedDeltaNet elsewhere."""
    if not (c.model_type in _GDN_TYPES or c.has("full_attention_interval")):
        return None
    every = int(c.get("full_attention_interval", 4))
    return tuple(attn if (i + 1) % every == 0 else "gdn" for i in range(n)), False


def _pure_mamba(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    if c.model_type in ("mamba", "falcon_mamba"):
        return ("mamba",) * n, False
    if c.model_type == "mamba2":
        return ("mamba2",) * n, False
    return None


def _gemma_pattern(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    """Gemma-2/3 sliding_window_pattern: every p-th layer global, the others sliding."""
    mt = c.model_type
    if not (mt in ("gemma3", "gemma3_text", "gemma2") or c.has("sliding_window_pattern")):
        return None
    p = int(c.get("sliding_window_pattern", 2 if mt == "gemma2" else 6))
    if not c.get("sliding_window"):
        return (attn,) * n, False
    return tuple(attn if (i + 1) % p == 0 else "sliding" for i in range(n)), False


def _gpt_oss(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    """gpt-oss without layer_types: alternating sliding (even) / full (odd)."""
    if c.model_type != "gpt_oss":
        return None
    return tuple("sliding" if i % 2 == 0 else attn for i in range(n)), False


def _llama4_chunked(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    """Llama 4 chunked local attention: no_rope_layers 1 = RoPE layer (chunked), 0 = NoPE (global)."""
    if not c.get("attention_chunk_size"):
        return None
    nope = c.get("no_rope_layers")
    if isinstance(nope, list) and len(nope) == n:
        return tuple("chunked" if r else attn for r in nope), False
    every = int(c.get("no_rope_layer_interval", 4))
    return tuple(attn if (i + 1) % every == 0 else "chunked" for i in range(n)), False


def _sliding_window(c: _Cfg, n: int, attn: str, w: _Where) -> Kinds | None:
    """A sliding_window on a plain decoder: Qwen2-family only from max_window_layers on and only with
    use_sliding_window; otherwise every layer (Mistral-7B-v0.1, Mixtral with a window)."""
    if not (c.get("sliding_window") and c.get("use_sliding_window", True)):
        return None
    if c.text.get("use_sliding_window") is not None or c.top.get("use_sliding_window") is not None:
        start = int(c.get("max_window_layers", 0) or 0)
        return tuple("sliding" if i >= start else attn for i in range(n)), False
    return ("sliding",) * n, False


# Tried in order; the first family whose keys are present decides the layout.
_LAYOUT_READERS = (
    _nemotron_pattern,
    _falcon_h1,
    _jamba_period,
    _layer_types,
    _minimax,
    _gdn_interval,
    _pure_mamba,
    _gemma_pattern,
    _gpt_oss,
    _llama4_chunked,
    _sliding_window,
)


def _layer_kinds(c: _Cfg, n: int, w: _Where) -> Kinds:
    """Per-layer kinds by architecture family, and whether every decoder layer holds attention AND
    Mamba (Falcon-H1); a plain decoder (every layer full attention / MLA) when no family matches."""
    attn = "mla" if _is_mla(c) else "full"
    for reader in _LAYOUT_READERS:
        got = reader(c, n, attn, w)
        if got is not None:
            return got
    return (attn,) * n, False


# --------------------------------------------------------------------------------------------
# state-space layers


def _gdn_facts(c: _Cfg, hidden: int, w: _Where, ssm_dtype: str | None) -> MambaFacts:
    """Qwen3-Next / Qwen3.5 GatedDeltaNet: linear-attention head shapes."""
    need = ["linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim"]
    miss = [k for k in need if not c.has(k)]
    if miss:
        raise w.missing(miss, "GatedDeltaNet layers need their head shapes")
    return MambaFacts(
        kind="gdn",
        conv_kernel=int(c.get("linear_conv_kernel_dim", 4)),
        linear_num_key_heads=int(c.get("linear_num_key_heads")),
        linear_num_value_heads=int(c.get("linear_num_value_heads")),
        linear_key_head_dim=int(c.get("linear_key_head_dim")),
        linear_value_head_dim=int(c.get("linear_value_head_dim")),
        ssm_dtype=ssm_dtype,
    )


def _pick(c: _Cfg, *keys: str) -> Any:
    for k in keys:
        if c.has(k):
            return c.get(k)
    return None


def _mamba2_facts(c: _Cfg, hidden: int, w: _Where, ssm_dtype: str | None) -> MambaFacts:
    """Mamba2 state shape under each family's keys.

    Nemotron-H: mamba_num_heads / mamba_head_dim / n_groups / ssm_state_size / conv_kernel;
    granite-4.0-h, Falcon-H1: mamba_n_heads / mamba_d_head / mamba_n_groups / mamba_d_state / mamba_d_conv;
    Mamba2ForCausalLM: num_heads / head_dim / n_groups / state_size / conv_kernel / expand.
    """
    plain = c.model_type == "mamba2"
    heads = _pick(c, "mamba_num_heads", "mamba_n_heads", *(("num_heads",) if plain else ()))
    head_dim = _pick(c, "mamba_head_dim", "mamba_d_head", *(("head_dim",) if plain else ()))
    d_state = _pick(c, "ssm_state_size", "mamba_d_state", "mamba_state_dim", "state_size")
    groups = _pick(c, "n_groups", "mamba_n_groups", "mamba_num_groups") or 1
    conv = _pick(c, "conv_kernel", "mamba_d_conv") or 4
    expand = _pick(c, "mamba_expand", "expand")
    inter = _pick(c, "mamba_d_ssm")
    if inter is None and heads and head_dim:
        inter = int(heads) * int(head_dim)
    if inter is None and expand:
        inter = int(expand * hidden)
    if heads is None and inter and head_dim:
        heads = int(inter) // int(head_dim)
    miss = [
        n
        for n, v in (("mamba_num_heads", heads), ("mamba_head_dim", head_dim), ("ssm_state_size", d_state))
        if v is None
    ]
    if miss:
        raise w.missing(miss, "Mamba2 layers need their state shape")
    return MambaFacts(
        kind="mamba2",
        conv_kernel=int(conv),
        num_heads=int(heads),
        head_dim=int(head_dim),
        n_groups=int(groups),
        d_state=int(d_state),
        intermediate_size=int(inter),
        ssm_dtype=ssm_dtype,
    )


def _mamba1_facts(c: _Cfg, hidden: int, w: _Where, ssm_dtype: str | None) -> MambaFacts:
    """Jamba: mamba_d_state / mamba_d_conv / mamba_expand; MambaForCausalLM: state_size / conv_kernel /
    intermediate_size."""
    d_state = c.get("mamba_d_state", c.get("state_size"))
    conv = c.get("mamba_d_conv", c.get("conv_kernel", 4))
    expand = c.get("mamba_expand", c.get("expand", 2))
    jamba_like = c.model_type == "jamba" or c.has("mamba_expand")
    inter = int(expand * hidden) if jamba_like else c.get("intermediate_size")
    if d_state is None or not inter:
        raise w.missing(["mamba_d_state", "mamba_expand"], "Mamba1 layers need their state shape")
    return MambaFacts(
        kind="mamba",
        conv_kernel=int(conv),
        d_state=int(d_state),
        intermediate_size=int(inter),
        ssm_dtype=ssm_dtype,
    )


def _lightning_facts(c: _Cfg, hidden: int, w: _Where, ssm_dtype: str | None) -> MambaFacts:
    """MiniMax-style lightning attention: state (heads, head_dim, head_dim)."""
    heads = int(c.first("num_attention_heads"))  # present: _dims checked it
    hd = int(c.get("head_dim") or hidden // heads)
    return MambaFacts(kind="linear", num_heads=heads, head_dim=hd, ssm_dtype=ssm_dtype)


def _mamba_facts(c: _Cfg, kinds: set[str], hidden: int, w: _Where) -> MambaFacts | None:
    """The state-space facts of the one state-space kind a model's layers use (None: none)."""
    ssm_dtype = norm_dtype(c.get("mamba_ssm_dtype"))
    for kind, reader in (
        ("gdn", _gdn_facts),
        ("mamba2", _mamba2_facts),
        ("mamba", _mamba1_facts),
        ("linear", _lightning_facts),
    ):
        if kind in kinds:
            return reader(c, hidden, w, ssm_dtype)
    return None


# --------------------------------------------------------------------------------------------
# parameter estimate


@dataclass(frozen=True)
class ParamEstimate:
    """Parameter counts by storage class (whole model, TP=1)."""

    quantized: int  # weights stored at the quantized width
    unquantized: int  # embeddings, LM head, norms, routers, convs... at the checkpoint dtype
    mtp_quantized: int = 0
    mtp_unquantized: int = 0
    vision: int = 0

    @property
    def total(self) -> int:
        return self.quantized + self.unquantized + self.mtp_quantized + self.mtp_unquantized + self.vision


def _bytes(params_q: int, params_u: int, quant: Quant | None, dtype_bytes: int) -> int:
    if quant is None:
        return (params_q + params_u) * dtype_bytes
    return math.ceil(params_q * quant.bits / 8) + params_u * dtype_bytes


class _Tally:
    """Parameters of one layer by storage class: quantized (at the quant's bits) or unquantized."""

    def __init__(self, quant: Quant | None) -> None:
        self.quant, self.q, self.u = quant, 0, 0
        self.attn_in_q = quant is None or (quant.scope == "linear" and quant.attention_quantized)

    def lin(self, n: int, *, expert: bool = False, attn: bool = False) -> None:
        """A linear layer's weights: quantized unless the quant skips it (mxfp4: experts only;
        attention excluded by modules_to_not_convert / ignore)."""
        qt = self.quant
        if qt is None or (qt.scope == "experts" and not expert) or (attn and not self.attn_in_q):
            self.u += n
        else:
            self.q += n


def _attention_params(t: _Tally, c: _Cfg, f: ModelFacts, kind: str) -> None:
    h = f.hidden_size
    if kind in ("full", "sliding", "chunked"):
        hd, nh, kv = f.head_dim, f.num_attention_heads, f.num_key_value_heads
        gate = 2 if c.model_type in _GDN_TYPES else 1  # Qwen3-Next attention output gate doubles q_proj
        t.lin(h * nh * hd * gate + 2 * h * kv * hd + nh * hd * h, attn=True)
        t.u += 2 * hd if c.model_type.startswith(("qwen3", "gemma3")) else 0  # q/k norms
        if c.get("attention_bias") or c.get("qkv_bias") or c.model_type == "qwen2":
            t.u += nh * hd + 2 * kv * hd
        if c.model_type == "gpt_oss":
            t.u += nh + h  # attention sinks + o_proj bias
    elif kind == "mla":
        nh, rope = f.num_attention_heads, f.qk_rope_head_dim
        nope, vdim = int(c.get("qk_nope_head_dim", 128)), int(c.get("v_head_dim", 128))
        qr = c.get("q_lora_rank")
        if qr:
            t.lin(h * qr + qr * nh * (nope + rope), attn=True)
            t.u += qr
        else:
            t.lin(h * nh * (nope + rope), attn=True)
        t.lin(h * (f.kv_lora_rank + rope) + f.kv_lora_rank * nh * (nope + vdim) + nh * vdim * h, attn=True)
        t.u += f.kv_lora_rank


def _mixer_params(t: _Tally, c: _Cfg, f: ModelFacts, kind: str) -> None:
    """State-space / linear-attention mixers (GatedDeltaNet, Mamba2, Mamba1)."""
    h, m = f.hidden_size, f.mamba
    if m is None:
        return
    if kind == "gdn":
        kd, vd = (
            m.linear_num_key_heads * m.linear_key_head_dim,
            m.linear_num_value_heads * m.linear_value_head_dim,
        )
        t.lin(h * (2 * kd + 2 * vd) + vd * h)  # in_proj_qkvz + out_proj
        t.u += h * 2 * m.linear_num_value_heads  # in_proj_ba (not quantized in the FP8 release)
        t.u += (2 * kd + vd) * m.conv_kernel + 2 * m.linear_num_value_heads + m.linear_value_head_dim
    elif kind == "mamba2":
        conv_dim = m.intermediate_size + 2 * m.n_groups * m.d_state
        t.lin(h * (m.intermediate_size + conv_dim + m.num_heads) + m.intermediate_size * h)
        t.u += conv_dim * (m.conv_kernel + 1) + 3 * m.num_heads + m.intermediate_size
    elif kind == "mamba":
        dt_rank = int(c.get("mamba_dt_rank", c.get("time_step_rank", math.ceil(h / 16))))
        t.lin(h * 2 * m.intermediate_size + m.intermediate_size * h)
        t.lin(m.intermediate_size * (dt_rank + 2 * m.d_state) + dt_rank * m.intermediate_size)
        t.u += m.intermediate_size * (m.conv_kernel + 1 + m.d_state + 2) + 2 * m.d_state


def _mlp_params(t: _Tally, c: _Cfg, f: ModelFacts, i: int, kind: str) -> None:
    """The layer's MoE (experts, router, shared expert, biases) or dense MLP."""
    h = f.hidden_size
    if _layer_is_moe(c, f, i, kind):
        e, mi = f.num_experts, f.moe_intermediate_size
        mats = 2 if c.model_type == "nemotron_h" else 3  # Nemotron-H experts are relu^2 up + down
        t.lin(e * mats * h * mi, expert=True)
        t.u += h * e  # router
        if c.model_type == "gpt_oss":
            t.u += e + e * (2 * mi + h)  # router bias + expert gate_up/down biases (bf16)
        shared = _shared_expert_width(c, f)
        if shared:
            t.lin(mats * h * shared)
            if c.model_type in _GDN_TYPES or c.model_type.startswith("qwen2_moe"):
                t.u += h  # shared_expert_gate
        if c.model_type in ("deepseek_v3", "glm4_moe", "kimi_k2") or c.get("topk_method") == "noaux_tc":
            t.u += e  # e_score_correction_bias
    elif _layer_has_dense_mlp(c, kind):
        inter = int(c.get("intermediate_size", 0) or 0)
        if c.model_type != "nemotron_h":
            t.lin(3 * h * inter)
        elif not (kind == "none" and _nemotron_char(c, i) == "E"):
            t.lin(2 * h * inter)  # relu^2 MLP: up + down


def _layer_params(c: _Cfg, f: ModelFacts, i: int, kind: str, quant: Quant | None) -> tuple[int, int]:
    """(quantized, unquantized) parameters of decoder layer i: norms, mixer, MLP / MoE."""
    t = _Tally(quant)
    h = f.hidden_size
    if c.model_type == "nemotron_h":
        t.u += h  # one pre-mixer norm per block (each block is a single mixer or MLP)
    elif not (c.model_type == "falcon_h1" and kind == "mamba2"):
        t.u += 2 * h  # input + post-attention norms (Falcon-H1: once per decoder layer)
    # a mixer the quantization's exclusion list names by layer stays unquantized (Quant.excluded_mixers)
    tm = _Tally(None if quant is not None and i in quant.excluded_mixers else quant)
    _attention_params(tm, c, f, kind)
    _mixer_params(tm, c, f, kind)
    _mlp_params(t, c, f, i, kind)
    return t.q + tm.q, t.u + tm.u


def _nemotron_char(c: _Cfg, i: int) -> str:
    pattern = str(c.get("hybrid_override_pattern") or "")
    return pattern[i] if i < len(pattern) else ""


def _shared_expert_width(c: _Cfg, f: ModelFacts) -> int:
    w = (
        c.get("shared_expert_intermediate_size")
        or c.get("shared_intermediate_size")
        or c.get("moe_shared_expert_intermediate_size")
    )
    if w:
        return int(w)
    ns = c.get("n_shared_experts")
    return int(ns) * f.moe_intermediate_size if ns else 0


def _layer_is_moe(c: _Cfg, f: ModelFacts, i: int, kind: str) -> bool:
    if not f.num_experts:
        return False
    mt = c.model_type
    if mt == "nemotron_h":  # only "E" layers of hybrid_override_pattern are MoE
        pattern = str(c.get("hybrid_override_pattern") or "")
        return i < len(pattern) and pattern[i] == "E"
    if mt == "falcon_h1" and kind == "mamba2":
        return False  # counted once per decoder layer (on the attention entry)
    if c.has("first_k_dense_replace") and i < int(c.get("first_k_dense_replace")):
        return False
    if c.has("expert_layer_period"):
        return i % int(c.get("expert_layer_period")) == int(c.get("expert_layer_offset", 0))
    if i in (c.get("mlp_only_layers") or []):
        return False
    step = int(c.get("decoder_sparse_step", 1) or 1)
    freq = int(c.get("moe_layer_freq", 1) or 1)
    return (i + 1) % step == 0 and i % freq == 0


def _layer_has_dense_mlp(c: _Cfg, kind: str) -> bool:
    mt = c.model_type
    if mt == "nemotron_h":
        return kind == "none"
    if mt == "falcon_h1":
        return kind != "mamba2"
    if mt == "granitemoehybrid":
        return False  # MoE (+ shared) everywhere, or shared-only for dense variants
    return True


def estimate_params(config: dict[str, Any], facts: ModelFacts, quant: Quant | None = None) -> ParamEstimate:
    """Parameters by storage class, from the config alone.

    Checked against exact checkpoint inventories in tests (Qwen3 dense/MoE/Next, Llama, gpt-oss,
    DeepSeek-V2-Lite: within 1%). Biases other than attention qkv are ignored (< 0.1%).
    """
    top = config
    text = _with_block_pattern(_text_config(top))
    c = _Cfg(top, text, facts.model_type)
    h, v = facts.hidden_size, facts.vocab_size
    q = u = 0
    for i, kind in enumerate(facts.layer_kinds):
        lq, lu = _layer_params(c, facts, i // 2 if facts.parallel_mamba else i, kind, quant)
        q, u = q + lq, u + lu
    u += v * h + h  # embeddings + final norm
    if not facts.tie_word_embeddings:
        u += v * h  # LM head
    mq = mu = 0
    n_mtp = mtp_layers(config)
    if n_mtp:
        kind = "mla" if _is_mla(c) else "full"
        idx = facts.num_hidden_layers  # MTP layers sit after the decoder: MoE where the model is MoE
        lq, lu = _layer_params(c, facts, idx, kind, quant)
        # enorm + hnorm + eh_proj/fc (2h -> h) + final norm; DeepSeek/GLM MTP blocks also store
        # their own embed_tokens and shared_head.head (vocab x h each), Qwen3-Next's share them.
        extra_u = 3 * h + 2 * h * h
        if c.model_type not in _GDN_TYPES:
            extra_u += 2 * v * h
        mq, mu = n_mtp * lq, n_mtp * (lu + extra_u)
    vision = _vision_params(top)
    return ParamEstimate(q, u, mq, mu, vision)


def mtp_layers(config: dict[str, Any]) -> int:
    """Multi-token-prediction layers stored in the checkpoint.

    DeepSeek-V3 / GLM-4.5: `num_nextn_predict_layers`; Qwen3.5: `mtp_num_hidden_layers`;
    Qwen3-Next's config.json names none but the checkpoint holds one `mtp.*` block (~1.6B params).

    vLLM skips these weights unless speculative decoding uses them (read in the 0.32.0 source:
    qwen3_next.py maps the "mtp." prefix to None, deepseek_v2.py drops
    get_spec_layer_idx_from_weight_name layers, glm4_moe.py calls skip_spec_layers). Assumed, not
    checked, for earlier versions back to 0.10.1.
    """
    text = _text_config(config)
    for k in ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers"):
        for src in (text, config):
            if src.get(k) is not None:
                return int(src[k])
    mt = text.get("model_type") or config.get("model_type")
    return 1 if mt in ("qwen3_next",) else 0


def _vision_params(top: dict[str, Any]) -> int:
    """SigLIP/ViT-style tower + projector, from vision_config. Within 0.2% for gemma-3-27b.
    Qwen3-VL towers (deepstack_visual_indexes) are counted module by module (_qwen3_vl_vision_params)."""
    vc = top.get("vision_config")
    if not isinstance(vc, dict):
        return 0
    text_h = int(_text_config(top).get("hidden_size") or 0)
    if vc.get("deepstack_visual_indexes") is not None:
        return _qwen3_vl_vision_params(vc, text_h)
    h, i, n = (
        vc.get("hidden_size"),
        vc.get("intermediate_size"),
        vc.get("num_hidden_layers") or vc.get("depth"),
    )
    if not (h and i and n):
        return 0
    patch = int(vc.get("patch_size", 14))
    positions = (int(vc.get("image_size", 0)) // patch) ** 2
    # layers (weights, biases, 2 layer norms) + patch embedding + positions + projector to the text width
    h, i, n = int(h), int(i), int(n)
    return n * (4 * h * h + 2 * h * i + 9 * h + i) + 3 * patch * patch * h + positions * h + h * text_h


def _qwen3_vl_vision_params(vc: dict[str, Any], text_h: int) -> int:
    """Qwen3_VisionTransformer's parameters (model_executor/models/qwen3_vl.py:346-600@0.20.2): Conv3d
    patch embedding with bias, learned positions, blocks of 2 LayerNorms + qkv + proj + fc1 + fc2 (all
    with biases), the merger and one merger per deepstack level (LayerNorm over h or 4h, fc1 4h -> 4h,
    fc2 4h -> out). Qwen3-VL-30B-A3B: 538,631,408."""
    h, i, n = (int(vc.get(k) or 0) for k in ("hidden_size", "intermediate_size", "depth"))
    if not (h and i and n):
        return 0
    p, t, c = (
        int(vc.get(k) or d)
        for k, d in (("patch_size", QWEN3_VL_PATCH), ("temporal_patch_size", 2), ("in_channels", 3))
    )
    m2 = int(vc.get("spatial_merge_size") or 2) ** 2
    out = int(vc.get("out_hidden_size") or text_h)
    block = 4 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h)
    wide = h * m2

    def merger(norm: int) -> int:
        return 2 * norm + wide * wide + wide + wide * out + out

    embed = c * t * p * p * h + h + int(vc.get("num_position_embeddings") or 0) * h
    levels = len(vc.get("deepstack_visual_indexes") or ())
    return embed + n * block + merger(h) + levels * merger(wide)


# --------------------------------------------------------------------------------------------
# the reader


@dataclass(frozen=True)
class _Dims:
    """The decoder's shape: dense GQA/MHA, or MLA (DeepSeek-V2/V3, Kimi-K2)."""

    n: int
    hidden: int
    heads: int
    vocab: int
    kv: int
    head_dim: int
    mla: bool


def _dims(c: _Cfg, w: _Where) -> _Dims:
    """Layers, widths and heads; `head_dim` defaults to hidden / heads and `num_key_value_heads` to
    `num_attention_heads` (MHA), as vLLM's ModelConfig does (get_total_num_kv_heads)."""
    vals = {k: c.first(k) for k in ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")}
    miss = [k for k, v in vals.items() if v is None]
    if miss:
        raise w.missing(miss)
    n, hidden, heads, vocab = (int(v) for v in vals.values())
    kv = c.first("num_key_value_heads")
    if kv is None and c.get("multi_query"):
        kv = 1  # Falcon-style multi-query
    kv = int(kv) if kv is not None else heads
    mla = _is_mla(c)
    if mla:
        head_dim = int(c.get("qk_nope_head_dim", 128)) + int(c.get("qk_rope_head_dim"))
    else:
        hd = c.get("head_dim") or c.get("attention_head_dim")
        head_dim = int(hd) if hd else hidden // heads
    return _Dims(n, hidden, heads, vocab, kv, head_dim, mla)


def _hybrid_layout(c: _Cfg, d: _Dims, w: _Where) -> tuple[Kinds, MambaFacts | None]:
    """Layer kinds plus the state-space facts; a config with state-space keys but no layout read
    is refused rather than guessed dense."""
    kinds, parallel = _layer_kinds(c, d.n, w)
    ssm_keys = [k for k in _SSM_HINT_KEYS if c.has(k)]
    if ssm_keys and not set(kinds) & {"mamba", "mamba2", "gdn", "linear"}:
        raise w.missing(
            ["a layer layout residency understands"],
            f"the config has state-space keys ({', '.join(ssm_keys)}) but no layer pattern residency reads "
            "(layer_types, layers_block_type, hybrid_override_pattern, attn_layer_period, full_attention_interval)",
        )
    return (kinds, parallel), _mamba_facts(c, set(kinds), d.hidden, w)


def _moe_dims(c: _Cfg) -> tuple[int, int, int, int]:
    """(experts, top-k, dense intermediate, expert intermediate) under each family's key names
    (Qwen/Mixtral/DeepSeek/gpt-oss/Jamba/granite)."""
    experts = int(
        c.get("num_experts")
        or c.get("num_local_experts")
        or c.get("n_routed_experts")
        or c.get("moe_num_experts")
        or 0
    )
    top_k = int(
        c.get("num_experts_per_tok")
        or c.get("experts_per_token")
        or c.get("moe_topk")
        or (c.get("top_k") if experts else 0)
        or 0
    )
    inter = int(c.get("intermediate_size") or c.get("ffn_dim") or c.get("n_inner") or 0)
    moe_inter = int(c.get("moe_intermediate_size") or (inter if experts else 0))
    return experts, top_k, inter, moe_inter


def _checkpoint_dtype(top: dict[str, Any], text: dict[str, Any], given: str | None) -> str:
    dt = (
        norm_dtype(text.get("torch_dtype"))
        or norm_dtype(text.get("dtype"))
        or norm_dtype(top.get("torch_dtype"))
        or norm_dtype(top.get("dtype"))
        or norm_dtype(given)
        or "bfloat16"
    )
    return dt if dt in DTYPE_BYTES else "bfloat16"


def _tied(top: dict[str, Any], text: dict[str, Any], mt: str) -> bool:
    tie = top.get("tie_word_embeddings")
    if tie is None:
        tie = text.get("tie_word_embeddings")
    if tie is None:  # transformers PretrainedConfig default is True; gemma/gemma3 tie too
        tie = mt.startswith("gemma") or False
    return bool(tie)


def _layout_notes(c: _Cfg, quant: Quant | None, mla: bool, parallel: bool) -> list[str]:
    out = []
    if quant and quant.note:
        out.append(quant.note)
    if mla:
        out.append(
            f"MLA: one latent of kv_lora_rank {int(c.get('kv_lora_rank'))} + qk_rope_head_dim "
            f"{int(c.get('qk_rope_head_dim'))} per token per layer, not split by TP (MLAAttentionSpec; "
            "VLLM_MLA_DISABLE=1 falls back to full heads)"
        )
    if parallel:
        out.append("every decoder layer holds an attention KV cache AND a Mamba2 state (parallel hybrid)")
    return out


def _with_estimate(
    facts: ModelFacts,
    top: dict[str, Any],
    quant: Quant | None,
    param_count: int | None,
    mm: bool,
    notes: list[str],
) -> ModelFacts:
    """The checkpoint-size estimate from the config (estimate_params), MTP heads vLLM leaves unloaded
    and the vision tower included, and the notes that go with it."""
    est = estimate_params(top, facts, quant)
    db = DTYPE_BYTES[facts.dtype]
    main_bytes = _bytes(est.quantized, est.unquantized, quant, db)
    mtp_bytes = _bytes(est.mtp_quantized, est.mtp_unquantized, quant, db)
    vision_bytes = est.vision * db
    if mtp_bytes:
        notes.append(
            f"checkpoint holds {mtp_layers(top)} MTP layer(s) (~{mtp_bytes / GiB:.2f} GiB, estimated from the config) "
            "that vLLM loads only with speculative decoding; counted in unloaded_bytes"
        )
    if vision_bytes:
        notes.append(f"vision tower ~{vision_bytes / GiB:.2f} GiB (loaded by vLLM for multimodal serving)")
    estimated = main_bytes + mtp_bytes + vision_bytes
    if quant is None and param_count is not None and param_count * db > estimated:
        # A known safetensors parameter count of an unquantized checkpoint is exact (x dtype bytes);
        # it also covers parts the config does not describe (e.g. a trimmed config without its
        # vision tower: Mistral-Small-3.2 24,011,361,280 params -> 48,022,722,560 B vs ~47.1e9 text-only).
        estimated = param_count * db
    elif mm and not vision_bytes:
        notes.append(
            "vision tower not described by the config: estimated_bytes covers the text backbone only"
        )
    return replace(
        facts,
        param_count=param_count if param_count is not None else est.total,
        unloaded_bytes=mtp_bytes,
        estimated_bytes=estimated,
        notes=tuple(notes),
    )


def _wrong_types_are_spec_errors(fn: Callable[_P, ModelFacts]) -> Callable[_P, ModelFacts]:
    """A config.json (or preprocessor / quant config) value of the wrong type - "head_dim": "x",
    "deepstack_visual_indexes": 5 - is one line naming the model, not a traceback (--debug shows it)."""

    @wraps(fn)
    def read(*args: _P.args, **kwargs: _P.kwargs) -> ModelFacts:
        try:
            return fn(*args, **kwargs)
        except (TypeError, ValueError, AttributeError, OverflowError) as e:
            field, model = kwargs.get("field", "model"), kwargs.get("model_id", "the model")
            raise UnknownModelError(
                str(field),
                f"config.json of {model!r} (or its preprocessor/quantization config) has a value residency "
                f"cannot read ({type(e).__name__}: {str(e)[:100]})",
                "check the file against the model's published config",
            ) from e

    return read


@_wrong_types_are_spec_errors
def facts_from_config(
    config: dict[str, Any],
    *,
    model_id: str,
    source: str,
    checkpoint_bytes: int | None = None,
    field: str = "model",
    param_count: int | None = None,
    dtype: str | None = None,
    hf_quant_config: dict[str, Any] | None = None,
    multimodal: bool | None = None,
    notes: tuple[str, ...] = (),
    preprocessor: dict[str, Any] | None = None,
) -> ModelFacts:
    """Read config.json into ModelFacts. Raises UnknownModelError naming what it cannot read.

    `field` is the spec path for errors (e.g. "models[1:big].model"). `checkpoint_bytes` is the
    sum of tensor bytes when known; otherwise `estimated_bytes` carries the config-based estimate.
    `preprocessor` is the checkpoint's preprocessor_config.json (the largest image vLLM profiles with).
    """
    if not isinstance(config, dict):
        raise UnknownModelError(field, f"config.json of {model_id!r} is not a JSON object", "check the file")
    top = config
    text = _text_config(top)
    nested = text is not top
    if nested:
        text = _with_block_pattern(text)
    else:
        top = text = _with_block_pattern(top)
    mt = str(text.get("model_type") or top.get("model_type") or "")
    archs = top.get("architectures") or text.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else (mt or "unknown")
    c = _Cfg(top, text, mt)
    w = _Where(field, model_id, str(arch))

    d = _dims(c, w)
    (kinds, parallel), mamba = _hybrid_layout(c, d, w)
    num_experts, top_k, inter, moe_inter = _moe_dims(c)
    quant = read_quantization(top, hf_quant_config)
    mm = (
        multimodal
        if multimodal is not None
        else (nested or "vision_config" in top or str(arch).endswith("ForConditionalGeneration"))
    )
    sliding = c.get("sliding_window") if "sliding" in kinds else None
    facts = ModelFacts(
        id=model_id,
        architecture=str(arch),
        model_type=mt,
        source=source,  # type: ignore[arg-type]
        num_hidden_layers=d.n,
        hidden_size=d.hidden,
        vocab_size=d.vocab,
        num_attention_heads=d.heads,
        num_key_value_heads=d.kv,
        head_dim=d.head_dim,
        layer_kinds=kinds,  # type: ignore[arg-type]
        dtype=_checkpoint_dtype(top, text, dtype),
        intermediate_size=inter,
        max_position_embeddings=_int_or_none(c.first("max_position_embeddings")),
        tie_word_embeddings=_tied(top, text, mt),
        sliding_window=int(sliding) if sliding else None,
        attention_chunk_size=_int_or_none(c.get("attention_chunk_size")) if "chunked" in kinds else None,
        num_experts=num_experts,
        num_experts_per_tok=top_k,
        moe_intermediate_size=moe_inter,
        kv_lora_rank=int(c.get("kv_lora_rank")) if d.mla else 0,
        qk_rope_head_dim=int(c.get("qk_rope_head_dim")) if d.mla else 0,
        mamba=mamba,
        quantization=quant.method if quant else None,
        quant_bits=round(quant.bits, 6) if quant else None,
        checkpoint_bytes=checkpoint_bytes,
        param_count=param_count,
        multimodal=bool(mm),
        vision=vision_facts(top, d.hidden, preprocessor, field=field) if mm else None,
        parallel_mamba=parallel,
    )
    out_notes = list(notes) + _layout_notes(c, quant, d.mla, parallel)
    return _with_estimate(facts, top, quant, param_count, bool(mm), out_notes)


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def facts_from_override(model_id: str, override: Any, *, field: str) -> ModelFacts:
    """ModelFacts from ModelSpec.facts alone (source "manual"): a model no config describes."""
    o = override
    need = {
        "num_hidden_layers": o.num_hidden_layers,
        "hidden_size": o.hidden_size,
        "vocab_size": o.vocab_size,
        "weights_gib": o.weights_gib,
    }
    if o.head_dim is None and o.num_attention_heads is None:
        need["head_dim"] = None
    if o.num_key_value_heads is None and o.num_attention_heads is None:
        need["num_key_value_heads"] = None
    miss = [k for k, v in need.items() if v is None]
    if miss:
        fix_keys = ", ".join(miss)
        raise UnknownModelError(
            field,
            f"{model_id!r} has no config.json residency can find, and facts lacks {fix_keys}",
            f"add {fix_keys} under {field.rsplit('.', 1)[0]}.facts, or point model at a local directory with config.json",
        )
    heads = o.num_attention_heads or o.num_key_value_heads
    head_dim = o.head_dim or o.hidden_size // heads
    kv = o.num_key_value_heads or heads
    n = o.num_hidden_layers
    kinds: tuple[LayerKind, ...] = ("sliding",) * n if o.sliding_window else ("full",) * n
    return ModelFacts(
        id=model_id,
        architecture=o.architecture or "manual",
        model_type="manual",
        source="manual",
        num_hidden_layers=n,
        hidden_size=o.hidden_size,
        vocab_size=o.vocab_size,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        layer_kinds=kinds,
        dtype=norm_dtype(o.dtype) or "bfloat16",
        intermediate_size=o.intermediate_size or 0,
        max_position_embeddings=o.max_position_embeddings,
        sliding_window=o.sliding_window,
        checkpoint_bytes=int(o.weights_gib * GiB),
        notes=("facts given by hand in the spec",),
    )


def apply_override(facts: ModelFacts, override: Any) -> ModelFacts:
    """ModelSpec.facts on top of resolved facts: every key given replaces the resolved value.

    num_hidden_layers that differs from the resolved count rebuilds a uniform layer list of the
    model's first attention kind; sliding_window on a model without sliding layers makes every
    full-attention layer sliding (Mistral-7B-v0.1 style); weights_gib sets checkpoint_bytes.
    """
    if override is None:
        return facts
    o = override
    ch: dict[str, Any] = {}
    for k in (
        "architecture",
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "intermediate_size",
        "max_position_embeddings",
    ):
        v = getattr(o, k, None)
        if v is not None:
            ch[k] = v
    if o.dtype:
        ch["dtype"] = norm_dtype(o.dtype)
    kinds = facts.layer_kinds
    if o.num_hidden_layers is not None and o.num_hidden_layers != facts.num_hidden_layers:
        first = next((k for k in kinds if k in ("full", "sliding", "chunked", "mla")), "full")
        kinds = (first,) * o.num_hidden_layers
        ch["num_hidden_layers"] = o.num_hidden_layers
        ch["parallel_mamba"] = False
    if o.sliding_window is not None:
        ch["sliding_window"] = o.sliding_window
        if "sliding" not in kinds:
            kinds = tuple("sliding" if k == "full" else k for k in kinds)
    ch["layer_kinds"] = kinds
    if o.weights_gib is not None:
        ch["checkpoint_bytes"] = int(o.weights_gib * GiB)
        ch["unloaded_bytes"] = 0  # the user gave what vLLM loads
    return replace(facts, notes=facts.notes + ("some facts given by hand in the spec",), **ch)
