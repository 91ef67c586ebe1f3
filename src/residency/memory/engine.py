"""One vLLM process's startup, start to "init engine ... took": every figure it logs and every check.

vllm-memory.md §13 in order: requested memory and the free-memory check (§2), weights (§10), the
profile run (§3, §4), CUDA graphs (§5), available KV (requested - weights - activation peak -
non-torch growth [- graph estimate]: vLLM's Formula A <= 0.26 and Formula B >= 0.27 are the same sum
in these terms except for allocations made between the weights and the profile (the V2 sampler
state, VersionRules.persistent_in_non_kv), docs/vllm-versions.md [V27-formula-b]; or
kv_cache_memory_bytes §9), the checks (§6), the block math and log lines (§7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from residency.memory import activation as act
from residency.memory import kv_specs as kv
from residency.memory import messages
from residency.memory import unified as uma
from residency.memory.device import Device
from residency.memory.dtypes import dtype_bytes
from residency.memory.model_facts import ModelFacts
from residency.memory.moe import mxfp4_backend
from residency.memory.versions import VersionRules, cudagraphs_in_budget
from residency.memory.weights import pp_layer_partition, runtime_dtype, weights_bytes_per_rank
from residency.units import GiB


@dataclass(frozen=True)
class EngineSettings:
    """The `vllm serve` settings of one process, with defaults already applied."""

    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    mamba_ssm_cache_dtype: str = "auto"
    block_size: int | None = None
    enable_prefix_caching: bool | None = None
    enforce_eager: bool = False
    kv_cache_memory_bytes: int | None = None
    quantization: str | None = None  # --quantization (online fp8 on a bf16 checkpoint halves the linears)


@dataclass(frozen=True)
class Measured:
    """Figures measured on the real box (a calibration) that replace the estimates."""

    weights_gib: float | None = None
    activation_gib: float | None = None
    non_torch_gib: float | None = None
    cudagraph_gib: float | None = None  # the graph pool as captured (or the estimate when only it is logged)
    non_kv_gib: float | None = None  # requested - available KV, as measured
    # >= 0.18: "Estimated CUDA graph memory" - what the budget reserved when graphs are inside it (>= 0.20)
    cudagraph_estimate_gib: float | None = None
    # unified memory: the start the measured launch was (the spec's device.start); the other start is derived
    start: uma.Start | None = None


@dataclass
class Startup:
    requested_bytes: int
    free_at_start_bytes: int
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    host_overhead_bytes: int
    cudagraph_bytes: int
    cudagraph_in_budget: bool
    context_bytes: int
    non_kv_bytes: int
    available_kv_bytes: int  # vLLM's "Available KV cache memory"
    num_blocks: int
    kv_tokens: int
    max_concurrency: float
    block_size: int
    layout: kv.KVLayout
    needed_bytes: int = 0
    estimated_max_model_len: int | None = None
    error_kind: str | None = None
    error_message: str | None = None
    footprint_bytes: int = 0
    # unified memory, cold start: checkpoint pages the free reading counts as used until caches are dropped
    # (not held by the process: outside the footprint, but the next engine's startup check sees them)
    page_cache_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error_kind is None


def requested_bytes(total_bytes: int, util: float, rules: VersionRules) -> int:
    """total x util: a float product <= 0.13, ceil() from 0.14 (request_memory())."""
    if rules.requested_ceil:
        return math.ceil(total_bytes * util)
    return int(total_bytes * util)


def v2_state_bytes(facts: ModelFacts, ps: act.ProfileSettings, rules: VersionRules) -> int:
    """The V2 runner's sampler penalty state (activation.v2_sampler_state_bytes); 0 on the V1 runner."""
    return act.v2_sampler_state_bytes(facts, ps) if ps.runs_sampler and act.on_v2_runner(facts, rules) else 0


def graphs_in_budget(facts: ModelFacts, rules: VersionRules) -> bool:
    """The budget reserves the graph estimate (>= 0.20), unless the V2 runner estimates 0 (0.22-0.28)."""
    return cudagraphs_in_budget(rules, on_v2_runner=act.on_v2_runner(facts, rules))


def dtype_bytes_of(facts: ModelFacts, dtype: str) -> int:
    """Bytes per element of the dtype the model runs in (activations, logits, KV with "auto")."""
    return dtype_bytes(runtime_dtype(facts, dtype))


def kv_settings(es: EngineSettings, device: Device, facts: ModelFacts | None = None) -> kv.KVSettings:
    return kv.KVSettings(
        max_model_len=es.max_model_len,
        max_num_batched_tokens=es.max_num_batched_tokens,
        max_num_seqs=es.max_num_seqs,
        tensor_parallel_size=es.tensor_parallel_size,
        block_size=es.block_size,
        dtype=runtime_dtype(facts, es.dtype) if facts is not None else es.dtype,
        kv_cache_dtype=es.kv_cache_dtype,
        mamba_ssm_cache_dtype=es.mamba_ssm_cache_dtype,
        enable_prefix_caching=es.enable_prefix_caching,
        compute_capability=device.compute_capability,
    )


def stage_facts(facts: ModelFacts, pp: int, rank: int | None = None) -> ModelFacts:
    """The layers of pipeline stage `rank` (default: the last), split as vLLM's get_pp_indices does.

    layer_kinds may list two cache entries per decoder layer (Falcon-H1 parallel hybrids): the
    slice keeps whole decoder layers.
    """
    if pp <= 1:
        return facts
    n = max(1, facts.num_hidden_layers)
    parts = pp_layer_partition(n, pp)
    r = pp - 1 if rank is None else rank
    start = sum(parts[:r])
    per = max(1, len(facts.layer_kinds) // n)
    kinds = facts.layer_kinds[start * per : (start + parts[r]) * per]
    return replace(facts, layer_kinds=kinds, num_hidden_layers=parts[r])


def profile_settings(facts: ModelFacts, es: EngineSettings, rank: int = 0) -> act.ProfileSettings:
    """The profile run of pipeline stage `rank` (the only stage without PP)."""
    pp = es.pipeline_parallel_size
    return act.ProfileSettings(
        max_num_batched_tokens=es.max_num_batched_tokens,
        max_num_seqs=es.max_num_seqs,
        max_model_len=es.max_model_len,
        tensor_parallel_size=es.tensor_parallel_size,
        pipeline_parallel_size=pp,
        enforce_eager=es.enforce_eager,
        act_bytes=dtype_bytes_of(facts, es.dtype),
        runs_sampler=rank == pp - 1,
        receives_intermediate=rank > 0,
    )


@dataclass
class _Stage:
    """One pipeline stage's process (the only one without PP): what its profile charges the budget."""

    rank: int
    weights: int
    activation: int
    non_torch: int
    host: int
    graphs: int
    non_kv: int
    layout: kv.KVLayout


def _stage(
    facts: ModelFacts,
    es: EngineSettings,
    device: Device,
    rules: VersionRules,
    rank: int,
    measured: Measured | None,
) -> _Stage:
    tp, pp = es.tensor_parallel_size, es.pipeline_parallel_size
    last = rank == pp - 1
    ps = profile_settings(facts, es, rank)
    sf = stage_facts(facts, pp, rank)
    cc = device.compute_capability
    weights = weights_bytes_per_rank(
        facts, tp, es.max_model_len, es.quantization, es.dtype, pp, rank, rules, cc
    )
    weights += act.deepstack_buffer_bytes(facts, ps)  # allocated at model init: in the loading figure
    state = v2_state_bytes(facts, ps, rules)
    if (facts.quantization or "").lower() == "mxfp4":
        ps = replace(ps, mxfp4_backend=mxfp4_backend(cc, rules))
    activation = act.activation_bytes(facts, ps, rules)
    if rules.persistent_in_non_kv:  # >= 0.27 the V2 sampler state counts in non_kv [V27-formula-b]
        activation += state
    non_torch = act.non_torch_bytes(ps, rules)
    graphs = act.cudagraph_bytes(sf, ps, rules, device)
    if device.uma_gpu:  # GB10 measures graph memory at ~0 or below (unified-memory.md §5): no discrete term
        graphs = 0
    host = uma.host_growth_bytes(device.start, rules, weights) if device.uma_gpu else 0
    if measured is not None and last:  # a log's figures are the last stage's (vllm-logs.md caveat 4)
        if measured.weights_gib is not None:
            weights = int(measured.weights_gib * GiB)
        if measured.activation_gib is not None:
            activation = int(measured.activation_gib * GiB)
        if measured.non_torch_gib is not None:
            non_torch = int(measured.non_torch_gib * GiB)
        if measured.cudagraph_gib is not None:
            graphs = max(0, int(measured.cudagraph_gib * GiB))
    non_kv = weights + activation + non_torch + host + (graphs if graphs_in_budget(facts, rules) else 0)
    if measured is not None and last and measured.non_kv_gib is not None:
        non_kv = int(measured.non_kv_gib * GiB)
        if device.uma_gpu and measured.start and measured.start != device.start:
            # measured at one start, predicted for the other: the page-cache share differs (memory/unified.py)
            now = uma.page_cache_bytes(device.start, rules, weights)
            non_kv += now - uma.page_cache_bytes(measured.start, rules, weights)
    layout = kv.build_kv_layout(sf, kv_settings(es, device, facts), rules)
    return _Stage(rank, weights, activation, non_torch, host, graphs, non_kv, layout)


def simulate_startup(
    facts: ModelFacts,
    es: EngineSettings,
    device: Device,
    rules: VersionRules,
    free_at_start_bytes: int,
    measured: Measured | None = None,
    device_label: str = "cuda:0",
    foreign_growth_bytes: int = 0,
) -> Startup:
    """Predict one process's startup on a GPU with `free_at_start_bytes` free at its baseline.

    `foreign_growth_bytes`: memory other processes allocate between this process's baseline and the
    end of its profiling (engines started together). vLLM charges it to this process's non-KV memory,
    so the pool shrinks by exactly that much and can reach "No available memory" (§3.4).

    Pipeline parallel: one worker per stage, each on its own GPU with its own budget; the figures
    reported are the last stage's (what a log's "Available KV cache memory" shows, vllm-logs.md
    caveat 4), the checks run on every stage, and every stage gets the smallest stage's block count
    (get_kv_cache_configs step 5, kv_cache_utils.py:1508-1531 @0.19.1).

    Unified memory (device.uma_gpu): the host growth of device.start is charged to the budget
    (memory/unified.py), no discrete graph term, the front-end processes are in the context.

    Long on purpose: it follows vLLM's own start-up sequence (load, profile, graphs, KV, checks) step by step,
    so each step sits next to the source it cites.
    """
    total = device.total_bytes
    pp = es.pipeline_parallel_size
    ps = profile_settings(facts, es, pp - 1)
    req = requested_bytes(total, es.gpu_memory_utilization, rules)
    stages = [_stage(facts, es, device, rules, r, measured) for r in range(pp)]
    top = stages[-1]
    weights, activation, non_torch, graphs, host = (
        top.weights,
        top.activation,
        top.non_torch,
        top.graphs,
        top.host,
    )
    ctx = act.context_bytes(device, ps, rules)
    in_budget = graphs_in_budget(facts, rules)
    notes: list[str] = []
    if foreign_growth_bytes:
        for sg in stages:
            sg.non_kv += foreign_growth_bytes
        notes.append(
            f"{foreign_growth_bytes / GiB:.2f} GiB allocated by engines starting at the same time is charged to this "
            "one's profile (vllm-memory.md §3.4)"
        )
    non_kv = top.non_kv
    layout = top.layout
    fixed_pool = es.kv_cache_memory_bytes is not None and rules.has_kv_cache_memory_bytes
    # unified memory: the compile heap of a cold start is freed after profiling; only the rest stays held
    held_host = {
        sg.rank: sg.host - (uma.page_cache_bytes(device.start, rules, sg.weights) if device.uma_gpu else 0)
        for sg in stages
    }
    page_cache = top.host - held_host[top.rank]
    warmup = sampler_warmup_bytes(facts, ps, rules)
    state = v2_state_bytes(facts, ps, rules)  # the V2 runner's sampler state, last stage only
    if fixed_pool:
        available = es.kv_cache_memory_bytes or 0  # §9: profiling measured nothing; the value is used as-is
        # the sampler warm-up's buffers stay reserved after compile_or_warm_up_model (gpu_worker.py:669-689 @0.20.0)
        # (+ the V2 runner's sampler state, persistent on the last stage)
        footprint = max(
            ctx
            + sg.weights
            + sg.non_torch
            + held_host[sg.rank]
            + available
            + sg.graphs
            + warmup
            + (state if sg.rank == pp - 1 else 0)
            for sg in stages
        )
    else:
        if es.kv_cache_memory_bytes is not None:
            notes.append(f"kv_cache_memory_bytes is ignored by vLLM {rules.version} (added in 0.10.2)")
        available = req - non_kv
        footprint = max(ctx, ctx + req + (0 if in_budget else max(sg.graphs for sg in stages)) - page_cache)
        if not rules.persistent_in_non_kv and state:
            # 0.22-0.26: the V2 sampler state is allocated after the weights are measured and before the
            # profile, so Formula A leaves it out of non_kv: held beyond the budget [V27-formula-b]
            footprint += state
            notes.append(
                f"the V2 runner's sampler penalty state ({state / GiB:.2f} GiB) is held beyond the budget: "
                f"vLLM {rules.version} does not count it"
            )
        # the profile's transient peak (activation holds the V2 sampler state too from 0.27: not transient)
        profiled = activation - (state if rules.persistent_in_non_kv else 0)
        if warmup > profiled:  # V2 0.22-0.32: the warm-up outgrows the profiled peak [V22-v2-warmup]
            footprint += warmup - profiled
            notes.append(
                f"vLLM {rules.version} warms the sampler with full sampling parameters after the KV pool is "
                f"sized: {(warmup - profiled) / GiB:.2f} GiB above the profiled peak, held past the budget"
            )
        if in_budget and measured is not None and measured.cudagraph_estimate_gib is not None and graphs:
            # >= 0.20 the budget reserved the estimate; the pool captured may be larger or smaller
            # ("CUDA graph pool memory: A GiB (actual), E GiB (estimated)", gpu_worker.py:592-606 @0.20.2)
            footprint += graphs - int(measured.cudagraph_estimate_gib * GiB)
    if pp > 1:
        w = ", ".join(f"{sg.weights / GiB:.2f}" for sg in stages)
        notes.append(
            f"pipeline stages hold {pp_layer_partition(max(1, facts.num_hidden_layers), pp)} decoder layers, "
            f"weights {w} GiB per GPU; the figures shown are the last stage's (it runs the sampler)"
        )
    st = Startup(
        requested_bytes=req,
        free_at_start_bytes=free_at_start_bytes,
        weights_bytes=weights,
        activation_bytes=activation,
        non_torch_bytes=non_torch,
        host_overhead_bytes=held_host[top.rank] if fixed_pool else host,
        cudagraph_bytes=graphs,
        cudagraph_in_budget=in_budget,
        context_bytes=ctx,
        non_kv_bytes=non_kv,
        available_kv_bytes=available,
        num_blocks=0,
        kv_tokens=0,
        max_concurrency=0.0,
        block_size=layout.block_size,
        layout=layout,
        footprint_bytes=footprint,
        page_cache_bytes=page_cache,
        notes=notes,
    )
    # §2.1: the startup check (unconditional, even with kv_cache_memory_bytes). The worker's snapshot comes
    # after its own CUDA context (and on UMA its front-end processes) exist: vLLM sees free minus those.
    seen = free_at_start_bytes - ctx
    if seen < req:
        st.error_kind = "free_memory"
        st.error_message = messages.free_memory(
            rules, max(seen, 0), total, es.gpu_memory_utilization, req, device_label
        )
        return st
    # loading: the weights must physically fit
    biggest = max(sg.weights for sg in stages)
    if biggest > seen:
        st.error_kind = "weights_do_not_fit"
        st.error_message = messages.weights_do_not_fit(biggest, seen)
        return st
    if not layout.layers:
        st.num_blocks = 1
        return st
    mnbt = es.max_num_batched_tokens
    avail_of = {sg.rank: (available if fixed_pool else req - sg.non_kv) for sg in stages}
    # §6.1, on every stage (the last first: its figures are the ones reported)
    for sg in reversed(stages):
        if kv.check_available(sg.layout, avail_of[sg.rank], rules) <= 0:
            st.error_kind = "no_cache_blocks"
            st.error_message = messages.no_cache_blocks(rules)
            if sg is not top:
                st.notes.append(f"pipeline stage {sg.rank} has no memory left for KV cache blocks")
            return st
    # §6.2
    need = kv.needed_bytes(layout, es.max_model_len, mnbt, rules)
    st.needed_bytes = need
    nb = min(kv.num_blocks(sg.layout, avail_of[sg.rank]) for sg in stages)
    st.num_blocks = nb
    st.max_concurrency = kv.max_concurrency(layout, nb, es.max_model_len, mnbt)
    st.kv_tokens = kv.logged_tokens(layout, nb, es.max_model_len, mnbt, rules)
    for sg in reversed(stages):
        s_avail = kv.check_available(sg.layout, avail_of[sg.rank], rules)
        s_need = kv.needed_bytes(sg.layout, es.max_model_len, mnbt, rules)
        if s_need > s_avail:
            est = kv.estimate_max_model_len(sg.layout, s_avail, es.max_model_len, mnbt, rules)
            st.estimated_max_model_len = est
            st.error_kind = "max_seq_len"
            st.error_message = messages.max_seq_len(rules, es.max_model_len, s_need, s_avail, est)
            if sg is not top:
                st.notes.append(f"pipeline stage {sg.rank} is the one short of KV memory")
            return st
    # After the checks: allocation (initialize_from_config), then compile_or_warm_up_model
    if _post_allocation(st, stages, avail_of, held_host, seen, warmup, es, rules):
        return st
    # Mamba blocks vs max_num_seqs with FULL decode graphs (issue #34094), by version
    if layout.has_mamba and not es.enforce_eager and es.max_num_seqs > nb:
        if rules.mamba_blocks_mode == "raise":  # >= 0.20 [V20-mamba-raise]
            st.error_kind = "mamba_cache_blocks"
            st.error_message = messages.mamba_cache_blocks(es.max_num_seqs, nb)
        elif rules.mamba_blocks_mode == "abort":  # < 0.18 [V18-mamba-cap]
            st.error_kind = "mamba_cache_blocks"
            st.error_message = messages.mamba_capture_abort(es.max_num_seqs, nb)
        else:  # 0.18-0.19: capture sizes capped to the block count, with a warning [V18-mamba-cap]
            st.notes.append(
                f"CUDA graph capture sizes capped to {nb} Mamba cache blocks (max_num_seqs {es.max_num_seqs}): "
                "larger decode batches run without graphs"
            )
    return st


def sampler_warmup_bytes(facts: ModelFacts, ps: act.ProfileSettings, rules: VersionRules) -> int:
    """The sampler warm-up after KV allocation: the model's last dummy run and the sampler (hidden rows +
    logits and sampler temporaries); the V2 runner 0.22-0.32 warms with full sampling parameters
    (docs/vllm-versions.md [V22-v2-warmup])."""
    if not ps.runs_sampler:
        return 0
    return act.sampler_warmup_peak_bytes(facts, ps, rules)


def _post_allocation(
    st: Startup,
    stages: list[_Stage],
    avail_of: dict[int, int],
    held_host: dict[int, int],
    seen: int,
    warmup: int,
    es: EngineSettings,
    rules: VersionRules,
) -> bool:
    """Failures after the pool is sized, in vLLM's order (vllm-memory.md §1 steps 5-6).

    The KV tensors are allocated (initialize_from_config), CUDA graphs captured, then the sampler is
    warmed with min(max_num_seqs, max_num_batched_tokens) dummy requests: gpu_worker.py:669-689 @0.20.0
    (V1 runner, "called after capture_model on purpose"), gpu_worker.py:1070-1090 @0.33.0; the same step in
    every version 0.10.1-0.33 (gpu_worker.py:320-420 @0.11.0). Its peak is inside the profiled peak
    (profile_run -> _dummy_sampler_run, gpu_model_runner.py:5849-5856 @0.20.0), so a pool sized by the
    fraction leaves room for it unless graphs captured outside the budget took that room; a pinned pool
    (kv_cache_memory_bytes, §9: nothing subtracted) leaves whatever free memory the process did not take.
    """
    for sg in reversed(stages):
        held = sg.weights + sg.non_torch + held_host[sg.rank] + max(avail_of[sg.rank], 0)
        if held > seen:
            st.error_kind = "kv_alloc_oom"
            st.error_message = messages.kv_alloc_oom(
                held - sg.weights - sg.non_torch - held_host[sg.rank], seen
            )
            return True
        room = seen - held - sg.graphs
        if room < 0 and sg.graphs > 0:  # capture_model comes before the sampler warm-up
            st.error_kind = "graph_capture_oom"
            st.error_message = messages.graph_capture_oom(sg.graphs, max(seen - held, 0))
            return True
        if sg is stages[-1] and room < warmup:
            st.error_kind = "sampler_oom"
            st.error_message = messages.sampler_oom(min(es.max_num_seqs, es.max_num_batched_tokens))
            st.notes.append(
                f"after the KV pool and CUDA graphs {max(room, 0) / GiB:.2f} GiB is left; the sampler warm-up needs "
                f"{warmup / GiB:.2f} GiB"
            )
            return True
    return False
