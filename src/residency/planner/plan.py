"""`plan_stack(spec) -> Plan`: the residency math for one box, before anything launches.

For each model in launch order: resolve its facts and settings (vLLM's version defaults where the
spec is silent), choose fractions for models without one (solver.py), simulate its startup with the
free memory the earlier processes left (memory.engine), and turn failures into vLLM's own error text
plus the smallest fix found by search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from residency.agents import plan as agent_plan
from residency.errors import ResidencyError, SpecError
from residency.memory import messages
from residency.memory.device import Device, Start, is_cpu_name, resolve_device
from residency.memory.engine import EngineSettings, Measured, Startup, requested_bytes, simulate_startup
from residency.memory.live import LiveReading
from residency.memory.messages import MEANINGS
from residency.memory.model_facts import ModelFacts
from residency.memory.unified import PRESET_ASSUMPTION, idle_offered_gib
from residency.memory.versions import VersionRules, flex_only_block_size, rules_for
from residency.memory.weights import DEFAULT_MAX_LEN
from residency.planner import solver
from residency.planner.result import DevicePlan, ModelPlan, Plan, PlanError
from residency.spec import ModelSpec, StackSpec
from residency.units import GiB

INF_FREE = 1 << 62


@dataclass
class Entry:
    spec: ModelSpec
    facts: ModelFacts
    settings: EngineSettings  # gpu_memory_utilization filled per run
    measured: Measured | None
    calibration_note: str | None
    default_notes: list[str]
    target: float  # requests at max_model_len the model must serve
    pinned: bool = False  # unified memory: kv_cache_memory_bytes chosen by the planner (memory/unified.py)


# ------------------------------------------------------------------------------------ defaults


def batch_defaults(device: Device, rules: VersionRules) -> tuple[int, int, str]:
    """(max_num_batched_tokens, max_num_seqs, tier) for `vllm serve` (§4.2 get_batch_defaults)."""
    mem = device.total_gib if device.nvml_memory else 0.0  # GB10: NVML answers N/A -> 0 -> small tier
    if rules.gb10_small_tier and device.is_gb10:
        return 2048, 256, "small (>= 0.33: GB10 forced)"
    if rules.big_batch_tier and mem >= 160:
        return 16384, 1024, "big (>= 160 GiB)"
    if mem >= 70 and "a100" not in device.name.lower():
        return 8192, 1024, "large (>= 70 GiB)"
    return 2048, 256, "small" + (" (NVML memory N/A)" if not device.nvml_memory else "")


def engine_settings(
    m: ModelSpec, f: ModelFacts, device: Device, rules: VersionRules
) -> tuple[EngineSettings, list[str]]:
    notes: list[str] = []
    mnbt_d, mns_d, tier = batch_defaults(device, rules)
    mml = m.max_model_len
    if mml is None:
        # vLLM's default: the config's max_position_embeddings, else default_max_len 2048
        # (_get_and_verify_max_len, config/model.py:2089 @0.19.1)
        mml = f.max_position_embeddings or DEFAULT_MAX_LEN
        notes.append(f"max_model_len {mml}: vLLM's default, the model's max_position_embeddings")
    mnbt = m.max_num_batched_tokens
    if mnbt is None:
        mnbt = mnbt_d
        notes.append(f"max_num_batched_tokens {mnbt}: vLLM {rules.version} default, {tier} tier")
    mns = m.max_num_seqs
    if mns is None:
        mns = min(mns_d, mnbt)
        notes.append(f"max_num_seqs {mns}: vLLM {rules.version} default, {tier} tier")
    es = EngineSettings(
        gpu_memory_utilization=m.gpu_memory_utilization or 0.9,
        max_model_len=mml,
        max_num_seqs=mns,
        max_num_batched_tokens=mnbt,
        tensor_parallel_size=m.tensor_parallel_size,
        pipeline_parallel_size=m.pipeline_parallel_size,
        dtype=m.dtype,
        kv_cache_dtype=m.kv_cache_dtype,
        mamba_ssm_cache_dtype=m.mamba_ssm_cache_dtype,
        block_size=m.block_size,
        enable_prefix_caching=m.enable_prefix_caching,
        enforce_eager=m.enforce_eager,
        kv_cache_memory_bytes=m.kv_cache_memory_bytes,
        quantization=m.quantization,
    )
    return es, notes


def _flex_block_size(m: ModelSpec, f: ModelFacts, rules: VersionRules, notes: list[str]) -> None:
    """A block size only FlexAttention runs (vLLM 0.11.1-0.20, not a multiple of 16) is vLLM's to take:
    a note, not an error [V11.1-block-size], [V18-block-size]. MLA backends all need a multiple of 16
    or more: 0.11.1-0.17 force 64/128 for FlashMLA/CUTLASS MLA (platforms/cuda.py:205-226@0.14.0),
    0.18-0.20 keep the user's size and may find no backend; which one depends on the GPU."""
    if m.block_size is None or not flex_only_block_size(rules, m.block_size):
        return
    if "mla" in f.layer_kinds:
        notes.append(
            f"block_size {m.block_size}: no MLA attention backend of vLLM {rules.version} takes it; vLLM "
            "replaces it (FlashMLA: 64) or refuses to start ('No valid attention backend found'): use 64"
        )
        return
    notes.append(
        f"block_size {m.block_size}: vLLM {rules.version} runs it on FlexAttention only (the other CUDA "
        "backends need a multiple of 16), slower; a multiple of 16 keeps FlashAttention/FlashInfer"
    )


def _calibration(spec: StackSpec, m: ModelSpec, device: Device) -> tuple[Measured | None, str | None]:
    from residency.calibrate.store import find_calibration, key_for_model

    try:
        cal = find_calibration(key_for_model(m, spec.vllm_version, device.name), spec.calibration_file)
    except (ResidencyError, OSError) as e:  # a broken calibration file must not break planning
        return None, f"calibration store unreadable ({e}); using estimates"
    if cal is None or cal.non_kv_gib is None:
        return None, None
    ln = cal.launch
    meas = Measured(
        weights_gib=ln.weights_gib,
        activation_gib=ln.activation_gib,
        non_torch_gib=ln.non_torch_gib,
        cudagraph_gib=ln.cudagraph_gib,
        non_kv_gib=cal.non_kv_gib,
        cudagraph_estimate_gib=ln.cudagraph_estimate_gib,
        start=device.start,  # the log is taken as a start of the kind the spec says (cold/warm)
    )
    where = f" from {cal.source}" if cal.source else ""
    graphs = ""
    if ln.cudagraph_gib is not None:
        graphs = f"; CUDA graphs {ln.cudagraph_gib:.2f} GiB as measured in its footprint"
    return meas, (
        f"calibrated{where}: non-KV {cal.non_kv_gib:.2f} GiB measured at fraction {ln.gpu_memory_utilization} "
        f"(KV {ln.kv_cache_gib} GiB) replaces the estimates{graphs}"
    )


# ------------------------------------------------------------------------------------ simulation


class Sim:
    def __init__(self, spec: StackSpec, device: Device, rules: VersionRules, entries: list[Entry]):
        self.spec, self.device, self.rules, self.entries = spec, device, rules, entries
        self._cache: dict[tuple[object, ...], Startup] = {}
        self.starts: list[Start | None] = [None] * len(entries)  # per-entry start override (solving)

    def run(
        self,
        i: int,
        u: float,
        free: int = INF_FREE,
        foreign: int = 0,
        start: Start | None = None,
        **changes: Any,
    ) -> Startup:
        start = start or self.starts[i] or self.device.start
        key = (i, round(u, 4), free, foreign, start, tuple(sorted(changes.items())))
        st = self._cache.get(key)
        if st is None:
            e = self.entries[i]
            es = replace(e.settings, gpu_memory_utilization=round(u, 4), **changes)
            dev = self.device if start == self.device.start else replace(self.device, start=start)
            st = simulate_startup(
                e.facts, es, dev, self.rules, free, e.measured, foreign_growth_bytes=foreign
            )
            self._cache[key] = st
        return st

    def sequence(
        self, fracs: list[float], together: bool = False, changes: list[dict[str, Any]] | None = None
    ) -> tuple[list[Startup], list[list[int]]]:
        """Launch in order; each process sees total - used - earlier footprints on its GPUs.

        together=True: all engines start at once (no waiting for 'init engine ... took'). Each one's
        snapshot sees only the earlier ones' CUDA contexts; what they allocate afterwards lands in its
        profiling window and is charged to it (worst case: all of it, vllm-memory.md §3.4)."""
        d = self.device
        used = [d.used_gib * GiB] * d.count
        growth = [0] * d.count
        out: list[Startup] = []
        gpus_of: list[list[int]] = []
        for i, u in enumerate(fracs):
            t = (
                self.entries[i].settings.tensor_parallel_size
                * self.entries[i].settings.pipeline_parallel_size
            )
            t = min(t, d.count)
            order = sorted(range(d.count), key=lambda g: (used[g] + growth[g], g))[:t]
            pin = self.entries[i].spec.gpus  # placement pins a replica's GPUs (issue 7)
            if pin and len(pin) == t and all(g < d.count for g in pin):
                order = list(pin)
            free = int(min(d.total_bytes - used[g] for g in order))
            foreign = int(max(growth[g] for g in order)) if together else 0
            st = self.run(i, u, max(free, 0), foreign, **((changes or [{}] * len(fracs))[i]))
            out.append(st)
            gpus_of.append(sorted(order))
            if (
                st.error_kind != "free_memory"
            ):  # a process that fails the check holds only its context briefly
                hold = st.footprint_bytes if st.error_kind is None else st.context_bytes
                hold += st.page_cache_bytes  # counted as used by the next check until caches are dropped
                for g in order:
                    if together:
                        used[g] += st.context_bytes
                        growth[g] += hold - st.context_bytes
                    else:
                        used[g] += hold
        return out, gpus_of

    def overcommitted(self, sts: list[Startup], gpus: list[list[int]]) -> int | None:
        """The first model (launch order) at which footprints + used_gib + host reserve exceed the device."""
        d = self.device
        limit = d.total_bytes - int((d.used_gib + d.host_reserve_gib) * GiB)
        held = [0] * d.count
        for i, (st, gs) in enumerate(zip(sts, gpus, strict=True)):
            if st.error_kind is not None:
                continue
            for g in gs:
                held[g] += st.footprint_bytes
            if any(held[g] > limit for g in gs):
                return i
        return None

    def first_failure(self, fracs: list[float]) -> int | None:
        sts, gpus = self.sequence(fracs)
        for i, st in enumerate(sts):
            if st.error_kind is not None:
                return i
        return self.overcommitted(sts, gpus)


# ------------------------------------------------------------------------------------ fixes


def _max_fraction_for_free(free: int, total: int, rules: VersionRules) -> float:
    u = math.floor(free / total * 100) / 100
    while u > 0 and requested_bytes(total, u, rules) > free:
        u = round(u - 0.01, 2)
    return max(u, 0.0)


def _fix(sim: Sim, i: int, st: Startup, u: float) -> str:
    e = sim.entries[i]
    rules, total = sim.rules, sim.device.total_bytes
    seen = max(0, st.free_at_start_bytes - st.context_bytes)  # what vLLM's check sees (own context excluded)
    umax = _max_fraction_for_free(seen, total, rules)
    umin, _ = solver.min_fraction(lambda x: sim.run(i, x), None)
    kind = st.error_kind
    earlier = ", ".join(sim.entries[j].spec.name for j in range(i)) or "other processes"
    if kind == "free_memory":
        if umin is not None and umin <= umax:
            return (
                f"lower gpu_memory_utilization to {umax:.2f} (the most the {seen / GiB:.2f} GiB free allows)"
            )
        short = ((requested_bytes(total, umin, rules) if umin else st.requested_bytes) - seen) / GiB
        return f"free {short:.2f} GiB more before it starts (lower the fractions of {earlier}, or stop them)"
    if kind == "weights_do_not_fit":
        return (
            f"use a smaller or quantized checkpoint, or tensor_parallel_size {e.settings.tensor_parallel_size * 2}; "
            f"the weights need {st.weights_bytes / GiB:.2f} GiB per GPU"
        )
    raise_txt = ""
    # the most this engine's check can ever grant it: the box with no earlier engine (and, on an idle unified
    # box, only what it reliably offers); a higher fraction is no fix, however much is freed
    ceiling = _max_fraction_seen(
        sim, _offered_bytes(sim, total - int(sim.device.used_gib * GiB)) - st.context_bytes
    )
    if umin is not None and u < umin <= ceiling:
        raise_txt = f"raise gpu_memory_utilization to {umin:.2f}"
        if umin > umax:
            need = (requested_bytes(total, umin, rules) - seen) / GiB
            raise_txt += f" (after freeing {need:.2f} GiB: lower the fractions of {earlier})"
    cold = _cold_cause(sim, i, st, u) if kind in ("no_cache_blocks", "max_seq_len") else ""
    if cold:
        return cold + (f"; or {raise_txt}" if raise_txt else "")
    if kind == "no_cache_blocks":
        alt = ""
        if e.settings.max_num_batched_tokens > 2048:
            alt = f", or lower max_num_batched_tokens from {e.settings.max_num_batched_tokens} to 2048"
        if not raise_txt and (umin is None or umin > ceiling):
            return (
                f"no gpu_memory_utilization its startup check can grant (at most {ceiling:.2f} here) leaves room "
                "for KV: use a smaller or quantized checkpoint, or more GPUs (tensor_parallel_size)"
            ) + alt
        return (raise_txt or "raise gpu_memory_utilization") + alt
    if kind == "sampler_oom":
        rows = min(e.settings.max_num_seqs, e.settings.max_num_batched_tokens)
        return (
            f"lower max_num_seqs from {rows} (each dummy request holds a vocabulary of fp32 logits), or lower "
            "gpu_memory_utilization / kv_cache_memory_bytes so the warm-up has room after the KV pool"
        )
    if kind == "graph_capture_oom":
        return (
            "lower gpu_memory_utilization (or kv_cache_memory_bytes) so the graphs fit after the pool, "
            "or enforce_eager: true (no graphs)"
        )
    if kind == "kv_alloc_oom":
        return "lower kv_cache_memory_bytes (or free memory before it starts)"
    if kind == "max_seq_len":
        est = st.estimated_max_model_len or 0
        nice = est // 1024 * 1024 if est >= 1024 else est
        parts = [f"lower max_model_len to {nice}"] if nice > 0 else []
        if raise_txt:
            parts.append(raise_txt)
        return ", or ".join(parts) or "raise gpu_memory_utilization"
    if kind == "mamba_cache_blocks":
        parts = [f"lower max_num_seqs to {st.num_blocks}"] if st.num_blocks > 0 else []
        if raise_txt:
            parts.append(raise_txt)
        return ", or ".join(parts)
    return raise_txt


# ------------------------------------------------------------------------------------ unified memory


def _cold_cause(sim: Sim, i: int, st: Startup, u: float) -> str:
    """A cold start on unified memory fails where a warm one loads: name the cause and what removes it."""
    d = sim.device
    if not d.uma_gpu or d.start != "cold":
        return ""
    warm = sim.run(i, u, st.free_at_start_bytes, start="warm")
    if warm.error_kind is not None:
        return ""
    grow = (st.host_overhead_bytes - warm.host_overhead_bytes) / GiB
    pin = ""
    if sim.rules.has_kv_cache_memory_bytes:
        # the fraction then only has to pass the startup check: never propose one an idle box may refuse
        cap = _max_fraction_seen(sim, _offered_bytes(sim, st.free_at_start_bytes) - st.context_bytes)
        keep = (
            f"gpu_memory_utilization {u:.2f} kept"
            if cap >= u
            else f"gpu_memory_utilization lowered to {cap:.2f} ({u:.2f} needs more than the box reliably offers)"
        )
        pin = (
            f"pin the pool: kv_cache_memory_bytes {warm.available_kv_bytes} with {keep} "
            "for the startup check (vLLM then skips the measurement; what `kv_sizing: pinned` proposes), or "
        )
    return (
        f"the cause is host memory that grows during a cold load: {grow:.2f} GiB of checkpoint page cache the "
        "free-memory reading counts as used is charged to the KV budget (vllm-memory.md §2.3, unified-memory.md §3). "
        f"Remove it: {pin}start warm (the checkpoint already in page cache, e.g. `cat` it to /dev/null first, or "
        f"simply retry: a warm start gets {warm.available_kv_bytes / GiB:.2f} GiB of KV)"
    )


def _offered_bytes(sim: Sim, free: int) -> int:
    """Of `free` (total - used - earlier footprints), what vLLM's check reliably finds on a unified box: an
    idle box offers only its idle free (measured, else memory/unified.py's field figure)."""
    d = sim.device
    idle = _idle_gib(d)
    if idle is None:
        return free
    unoffered = max(0, d.total_bytes - int(d.used_gib * GiB) - int(idle * GiB))
    return free - unoffered


def _idle_gib(d: Device) -> float | None:
    """An idle unified box's free memory as vLLM's check reads it: measured (calibration, live), else the
    GB10 field figure for an undescribed preset box (unified-memory.md §2); None where neither applies."""
    if not d.uma_gpu or (d.idle_free_gib is None and not (d.is_gb10 and d.total_source == "preset")):
        return None
    return d.idle_free_gib if d.idle_free_gib is not None else idle_offered_gib(d.total_gib)


def _idle_offer_gib(d: Device) -> float | None:
    """What an idle unified box offers all engines together, after used_gib beyond its unoffered part."""
    idle = _idle_gib(d)
    if idle is None:
        return None
    return max(0.0, idle - max(0.0, d.used_gib - (d.total_gib - idle)))


def _max_fraction_seen(sim: Sim, free_seen: int) -> float:
    return _max_fraction_for_free(max(free_seen, 0), sim.device.total_bytes, sim.rules)


def _pin(sim: Sim, fracs: list[float]) -> tuple[list[dict[str, Any]], list[float]]:
    """Pinned entries: kv_cache_memory_bytes = the warm-start pool at the solved (or given) fraction, and a
    solver-chosen fraction lowered (never raised) to what the startup check reliably finds free (vllm-memory.md
    §9 planner note); a fraction the spec gives is kept."""
    n = len(fracs)
    changes: list[dict[str, Any]] = [{} for _ in range(n)]
    if not any(e.pinned for e in sim.entries):
        return changes, fracs
    warm, _ = sim.sequence(fracs)
    for i, e in enumerate(sim.entries):
        if e.pinned and warm[i].error_kind is None and warm[i].available_kv_bytes > 0:
            changes[i] = {"kv_cache_memory_bytes": int(warm[i].available_kv_bytes)}
    sim.starts = [None] * n
    sts, _ = sim.sequence(fracs, changes=changes)
    out = list(fracs)
    for i, st in enumerate(sts):
        if changes[i] and st.error_kind is None and sim.entries[i].spec.gpu_memory_utilization is None:
            cap = _max_fraction_seen(sim, _offered_bytes(sim, st.free_at_start_bytes) - st.context_bytes)
            if 0 < cap < out[i]:
                out[i] = cap
    return changes, out


def _at_risk(sim: Sim, i: int, st: Startup, u: float) -> PlanError | None:
    d, rules = sim.device, sim.rules
    offered = _offered_bytes(sim, st.free_at_start_bytes) - st.context_bytes
    if offered >= st.requested_bytes:
        return None
    cap = _max_fraction_seen(sim, offered)
    basis = (
        "this box's measured idle free memory"
        if d.idle_free_gib is not None
        else f"an idle {d.name} box (~{idle_offered_gib(d.total_gib):.1f} GiB of {d.total_gib:g}, unified-memory.md §2)"
    )
    return PlanError(
        kind="at_risk",
        message=messages.free_memory(rules, max(offered, 0), d.total_bytes, u, st.requested_bytes),
        fix=(
            f"lower gpu_memory_utilization to {cap:.2f} (with kv_cache_memory_bytes pinned the pool stays the same), "
            "or measure the box: `residency plan --live` on it, or `residency calibrate` with one of its logs"
        ),
        meaning=MEANINGS["at_risk"] + f" Basis: {basis}.",
    )


def _overcommit(sim: Sim, i: int, sts: list[Startup], gpus: list[list[int]]) -> PlanError:
    d = sim.device
    held = sum(
        st.footprint_bytes
        for j, st in enumerate(sts[: i + 1])
        if st.error_kind is None and set(gpus[j]) & set(gpus[i])
    )
    over = held + int((d.used_gib + d.host_reserve_gib) * GiB) - d.total_bytes
    name = sim.entries[i].spec.name
    reserve = f" + host reserve {d.host_reserve_gib:.2f} GiB" if d.host_reserve_gib else ""
    msg = (
        f"footprints {held / GiB:.2f} GiB + used {d.used_gib:.2f} GiB{reserve} exceed the device total "
        f"{d.total_gib:g} GiB by {over / GiB:.2f} GiB once {name} has started"
    )
    st = sts[i]
    k = sim.entries[i].settings.kv_cache_memory_bytes
    if st.available_kv_bytes > over:
        fix = f"shrink {name} by {over / GiB:.2f} GiB: " + (
            f"kv_cache_memory_bytes {st.available_kv_bytes - over}"
            if k is not None or sim.entries[i].pinned
            else f"gpu_memory_utilization {math.floor((st.requested_bytes - over) / d.total_bytes * 100) / 100:.2f}"
        )
    else:
        fix = f"free {over / GiB:.2f} GiB: lower max_model_len/max_num_seqs of {name} or an earlier model, or drop one"
    if d.host_reserve_gib:
        fix += " (or lower device.host_reserve_gib if this box runs nothing else)"
    return PlanError(kind="overcommit", message=msg, fix=fix, meaning=MEANINGS["overcommit"])


# ------------------------------------------------------------------------------------ the plan


def _resolve(spec: StackSpec, m: ModelSpec, i: int) -> ModelFacts:
    from residency.memory.resolve import resolve_model

    try:
        return resolve_model(m, spec.hf_cache)
    except SpecError as e:
        if e.field.startswith("models"):
            raise
        raise SpecError(f"models[{i}:{m.name}].model", e.problem, e.fix) from None


def _box_device(spec: StackSpec, device: Device, live: LiveReading | None, use_calibration: bool) -> Device:
    """The device as measured: a live reading (plan --live, up) or the box's calibrated total and idle free."""
    if live is not None:
        return replace(
            device,
            total_gib=round(live.total_gib, 3),
            used_gib=round(max(0.0, live.total_gib - live.free_gib), 3),
            idle_free_gib=round(live.free_gib, 3),
            total_source=f"live reading of {live.device}: {live.source}",
        )
    if not use_calibration or not device.unified or (spec.device and spec.device.total_gib is not None):
        return device
    from residency.calibrate.boxes import find_box

    box = find_box(device.name, spec.calibration_file)
    if box is None:
        return device
    return replace(
        device,
        total_gib=box.total_gib,
        idle_free_gib=box.idle_free_gib,
        total_source=f"calibration of this box ({box.source})",
    )


def plan_stack(
    spec: StackSpec,
    use_calibration: bool = True,
    start_together: bool = False,
    live: LiveReading | None = None,
) -> Plan:
    """The plan for a one-device spec. `start_together=True` predicts what happens when all engines are
    started at once instead of one after another (what `up` does); the fractions are not solved then.
    `live`: total and free read on the box now (memory/live.py); they replace the preset and used_gib.

    Long on purpose: one pass in vLLM's start order (resolve, simulate, solve, pin, assemble) reads best top
    to bottom; the parts that stand alone are Sim, _pin and _fix."""
    if spec.device is None and spec.hosts:
        raise SpecError(
            "hosts",
            "a multi-host spec is planned per GPU by placement",
            "use `residency plan` on a one-device spec",
        )
    assert spec.device is not None
    device = resolve_device(spec.device)
    device = _box_device(spec, device, live, use_calibration)
    rules = rules_for(spec.vllm_version)
    warnings: list[str] = []
    entries: list[Entry] = []
    for i, m in enumerate(spec.models):
        f = _resolve(spec, m, i)
        if m.tensor_parallel_size * m.pipeline_parallel_size > device.count:
            raise SpecError(
                f"models[{i}:{m.name}].tensor_parallel_size",
                f"needs {m.tensor_parallel_size * m.pipeline_parallel_size} GPUs but the device has count {device.count}",
                "raise device.count or lower tensor_parallel_size",
            )
        es, notes = engine_settings(m, f, device, rules)
        if not is_cpu_name(device.name):
            _flex_block_size(m, f, rules, notes)
        es, notes = agent_plan.plan_context(spec, m, es, notes)
        meas, cal_note = _calibration(spec, m, device) if use_calibration else (None, None)
        target = solver.requirement(m)
        entries.append(Entry(m, f, es, meas, cal_note, notes, target))
    for e in entries:
        e.pinned = (
            device.uma_gpu
            and rules.has_kv_cache_memory_bytes
            and e.spec.kv_cache_memory_bytes is None
            and (e.spec.kv_sizing or ("fraction" if e.spec.gpu_memory_utilization is not None else "pinned"))
            == "pinned"
        )
    sim = Sim(spec, device, rules, entries)
    # a pinned pool is sized at a warm start's profile: vLLM then skips the measurement, so a cold start's
    # transient host growth no longer shrinks it (vllm-memory.md §9)
    sim.starts = ["warm" if e.pinned else None for e in entries]
    budget = device.budget
    fixed = [m.gpu_memory_utilization for m in spec.models]
    solver_text: str | None = None
    solver_ok = True  # a demand the solver could not meet fails the plan even if every engine loads
    if any(f is None for f in fixed):
        res = solver.solve(
            fixed,
            [m.name for m in spec.models],
            [m.priority for m in spec.models],
            [e.target for e in entries],
            [partial(sim.run, i) for i in range(len(entries))],
            sim.first_failure,
            budget,
        )
        fracs, solver_text = res.fractions, res.text
        solver_ok = res.ok
        if not res.ok:
            warnings.append("solver: " + res.text)
    else:
        fracs = [float(f) if f is not None else 0.9 for f in fixed]
    solved = list(fracs)
    # --together predicts the planned deployment (the sequential solve and pins, as rendered) started at once
    changes, fracs = _pin(sim, fracs)
    lowered = [
        f"{e.spec.name} {solved[i]:.2f} -> {fracs[i]:.2f}"
        for i, e in enumerate(entries)
        if fracs[i] != solved[i]
    ]
    if lowered and solver_text:
        solver_text += (
            "; pinned KV pools keep their size, their gpu_memory_utilization only has to pass the startup check, "
            "lowered to what an idle box reliably offers: " + ", ".join(lowered)
        )
    sim.starts = [None] * len(entries)
    sts, gpus = sim.sequence(fracs, together=start_together, changes=changes)
    over = None if start_together else sim.overcommitted(sts, gpus)
    models: list[ModelPlan] = []
    for i, (e, st, u) in enumerate(zip(entries, sts, fracs, strict=True)):
        notes = list(e.default_notes) + list(st.notes) + list(e.facts.notes)
        cold = warm = st
        if device.uma_gpu:
            cold = sim.run(i, u, st.free_at_start_bytes, start="cold", **changes[i])
            warm = sim.run(i, u, st.free_at_start_bytes, start="warm", **changes[i])
        if e.pinned and changes[i]:
            fc = sim.run(i, solved[i], st.free_at_start_bytes, start="cold").available_kv_bytes / GiB
            fw = sim.run(i, solved[i], st.free_at_start_bytes, start="warm").available_kv_bytes / GiB
            cold_txt = (
                f"{fc:.2f} GiB cold"
                if fc > 0
                # vLLM's own words, from the one table of its messages (first sentence: the same in every version)
                else f"none cold: {-fc:.2f} GiB short, '{messages.no_cache_blocks(rules).split('.')[0]}'"
            )
            notes.append(
                f"kv_cache_memory_bytes {changes[i]['kv_cache_memory_bytes']} pinned: on unified memory host growth "
                "between vLLM's baseline and the end of profiling (page cache of a cold load, torch.compile heaps) "
                f"is charged to a fraction-sized pool ({cold_txt}; {fw:.2f} GiB warm at {solved[i]:.2f}); "
                "with the pool pinned vLLM skips that measurement (vllm-memory.md §9). gpu_memory_utilization "
                f"{u:.2f} only passes the startup check. kv_sizing: fraction opts out"
            )
        if e.calibration_note:
            notes.insert(0, e.calibration_note)
        lay = st.layout
        if lay.block_bumped:
            notes.append(f"attention block size {lay.block_size} tokens (aligned to the Mamba state page)")
        if lay.mamba_mode:
            notes.append(f"mamba_cache_mode {lay.mamba_mode}")
        if lay.padding_layers:
            notes.append(f"{lay.padding_layers} padding layers in the KV groups")
        err = None
        if st.error_kind is not None:
            fix = agent_plan.respect_clients(spec, _fix(sim, i, st, u))
            meaning = MEANINGS.get(st.error_kind, "")
            if start_together and i > 0 and sim.run(i, u, st.free_at_start_bytes).error_kind is None:
                fix = (
                    "start it only after the models before it log 'init engine ... took' (residency up does)"
                )
                meaning += " Engines started together charge each other's allocations to their own profile."
            err = PlanError(kind=st.error_kind, message=st.error_message or "", fix=fix, meaning=meaning)  # type: ignore[arg-type]
        elif (bad := agent_plan.client_error(spec, i, e.spec, e.settings.max_model_len)) is not None:
            err = PlanError(kind="agent_context", message=bad[0], fix=bad[1], meaning=agent_plan.MEANING)
        elif over == i:
            err = _overcommit(sim, i, sts, gpus)
        else:
            err = _at_risk(sim, i, st, u)
        if st.error_kind is None:
            notes += agent_plan.plan_notes(
                spec, e.settings.max_model_len, st.available_kv_bytes / GiB, st.kv_tokens
            )
        offer = e.spec.kv_cache_memory_bytes or changes[i].get("kv_cache_memory_bytes")
        if (
            offer is None
            and e.spec.kv_sizing != "fraction"
            and e.spec.gpu_memory_utilization is None
            and rules.has_kv_cache_memory_bytes
            and st.error_kind is None
        ):
            offer = max(0, st.available_kv_bytes)
            notes.append(
                f"or launch with --kv-cache-memory-bytes {offer} --gpu-memory-utilization {u:.2f} "
                "(fixed pool, same startup check)"
            )
        kv_tokens = st.kv_tokens
        models.append(
            ModelPlan(
                name=e.spec.name,
                model=e.spec.model,
                gpu_memory_utilization=round(u, 4),
                requested_gib=round(st.requested_bytes / GiB, 3),
                free_at_start_gib=round(st.free_at_start_bytes / GiB, 3),
                weights_gib=round(st.weights_bytes / GiB, 3),
                activation_gib=round(st.activation_bytes / GiB, 3),
                non_torch_gib=round((st.non_torch_bytes + st.host_overhead_bytes) / GiB, 3),
                cudagraph_gib=round(st.cudagraph_bytes / GiB, 3),
                kv_cache_gib=round(st.available_kv_bytes / GiB, 3),
                kv_cache_tokens=kv_tokens,
                max_concurrency=round(st.max_concurrency, 2),
                block_size=st.block_size,
                footprint_gib=round(st.footprint_bytes / GiB, 3),
                verdict="ok" if err is None else ("at_risk" if err.kind == "at_risk" else "fail"),
                kv_cache_gib_cold=round(cold.available_kv_bytes / GiB, 3) if device.uma_gpu else None,
                kv_cache_gib_warm=round(warm.available_kv_bytes / GiB, 3) if device.uma_gpu else None,
                start=device.start if device.uma_gpu else None,
                page_cache_gib=round(st.page_cache_bytes / GiB, 3),
                error=err,
                max_model_len=e.settings.max_model_len,
                max_num_seqs=e.settings.max_num_seqs,
                max_num_batched_tokens=e.settings.max_num_batched_tokens,
                kv_cache_memory_bytes=offer,
                tensor_parallel_size=e.settings.tensor_parallel_size,
                context_gib=round(st.context_bytes / GiB, 3),
                host_overhead_gib=round(st.host_overhead_bytes / GiB, 3),
                cudagraph_in_budget=st.cudagraph_in_budget,
                chosen_by_solver=e.spec.gpu_memory_utilization is None,
                calibrated=e.measured is not None,
                gpus=gpus[i],
                notes=notes,
            )
        )
    usum = round(sum(fracs), 4)
    if usum > budget + 1e-9:
        warnings.append(f"the fractions sum to {usum:.2f}, over the budget {budget:.2f}")
    if device.is_gb10 and device.idle_free_gib is None and device.total_source == "preset":
        warnings.append(PRESET_ASSUMPTION.format(idle=idle_offered_gib(device.total_gib)))
    elif device.total_source.startswith(("live", "calibration")):
        warnings.append(
            f"device total {device.total_gib:.2f} GiB"
            + (f", free {device.idle_free_gib:.2f} GiB" if device.idle_free_gib is not None else "")
            + f" from the {device.total_source}"
            + (" (used_gib of the spec replaced by the reading)" if live is not None else "")
        )
    if device.unified and not rules.uma_free_is_memavailable:
        warnings.append(
            f"vLLM {rules.version} on unified memory measures free memory with cudaMemGetInfo, which counts page "
            "cache as used: run `sync; echo 3 | sudo tee /proc/sys/vm/drop_caches` before each start (>= 0.11.1 uses MemAvailable)"
        )
    if start_together and len(entries) > 1:
        warnings.append(
            "predicted for engines started together: each one's profile is charged what the engines before it "
            "allocate meanwhile; start them one at a time instead (residency up does)"
        )
    if len(entries) > 1 and not start_together:
        warnings.append(
            "start the models one at a time: launch the next only after the previous logs 'init engine ... took'"
        )
    used_total = device.used_gib + sum(
        m.footprint_gib for m, st in zip(models, sts, strict=True) if st.error_kind is None
    ) / max(1, device.count)
    headroom = device.total_gib - used_total
    offered = _idle_offer_gib(device)
    engines = used_total - device.used_gib
    if offered is not None and engines > offered + 1e-6:
        # up's unified-memory gate waits for each engine's footprint to be free as vLLM reads it
        # (runtime/memory.needed_gib), so on a box offering only this much it stops before the last engine
        warnings.append(
            f"the footprints sum to {engines:.2f} GiB, more than the ~{offered:.1f} GiB an idle box of this kind "
            "reliably offers (unified-memory.md §2): `up` waits for each engine's footprint and stops (exit 1) "
            "before the one that does not fit; read the real figure with `plan --live` on the box, or lower "
            "max_model_len/max_num_seqs"
        )
    return Plan(
        vllm_version=rules.version,
        device=DevicePlan(
            name=device.name,
            total_gib=device.total_gib,
            unified=device.unified,
            used_gib=device.used_gib,
            budget_gib=round(budget * device.total_gib, 3),
            count=device.count,
            start=device.start if device.uma_gpu else None,
            host_reserve_gib=device.host_reserve_gib,
            total_source=device.total_source,
        ),
        fits=solver_ok and all(m.verdict == "ok" for m in models),
        utilization_sum=usum,
        launch_order=[m.name for m in models],
        models=models,
        headroom_gib=round(headroom, 3),
        warnings=warnings,
        solver=solver_text,
    )
