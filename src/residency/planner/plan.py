"""`plan_stack(spec) -> Plan`: the residency math for one box, before anything launches.

For each model in launch order: resolve its facts and settings (vLLM's version defaults where the
spec is silent), choose fractions for models without one (solver.py), simulate its startup with the
free memory the earlier processes left (memory.engine), and turn failures into vLLM's own error text
plus the smallest fix found by search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from residency.agents import plan as agent_plan
from residency.errors import SpecError
from residency.memory.device import Device, resolve_device
from residency.memory.engine import EngineSettings, Measured, Startup, requested_bytes, simulate_startup
from residency.memory.messages import MEANINGS
from residency.memory.model_facts import ModelFacts
from residency.memory.versions import VersionRules, rules_for
from residency.planner import solver
from residency.planner.result import DevicePlan, ModelPlan, Plan, PlanError
from residency.spec import ModelSpec, StackSpec

GiB = 2**30
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
        mml = f.max_position_embeddings or 8192
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


def _calibration(spec: StackSpec, m: ModelSpec, device: Device) -> tuple[Measured | None, str | None]:
    try:  # the calibrate package may be absent in a partial checkout: no calibration then
        from residency.calibrate.store import find_calibration, key_for_model
    except ImportError:
        return None, None
    try:
        cal = find_calibration(key_for_model(m, spec.vllm_version, device.name), spec.calibration_file)
    except Exception as e:  # a broken calibration file must not break planning
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
        self._cache: dict[tuple[int, float, int], Startup] = {}

    def run(self, i: int, u: float, free: int = INF_FREE, foreign: int = 0, **changes) -> Startup:
        key = (i, round(u, 4), free, foreign, tuple(sorted(changes.items())))
        st = self._cache.get(key)  # type: ignore[arg-type]
        if st is None:
            e = self.entries[i]
            es = replace(e.settings, gpu_memory_utilization=round(u, 4), **changes)
            st = simulate_startup(
                e.facts, es, self.device, self.rules, free, e.measured, foreign_growth_bytes=foreign
            )
            self._cache[key] = st  # type: ignore[index]
        return st

    def sequence(self, fracs: list[float], together: bool = False) -> tuple[list[Startup], list[list[int]]]:
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
            st = self.run(i, u, max(free, 0), foreign)
            out.append(st)
            gpus_of.append(sorted(order))
            if (
                st.error_kind != "free_memory"
            ):  # a process that fails the check holds only its context briefly
                hold = st.footprint_bytes if st.error_kind is None else st.context_bytes
                for g in order:
                    if together:
                        used[g] += st.context_bytes
                        growth[g] += hold - st.context_bytes
                    else:
                        used[g] += hold
        return out, gpus_of

    def first_failure(self, fracs: list[float]) -> int | None:
        sts, _ = self.sequence(fracs)
        for i, st in enumerate(sts):
            if st.error_kind is not None:
                return i
        return None


# ------------------------------------------------------------------------------------ fixes


def _max_fraction_for_free(free: int, total: int, rules: VersionRules) -> float:
    u = math.floor(free / total * 100) / 100
    while u > 0 and requested_bytes(total, u, rules) > free:
        u = round(u - 0.01, 2)
    return max(u, 0.0)


def _fix(sim: Sim, i: int, st: Startup, u: float) -> str:
    e = sim.entries[i]
    rules, total = sim.rules, sim.device.total_bytes
    umax = _max_fraction_for_free(st.free_at_start_bytes, total, rules)
    umin, _ = solver.min_fraction(lambda x: sim.run(i, x), None)
    kind = st.error_kind
    earlier = ", ".join(sim.entries[j].spec.name for j in range(i)) or "other processes"
    if kind == "free_memory":
        if umin is not None and umin <= umax:
            return f"lower gpu_memory_utilization to {umax:.2f} (the most the {st.free_at_start_bytes / GiB:.2f} GiB free allows)"
        short = (
            (requested_bytes(total, umin, rules) if umin else st.requested_bytes) - st.free_at_start_bytes
        ) / GiB
        return f"free {short:.2f} GiB more before it starts (lower the fractions of {earlier}, or stop them)"
    if kind == "weights_do_not_fit":
        return (
            f"use a smaller or quantized checkpoint, or tensor_parallel_size {e.settings.tensor_parallel_size * 2}; "
            f"the weights need {st.weights_bytes / GiB:.2f} GiB per GPU"
        )
    raise_txt = ""
    if umin is not None and umin > u:
        raise_txt = f"raise gpu_memory_utilization to {umin:.2f}"
        if umin > umax:
            need = (requested_bytes(total, umin, rules) - st.free_at_start_bytes) / GiB
            raise_txt += f" (after freeing {need:.2f} GiB: lower the fractions of {earlier})"
    if kind == "no_cache_blocks":
        alt = ""
        if e.settings.max_num_batched_tokens > 2048:
            alt = f", or lower max_num_batched_tokens from {e.settings.max_num_batched_tokens} to 2048"
        return (raise_txt or "raise gpu_memory_utilization") + alt
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


# ------------------------------------------------------------------------------------ the plan


def _resolve(spec: StackSpec, m: ModelSpec, i: int) -> ModelFacts:
    from residency.memory.resolve import resolve_model

    try:
        return resolve_model(m, spec.hf_cache)
    except SpecError as e:
        if e.field.startswith("models"):
            raise
        raise SpecError(f"models[{i}:{m.name}].model", e.problem, e.fix) from None


def plan_stack(spec: StackSpec, use_calibration: bool = True, start_together: bool = False) -> Plan:
    """The plan for a one-device spec. `start_together=True` predicts what happens when all engines are
    started at once instead of one after another (what `up` does); the fractions are not solved then."""
    if spec.device is None and spec.hosts:
        raise SpecError(
            "hosts",
            "a multi-host spec is planned per GPU by placement",
            "use `residency plan` on a one-device spec",
        )
    assert spec.device is not None
    device = resolve_device(spec.device)
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
        es, notes = agent_plan.plan_context(spec, m, es, notes)
        meas, cal_note = _calibration(spec, m, device) if use_calibration else (None, None)
        target = float(m.min_concurrency or es.max_num_seqs)
        entries.append(Entry(m, f, es, meas, cal_note, notes, target))
    sim = Sim(spec, device, rules, entries)
    budget = device.budget
    fixed = [m.gpu_memory_utilization for m in spec.models]
    solver_text: str | None = None
    if any(f is None for f in fixed) and not start_together:
        res = solver.solve(
            fixed,
            [m.name for m in spec.models],
            [m.priority for m in spec.models],
            [e.target for e in entries],
            [(lambda u, i=i: sim.run(i, u)) for i in range(len(entries))],
            sim.first_failure,
            budget,
        )
        fracs, solver_text = res.fractions, res.text
        if not res.ok:
            warnings.append("solver: " + res.text)
    else:
        fracs = [float(f) if f is not None else 0.9 for f in fixed]
    sts, gpus = sim.sequence(fracs, together=start_together)
    models: list[ModelPlan] = []
    for i, (e, st, u) in enumerate(zip(entries, sts, fracs, strict=True)):
        notes = list(e.default_notes) + list(st.notes) + list(e.facts.notes)
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
        if st.error_kind is None:
            notes += agent_plan.plan_notes(
                spec, e.settings.max_model_len, st.available_kv_bytes / GiB, st.kv_tokens
            )
        offer = e.spec.kv_cache_memory_bytes
        if (
            offer is None
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
                verdict="ok" if err is None else "fail",
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
    return Plan(
        vllm_version=rules.version,
        device=DevicePlan(
            name=device.name,
            total_gib=device.total_gib,
            unified=device.unified,
            used_gib=device.used_gib,
            budget_gib=round(budget * device.total_gib, 3),
            count=device.count,
        ),
        fits=all(m.verdict == "ok" for m in models),
        utilization_sum=usum,
        launch_order=[m.name for m in models],
        models=models,
        headroom_gib=round(headroom, 3),
        warnings=warnings,
        solver=solver_text,
    )
