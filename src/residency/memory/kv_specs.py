"""KV-cache specs per layer, hybrid block-size alignment, grouping, block counts and vLLM's log lines.

vllm-memory.md §7 (specs, groups, alignment, num_blocks, log lines) and §6 (need check and
estimate_max_model_len). Pure integer arithmetic on bytes, like vLLM.

Worked example (§8.1, Qwen3-4B, 36 layers x 8 KV heads x 128, bf16, block 16):
page = 2 x 16 x 8 x 128 x 2 = 65,536 B per layer; one group of 36 -> 2,359,296 B per block;
20 GiB -> 9,102 blocks -> 145,632 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import lcm
from typing import Literal

from residency.memory.dtypes import dtype_bytes
from residency.memory.model_facts import ModelFacts
from residency.memory.versions import VersionRules

DEFAULT_BLOCK_SIZE = (
    16  # CacheConfig.DEFAULT_BLOCK_SIZE on CUDA (config/cache.py:34 @0.19.1; 16 in every version covered)
)
MAMBA_KINDS = ("mamba2", "mamba", "gdn", "linear")
ATTN_KINDS = ("full", "sliding", "chunked", "mla")


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class KVSettings:
    """The engine settings the KV layout depends on (already defaulted)."""

    max_model_len: int
    max_num_batched_tokens: int
    max_num_seqs: int
    tensor_parallel_size: int = 1
    block_size: int | None = None
    dtype: str = "auto"  # model dtype flag
    kv_cache_dtype: str = "auto"
    mamba_ssm_cache_dtype: str = "auto"
    enable_prefix_caching: bool | None = None
    num_speculative_tokens: int = 0
    compute_capability: str | None = None


@dataclass(frozen=True)
class LayerKV:
    """One layer's KV spec (per TP rank). page_bytes is for one block of `block_size` tokens."""

    kind: Literal["full", "sliding", "chunked", "mla", "mamba"]
    page_bytes: int
    block_size: int
    window: int | None = None  # sliding window / attention chunk
    mamba_blocks: int = 1  # Mamba state blocks one request holds (mode none 1, align 2, all: by length)
    mamba_all: bool = False

    def max_memory_usage_bytes(self, max_model_len: int, max_num_batched_tokens: int) -> int:
        """Bytes one request of length L needs in this layer (§7.1 table)."""
        L, b = max_model_len, self.block_size
        if self.kind in ("full", "mla"):
            return cdiv(L, b) * self.page_bytes
        if self.kind == "sliding":
            w = self.window or L
            return (cdiv(min(w - 1 + max_num_batched_tokens, L), b) + 1) * self.page_bytes
        if self.kind == "chunked":
            w = self.window or L
            return cdiv(min(w + max_num_batched_tokens, L), b) * self.page_bytes
        # mamba
        if self.mamba_all:
            return cdiv(L, b) * self.page_bytes
        return self.mamba_blocks * self.page_bytes

    @property
    def key(self) -> tuple[object, ...]:
        return (self.kind, self.page_bytes, self.block_size, self.window, self.mamba_blocks, self.mamba_all)


@dataclass(frozen=True)
class KVLayout:
    layers: tuple[LayerKV, ...]
    block_size: int
    groups: tuple[tuple[int, ...], ...]  # layer indices per KV cache group
    group_kinds: tuple[LayerKV, ...]  # the spec of each group
    group_size: int  # max layers per group: tensors shared across groups
    page_bytes: int  # uniform page (hybrid) or the first page
    bytes_per_block: int
    uniform: bool  # one group, all layer specs equal
    uniform_type: bool  # one group of same-type, different-size specs (>= 0.11.0)
    hybrid: bool
    mamba_mode: str | None = None  # none / align / all for models with Mamba layers
    block_bumped: bool = False  # "Setting attention block size to N tokens ..."
    mamba_padding_pct: float | None = None  # "Padding mamba page size by P% ..."
    padding_layers: int = 0  # "Add N padding layers ..."
    attention_bytes_per_token: int = 0  # sum over attention layers, per rank
    mamba_bytes_per_seq: int = 0  # sum over Mamba layers (padded pages), per rank
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_mamba(self) -> bool:
        return any(s.kind == "mamba" for s in self.layers)

    @property
    def min_block_size(self) -> int:
        return self.block_size


# ----------------------------------------------------------------------------------- state shapes


def mamba_state_bytes(facts: ModelFacts, kind: str, s: KVSettings, rules: VersionRules) -> int:
    """Unpadded state bytes per layer per sequence (M), per TP rank (§7.1 Mamba-family shapes).

    Qwen3-Next GDN, TP 1, bf16: conv (3, 8192) = 49,152 B + temporal (32, 128, 128) = 1,048,576 B
    -> M = 1,097,728 B.
    """
    m = facts.mamba
    if m is None:
        raise ValueError(f"{facts.id}: layer kind {kind} needs MambaFacts")
    t = s.tensor_parallel_size
    model_b = dtype_bytes(s.dtype if s.dtype != "auto" else facts.dtype)
    conv_b = model_b  # mamba_cache_dtype auto -> model dtype
    ssm_flag = s.mamba_ssm_cache_dtype if s.mamba_ssm_cache_dtype != "auto" else m.ssm_dtype
    ssm_b = dtype_bytes(ssm_flag, conv_b)
    if kind == "gdn":
        # <= 0.16: both states use the conv dtype; >= 0.17 the temporal state honours mamba_ssm_cache_dtype
        temporal_b = ssm_b if rules.gdn_ssm_dtype_separate else conv_b
        conv_dim = (
            2 * m.linear_num_key_heads * m.linear_key_head_dim
            + m.linear_num_value_heads * m.linear_value_head_dim
        )
        conv = (m.conv_kernel - 1 + s.num_speculative_tokens) * (conv_dim // t) * conv_b
        temporal = (
            (m.linear_num_value_heads // t) * m.linear_key_head_dim * m.linear_value_head_dim * temporal_b
        )
        return conv + temporal
    if kind == "mamba2":
        ng = m.n_groups + ((t - m.n_groups) if m.n_groups % t else 0)
        conv = (m.conv_kernel - 1) * ((m.intermediate_size + 2 * ng * m.d_state) // t) * conv_b
        ssm = (m.num_heads // t) * m.head_dim * m.d_state * ssm_b
        return conv + ssm
    if kind == "mamba":
        conv = (m.conv_kernel - 1) * (m.intermediate_size // t) * conv_b
        ssm = (m.intermediate_size // t) * m.d_state * ssm_b
        return conv + ssm
    if kind == "linear":  # MiniMax lightning attention: (heads/t, head_dim, head_dim)
        return (facts.num_attention_heads // t) * facts.head_dim * facts.head_dim * ssm_b
    raise ValueError(kind)


def kv_heads_per_rank(facts: ModelFacts, tp: int) -> int:
    """max(1, kv_heads // tp): KV heads are replicated when TP > KV heads."""
    return max(1, facts.num_key_value_heads // tp)


def attention_bytes_per_token(facts: ModelFacts, kind: str, s: KVSettings, rules: VersionRules) -> int:
    """A1: one token of one attention layer, per rank (§7.1)."""
    kv_b = dtype_bytes(s.kv_cache_dtype, dtype_bytes(s.dtype if s.dtype != "auto" else facts.dtype))
    if kind == "mla":
        if s.kv_cache_dtype == "fp8_ds_mla" and not rules.mla_use_mla_flag:
            return 656  # >= 0.11.0 MLAAttentionSpec fp8_ds_mla (DeepSeek-V3.2)
        # one latent (kv_lora_rank + qk_rope_head_dim), no factor 2, not split by TP
        return (facts.kv_lora_rank + facts.qk_rope_head_dim) * kv_b
    return 2 * kv_heads_per_rank(facts, s.tensor_parallel_size) * facts.head_dim * kv_b


def supports_mamba_prefix_caching(facts: ModelFacts) -> bool:
    """SupportsMambaPrefixCaching: Mamba2/NemotronH-style models; Qwen3-Next (GDN) does not declare it."""
    return any(k in ("mamba2", "mamba") for k in facts.layer_kinds)


def mamba_cache_mode(facts: ModelFacts, s: KVSettings, rules: VersionRules) -> str:
    """none / align / all (§7.3 prefix-caching defaults for hybrids)."""
    epc = s.enable_prefix_caching
    if epc is False:
        return "none"
    if rules.hybrid_prefix_caching_default:  # >= 0.26: on by default for generative hybrids
        if supports_mamba_prefix_caching(facts):
            return rules.mamba2_default_mode
        return "align"
    if epc:  # explicit --enable-prefix-caching
        if rules.mamba_cache_modes:  # 0.15-0.25
            return "all" if supports_mamba_prefix_caching(facts) and not s.num_speculative_tokens else "align"
        if rules.mamba_prefix_opt_in and supports_mamba_prefix_caching(facts):  # 0.11.1-0.14
            return "all"
    return "none"


def hybrid_alignment(facts: ModelFacts, s: KVSettings, rules: VersionRules, mode: str) -> int:
    """Alignment `a` of the hybrid block size (§7.3)."""
    has_mla = "mla" in facts.layer_kinds
    a = 16
    if rules.mla_block_alignment_64 and has_mla:
        a = 64  # 0.11.1-0.19 MLA
    if rules.block_from_backend:  # >= 0.20: max(kernel min block, cache block_size)
        a = max(16, s.block_size or 0) if not has_mla else max(64, s.block_size or 0)
    if (
        rules.gdn_flashinfer_align64
        and mode == "align"
        and "gdn" in facts.layer_kinds
        and facts.mamba is not None
        and facts.mamba.linear_key_head_dim == 128
        and (s.compute_capability or "").split(".")[0] in ("9", "10", "12")
    ):
        a = lcm(a, 64)  # 0.33: FlashInfer GDN prefill checkpoint alignment (gdn_attn.py:34)
    return a


# ----------------------------------------------------------------------------------- layout


def build_kv_layout(facts: ModelFacts, s: KVSettings, rules: VersionRules) -> KVLayout:
    """Per-layer specs, the (possibly bumped) block size and the KV cache groups.

    Long on purpose: it follows vLLM's KV-cache grouping step by step."""
    kinds = list(facts.layer_kinds)
    notes: list[str] = []
    attn_kinds = [k for k in kinds if k in ATTN_KINDS]
    mamba_kinds = [k for k in kinds if k in MAMBA_KINDS]
    block = s.block_size or DEFAULT_BLOCK_SIZE
    mode: str | None = None
    bumped = False
    pad_pct: float | None = None
    mamba_page = 0
    if mamba_kinds:
        mode = mamba_cache_mode(facts, s, rules)
        M = max(mamba_state_bytes(facts, k, s, rules) for k in set(mamba_kinds))
        if attn_kinds:
            A1 = attention_bytes_per_token(facts, attn_kinds[0], s, rules)
            a = hybrid_alignment(facts, s, rules, mode)
            if mode == "all":
                chunk = 256  # Mamba2 chunk_size (mamba_block_size must be a multiple)
                step = lcm(chunk, a)
                need_block = step * cdiv(cdiv(M, A1), step)
            else:
                need_block = a * cdiv(M, a * A1)
            if s.block_size is None or s.block_size < need_block:
                bumped = need_block != block
                block = need_block
            mamba_page = block * A1
            if mamba_page > M:
                pad_pct = (mamba_page - M) / M * 100
        else:
            mamba_page = M
    layers: list[LayerKV] = []
    for k in kinds:
        if k in ATTN_KINDS:
            a1 = attention_bytes_per_token(facts, k, s, rules)
            window = (
                facts.sliding_window
                if k == "sliding"
                else facts.attention_chunk_size
                if k == "chunked"
                else None
            )
            layers.append(LayerKV(kind=k, page_bytes=block * a1, block_size=block, window=window))  # type: ignore[arg-type]
        elif k in MAMBA_KINDS:
            nb = 1 + s.num_speculative_tokens
            if mode == "align":
                nb = 2 + s.num_speculative_tokens
            layers.append(
                LayerKV(
                    kind="mamba",
                    page_bytes=mamba_page,
                    block_size=block,
                    mamba_blocks=nb,
                    mamba_all=mode == "all",
                )
            )
    if not layers:
        return KVLayout((), block, (), (), 0, 0, 0, True, False, False, notes=("attention-free: no KV",))

    keys = {sp.key for sp in layers}
    att_tok = sum(sp.page_bytes // sp.block_size for sp in layers if sp.kind != "mamba")
    mamba_seq = sum(sp.page_bytes * sp.mamba_blocks for sp in layers if sp.kind == "mamba")
    common = dict(
        block_size=block,
        mamba_mode=mode,
        block_bumped=bumped,
        mamba_padding_pct=pad_pct,
        attention_bytes_per_token=att_tok,
        mamba_bytes_per_seq=mamba_seq,
    )

    def one_group(uniform: bool) -> KVLayout:
        return KVLayout(
            layers=tuple(layers),
            groups=(tuple(range(len(layers))),),
            group_kinds=(layers[0],),
            group_size=len(layers),
            page_bytes=layers[0].page_bytes,
            bytes_per_block=sum(sp.page_bytes for sp in layers),  # equal pages: page x layers
            uniform=uniform,
            uniform_type=not uniform,
            hybrid=False,
            notes=tuple(notes),
            **common,  # type: ignore[arg-type]
        )

    if len(keys) == 1:  # §7.2 rule 3: all specs equal -> one group of all layers
        return one_group(uniform=True)
    types = {sp.kind for sp in layers}
    pages = {sp.page_bytes for sp in layers}
    if len(pages) > 1 and rules.uniform_type_specs and types <= {"full", "mla"}:
        # §7.2 rule 4 (>= 0.11.0): UniformTypeKVCacheSpecs -> one group, bytes per block = sum of pages.
        # Full and MLA layers together count: MLAAttentionSpec subclasses FullAttentionSpec and
        # is_uniform_type checks isinstance (kv_cache_interface.py:142, :296-299 @0.11.0)
        return one_group(uniform=False)
    # §7.2 rule 5: hybrid, equal pages. Bucket by spec, group_size = min (or max under the threshold).
    if len(pages) > 1:
        notes.append(
            "page sizes differ across layer types; vLLM would pad/pack them (0.33) - estimate uses the largest page"
        )
    page = max(pages)
    buckets: dict[tuple[object, ...], list[int]] = {}
    for i, sp in enumerate(layers):
        buckets.setdefault(sp.key, []).append(i)
    sizes = [len(v) for v in buckets.values()]
    gsize = min(sizes)
    if rules.group_size_threshold is not None and max(sizes) < rules.group_size_threshold * min(sizes):
        gsize = max(sizes)
    groups: list[tuple[int, ...]] = []
    gkinds: list[LayerKV] = []
    padding = 0
    for idxs in buckets.values():
        ng = cdiv(len(idxs), gsize)
        for j in range(ng):
            groups.append(tuple(idxs[j::ng]))
            gkinds.append(layers[idxs[0]])
        padding += ng * gsize - len(idxs)
    return KVLayout(
        layers=tuple(layers),
        groups=tuple(groups),
        group_kinds=tuple(gkinds),
        group_size=gsize,
        page_bytes=page,
        bytes_per_block=page * gsize,
        uniform=False,
        uniform_type=False,
        hybrid=True,
        padding_layers=padding,
        notes=tuple(notes),
        **common,  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------------------------- block math


def num_blocks(layout: KVLayout, available_bytes: int) -> int:
    """§7.4: available // bytes_per_block (uniform: page x layers; hybrid: page x group_size)."""
    if not layout.layers:
        return 1
    if available_bytes <= 0:
        return 0
    return available_bytes // layout.bytes_per_block


def blocks_per_request(layout: KVLayout, max_model_len: int, mnbt: int) -> int:
    """sum over groups of cdiv(max_mem(group spec), page) (§7.5 concurrency denominator)."""
    if layout.uniform_type:
        # one group: per_req = sum of per-layer max mem, block = sum of pages
        per_req = sum(sp.max_memory_usage_bytes(max_model_len, mnbt) for sp in layout.layers)
        return cdiv(per_req, layout.bytes_per_block)
    total = 0
    for g in layout.group_kinds:
        total += cdiv(g.max_memory_usage_bytes(max_model_len, mnbt), g.page_bytes)
    return total


def needed_bytes(layout: KVLayout, max_model_len: int, mnbt: int, rules: VersionRules) -> int:
    """§6.2: KV one request at max_model_len needs."""
    if not layout.layers:
        return 0
    if rules.need_from_groups:  # >= 0.33
        return layout.bytes_per_block * blocks_per_request(layout, max_model_len, mnbt)
    return sum(sp.max_memory_usage_bytes(max_model_len, mnbt) for sp in layout.layers)


def check_available(layout: KVLayout, available_bytes: int, rules: VersionRules) -> int:
    """The available bytes the §6 checks compare against (>= 0.29: minus one null block)."""
    if rules.need_minus_null_block and layout.layers:
        return available_bytes - layout.bytes_per_block
    return available_bytes


def estimate_max_model_len(
    layout: KVLayout, available_bytes: int, max_model_len: int, mnbt: int, rules: VersionRules
) -> int:
    """vLLM's binary search over 1..max_model_len for the largest L whose need fits (0 if none)."""

    def fits(L: int) -> bool:
        return needed_bytes(layout, L, mnbt, rules) <= available_bytes

    lo, hi = 1, max_model_len
    if not fits(lo):
        return 0
    result = 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(mid):
            result = mid
            lo = mid + 1
        else:
            hi = mid - 1
    return result


def max_concurrency(layout: KVLayout, nblocks: int, max_model_len: int, mnbt: int) -> float:
    """§7.5: num_blocks / blocks per request at max_model_len (no null block subtracted)."""
    if not layout.layers:
        return float("inf")
    return nblocks / blocks_per_request(layout, max_model_len, mnbt)


def logged_tokens(layout: KVLayout, nblocks: int, max_model_len: int, mnbt: int, rules: VersionRules) -> int:
    """The "GPU KV cache size: N tokens" figure by version (§7.5)."""
    if not layout.layers:
        return 0
    if rules.log_tokens == "concurrency":  # >= 0.20.1
        return int(max_concurrency(layout, nblocks, max_model_len, mnbt) * max_model_len)
    if rules.log_tokens == "blocks" and (layout.uniform or layout.uniform_type):  # <= 0.10.2 uniform
        return nblocks * layout.block_size
    # <= 0.10.2 hybrid and 0.11.0-0.20.0: (num_blocks // #groups) x min block size
    return (nblocks // len(layout.groups)) * layout.min_block_size
