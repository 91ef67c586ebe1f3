"""Fleet placement: put every model replica on GPUs of the `hosts:` of a multi-host spec.

The residency math decides what fits together. For each (model, device type) the planner's
memory model is asked ONCE for the smallest `gpu_memory_utilization` that still serves the
model's requirement (`min_concurrency`, else `max_num_seqs`, requests at `max_model_len`) and for
the process's footprint at that fraction. Placement then bin-packs those demands:

* `placement: pack` (default): best-fit decreasing. Biggest replicas first, each to the GPU that
  it leaves with the least room, so whole GPUs stay free for later.
* `placement: spread`: least-loaded. Each replica goes to the GPU with the most room left,
  preferring hosts that do not hold a replica of the same model yet.

Rules on every GPU ("pool"): the sum of fractions stays within the device budget; vLLM's
startup free-memory check holds for every process in launch order (free at start = total -
used - footprints of the processes launched before it >= ceil(total x fraction); on unified
memory (DGX Spark) `total` is the host's memory and the footprints include each engine's host
RSS, which is what the planner's footprint already counts); replicas of one model sit on
distinct GPUs; a replica with tensor_parallel_size t takes t GPUs of ONE host; `host:` pins are
honoured. Finally each GPU's set is checked with the full planner (`plan_stack` on a one-device
sub-spec), which also hands out the slack by priority.

Launch order inside a pool is the spec's model order (then the replica index), as in one-box
specs. The free-memory check is dominated by the last process launched (each earlier footprint
is at least its requested memory), so a pool keeps only running sums and its last member: O(1)
per candidate, which is what makes 500 replicas on 100 hosts take well under a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from residency.memory.device import resolve_device
from residency.planner.result import ModelPlan, Plan
from residency.planner.solver import STEP, requirement, search_min_fraction
from residency.ports import DEFAULT_VLLM_PORT
from residency.spec import DeviceSpec, HostSpec, ModelSpec, StackSpec

EPS = 1e-9
PlanFn = Callable[..., Plan]  # plan_stack or a stand-in (tests)
Order = tuple[int, int]  # (model index, replica): launch order within a GPU
DevKey = tuple[object, ...]


# --------------------------------------------------------------------------------------------
# Per-(model, device type) demand
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    """What one replica of a model asks of one GPU of a device type (per GPU / per TP rank)."""

    fraction: float  # smallest gpu_memory_utilization that serves the requirement
    requested_gib: float  # ceil(total x fraction)
    footprint_gib: float  # held once up: requested + CUDA context + graphs outside + host RSS (unified)
    kv_gib: float  # KV pool at that fraction
    nonkv_gib: float  # requested - kv: weights, activation peak, graphs inside the budget, ...
    concurrency: float  # max concurrency at max_model_len at that fraction
    need: float  # the requirement, in requests at max_model_len
    fixed: bool = False  # the fraction was given in the spec
    error: str | None = None  # cannot serve on this device type at any fraction (reason)

    @property
    def overhead_gib(self) -> float:
        return self.footprint_gib - self.requested_gib


DemandFn = Callable[[ModelSpec, DeviceSpec, str], Demand]


def _single_spec(
    spec_version: str, m: ModelSpec, dev: DeviceSpec, fraction: float | None, **extra: Any
) -> StackSpec:
    # alone on an empty device: the demand does not depend on what else is there (packing adds that)
    d = dev.model_copy(update={"count": max(dev.count, m.tensor_parallel_size), "used_gib": 0.0})
    mm = m.model_copy(update={"gpu_memory_utilization": fraction, "replicas": 1, "host": None})
    return StackSpec(vllm_version=spec_version, device=d, models=[mm], **extra)


def planner_demand(
    m: ModelSpec,
    dev: DeviceSpec,
    vllm_version: str,
    *,
    plan_fn: PlanFn | None = None,
    extra: dict[str, Any] | None = None,
) -> Demand:
    """Demand of one replica of `m` on one GPU of `dev`, from the planner's memory model.

    One planner run at a probe fraction gives the non-KV memory and the KV per request (both
    independent of the fraction), which extrapolate the minimum fraction: the hint of the solver's
    minimum-fraction search (solver.search_min_fraction), which confirms it or searches around it.
    """
    plan_fn = plan_fn or _plan_stack()
    extra = extra or {}
    fixed = m.gpu_memory_utilization is not None
    probe_u = m.gpu_memory_utilization or min(0.9, dev.budget)
    p = plan_fn(_single_spec(vllm_version, m, dev, probe_u, **extra)).models[0]
    need = requirement(m)
    total = p.requested_gib / probe_u if probe_u else 0.0
    if fixed:
        err = None
        if p.verdict != "ok":
            err = p.error.message if p.error else "the planner rejects it"
        elif p.max_concurrency + EPS < need:
            err = f"at the given gpu_memory_utilization {probe_u} it holds {p.max_concurrency:.2f} requests, needs {need:g}"
        return _demand_from(p, need, fixed=True, error=err)
    nonkv = p.requested_gib - p.kv_cache_gib
    kv_per_req = p.kv_cache_gib / p.max_concurrency if p.max_concurrency > 0 else None
    if kv_per_req is None or total <= 0:
        # not even one request at the probe fraction: try the whole budget before giving up
        p2 = plan_fn(_single_spec(vllm_version, m, dev, dev.budget, **extra)).models[0]
        if p2.verdict != "ok" or p2.max_concurrency <= 0:
            reason = p2.error.message if p2.error else "no KV cache room"
            return _demand_from(p2, need, error=reason)
        p = p2
        total = p.requested_gib / dev.budget
        nonkv = p.requested_gib - p.kv_cache_gib
        kv_per_req = p.kv_cache_gib / p.max_concurrency
    # the solver's one search on its 0.01 grid, so the fractions the per-GPU verification chooses are the
    # ones packing counted on; the extrapolation from the probe is its hint (two runs when it is right)
    hint = (nonkv + kv_per_req * need) / total

    def probe(u: float) -> ModelPlan:
        return plan_fn(_single_spec(vllm_version, m, dev, u, **extra)).models[0]

    def enough(x: ModelPlan) -> bool:
        return x.verdict == "ok" and x.max_concurrency + EPS >= need

    u, q = search_min_fraction(probe, enough, STEP, dev.budget, hint)
    if u is not None:
        return _demand_from(q, need)
    why = (
        q.error.message
        if q.error
        else f"holds {q.max_concurrency:.2f} requests at max_model_len even with the whole budget {dev.budget}, needs {need:g}"
    )
    return _demand_from(q, need, error=why)


def _demand_from(p: ModelPlan, need: float, *, fixed: bool = False, error: str | None = None) -> Demand:
    return Demand(
        fraction=p.gpu_memory_utilization,
        requested_gib=p.requested_gib,
        # + checkpoint page cache a cold start on unified memory leaves, which later engines' checks count
        footprint_gib=max(p.footprint_gib, p.requested_gib) + p.page_cache_gib,
        kv_gib=p.kv_cache_gib,
        nonkv_gib=p.requested_gib - p.kv_cache_gib,
        concurrency=p.max_concurrency,
        need=need,
        fixed=fixed,
        error=error,
    )


def _plan_stack() -> PlanFn:
    from residency.planner.plan import plan_stack

    return plan_stack


def settings_key(m: ModelSpec) -> str:
    """Engine settings that decide a model's demand: identical ones share it (name, replicas, pin do not count)."""
    return repr(
        sorted(m.model_dump(exclude={"name", "replicas", "host", "gpus", "port", "env", "priority"}).items())
    )


def device_key(d: DeviceSpec) -> DevKey:
    """Devices that give the same per-model math (used_gib and budget only matter for packing)."""
    return (d.preset, d.name, d.total_gib, d.unified, d.compute_capability, d.nvml_memory)


def device_label(d: DeviceSpec) -> str:
    return d.preset or d.name or f"{d.total_gib:g}GiB"


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


class Placement(BaseModel):
    name: str  # served model name (what agents send; all replicas share it)
    replica: int  # 0-based
    host: str
    address: str
    gpus: list[int]
    port: int
    device: str
    gpu_memory_utilization: float  # as verified by the planner (slack included)
    min_fraction: float  # the placement's demand (requirement only)
    footprint_gib: float
    kv_cache_gib: float
    max_concurrency: float
    verdict: str = "ok"
    error: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}#{self.replica}"


class Unplaced(BaseModel):
    name: str
    replica: int
    reason: str
    fix: str
    needs_fraction: float | None = None
    largest_free: float | None = None
    largest_free_on: str | None = None


class GpuPlan(BaseModel):
    gpu: int
    members: list[str]  # replica ids in launch order
    plan: dict[str, Any] | None = None  # the planner's contract for this GPU's one-device sub-spec


class HostPlan(BaseModel):
    name: str
    address: str
    device: str
    total_gib: float
    unified: bool
    count: int
    labels: dict[str, str] = Field(default_factory=dict)
    gpus: list[GpuPlan] = Field(default_factory=list)


class FleetPlan(BaseModel):
    vllm_version: str
    placement: str
    fits: bool
    hosts: list[HostPlan]
    placements: list[Placement]
    unplaced: list[Unplaced]
    warnings: list[str] = Field(default_factory=list)
    explain: list[str] = Field(default_factory=list)
    placement_s: float = 0.0

    def contract(self) -> dict[str, Any]:
        """`residency plan --json` for a multi-host spec."""
        d = self.model_dump(mode="json", exclude={"explain", "placement_s"})
        return d

    def by_model(self, name: str) -> list[Placement]:
        return [p for p in self.placements if p.name == name]


# --------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------


@dataclass
class Pool:
    """One GPU: the unit of co-residency."""

    host: int
    gpu: int
    label: str
    total_gib: float
    used_gib: float
    budget: float  # cap on the sum of fractions
    dkey: DevKey
    sum_u: float = 0.0
    sum_fp: float = 0.0
    last_order: Order = (-1, -1)
    last_req: float = 0.0
    last_fp: float = 0.0
    models: set[str] = field(default_factory=set)
    members: list[tuple[Order, int]] = field(default_factory=list)  # (order, replica index in job list)

    def room_after(self, d: Demand, order: Order) -> float | None:
        """GiB left after adding d (the tighter of the budget and the free-memory check), or None."""
        su = self.sum_u + d.fraction
        if su > self.budget + EPS:
            return None
        # free-memory check of the process launched last (dominant, see module docstring)
        if order > self.last_order:
            need = self.used_gib + self.sum_fp + d.requested_gib
        else:
            need = self.used_gib + self.sum_fp + d.footprint_gib - self.last_fp + self.last_req
        if need > self.total_gib + EPS:
            return None
        left_budget = (self.budget - su) * self.total_gib
        # free memory left for a further process once all are up
        left_free = self.total_gib - self.used_gib - self.sum_fp - d.footprint_gib
        return min(left_budget, left_free)

    def add(self, d: Demand, order: Order, job: int, model: str) -> None:
        self.sum_u += d.fraction
        self.sum_fp += d.footprint_gib
        if order > self.last_order:
            self.last_order, self.last_req, self.last_fp = order, d.requested_gib, d.footprint_gib
        self.models.add(model)
        self.members.append((order, job))


@dataclass
class _Job:
    model: int  # index in spec.models
    replica: int
    spec: ModelSpec
    size: float = 0.0


def _resolve_host_device(h: HostSpec) -> DeviceSpec:
    """The host's DeviceSpec with total_gib, unified, name and compute capability filled from its preset."""
    from residency.memory.device import resolve_device

    r = resolve_device(h.device, field=f"hosts[{h.name}].device")
    return h.device.model_copy(
        update={
            "total_gib": r.total_gib,
            "unified": r.unified,
            "compute_capability": r.compute_capability,
            "nvml_memory": r.nvml_memory,
        }
    )


def place_fleet(
    spec: StackSpec,
    *,
    demand_fn: DemandFn | None = None,
    verify: bool = True,
    explain: bool = False,
    plan_fn: PlanFn | None = None,
    use_calibration: bool = True,
    demand_cache: dict[tuple[str, DevKey], Demand] | None = None,
) -> FleetPlan:
    """Place every replica of a multi-host spec; verify each GPU's set with the full planner.

    `demand_fn` replaces the planner's per-(model, device) math (tests); `demand_cache` (a dict
    keyed by (settings_key(model), device_key(device))) lets a caller reuse or read the demands.

    Long on purpose: demand, pack, explain, ports, verify, in that order; each step is its own function.
    """
    if not spec.hosts:
        from residency.errors import SpecError

        raise SpecError(
            "hosts",
            "placement needs a multi-host spec",
            "add hosts: or use `residency plan` on a one-box spec",
        )
    t0 = time.perf_counter()
    notes: list[str] = []
    hosts = spec.hosts
    devices = [_resolve_host_device(h) for h in hosts]
    if demand_fn is None:
        pf = plan_fn or (lambda s: _plan_stack()(s, use_calibration=use_calibration))
        extra = {"calibration_file": spec.calibration_file} if spec.calibration_file else {}
        cache: dict[tuple[str, DevKey], Demand] = {}

        def demand_fn(m: ModelSpec, d: DeviceSpec, v: str) -> Demand:  # noqa: F811
            return planner_demand(m, d, v, plan_fn=pf, extra=extra)

    else:
        cache = {}

    if demand_cache is not None:
        cache = demand_cache
    skeys = [settings_key(m) for m in spec.models]

    def demand(mi: int, d: DeviceSpec) -> Demand:
        k = (skeys[mi], device_key(d))
        if k not in cache:
            cache[k] = demand_fn(spec.models[mi], d, spec.vllm_version)
        return cache[k]

    pools, host_pools = _make_pools(hosts, devices)
    dev_by_key: dict[DevKey, DeviceSpec] = {}
    for d in devices:
        dev_by_key.setdefault(device_key(d), d)

    # jobs, biggest first (pinned first: they have the fewest options)
    jobs: list[_Job] = []
    for mi, m in enumerate(spec.models):
        sizes = []
        for d in dev_by_key.values():
            if m.tensor_parallel_size <= d.count:
                dm = demand(mi, d)
                if dm.error is None:
                    sizes.append(dm.footprint_gib * m.tensor_parallel_size)
        size = max(sizes) if sizes else 0.0
        for r in range(m.replicas):
            jobs.append(_Job(mi, r, m, size))

    spread = spec.placement == "spread"
    assigned, failed = _pack(
        spec, jobs, hosts, devices, pools, host_pools, demand, spread, notes if explain else None
    )
    unplaced = [
        _why_unplaced(spec, jobs[j], hosts, devices, pools, host_pools, demand, demand_fn) for j in failed
    ]
    if failed and not spread:
        # Would least-loaded do better? (Cheap: packing alone, on fresh pools.)
        alt_pools, alt_host_pools = _make_pools(hosts, devices)
        _, alt_failed = _pack(spec, jobs, hosts, devices, alt_pools, alt_host_pools, demand, True, None)
        if len(alt_failed) < len(failed):
            for u in unplaced:
                u.fix += f", or set placement: spread (it places {len(jobs) - len(alt_failed)} of {len(jobs)} replicas)"
    if explain:
        for u in unplaced:
            notes.append(f"refused {u.reason}; fix: {u.fix}")

    placement_s = time.perf_counter() - t0

    # ports per host, in launch order
    placements: dict[int, Placement] = {}
    for hi, h in enumerate(hosts):
        used_ports: set[int] = set()
        on_host = sorted(
            (j for j, pids in assigned.items() if pools[pids[0]].host == hi),
            key=lambda j: (jobs[j].model, jobs[j].replica),
        )
        for j in on_host:
            job = jobs[j]
            port = job.spec.port or DEFAULT_VLLM_PORT
            while port in used_ports or port == spec.proxy.port:
                port += 1
            used_ports.add(port)
            dm = demand(job.model, devices[hi])
            placements[j] = Placement(
                name=job.spec.name,
                replica=job.replica,
                host=h.name,
                address=h.address,
                gpus=[pools[p].gpu for p in assigned[j]],
                port=port,
                device=device_label(devices[hi]),
                gpu_memory_utilization=dm.fraction,
                min_fraction=dm.fraction,
                footprint_gib=dm.footprint_gib,
                kv_cache_gib=dm.kv_gib,
                max_concurrency=dm.concurrency,
            )

    host_plans = []
    for hi, h in enumerate(hosts):
        d = devices[hi]
        gp = []
        for pid in host_pools[hi]:
            members = [f"{jobs[j].spec.name}#{jobs[j].replica}" for _, j in sorted(pools[pid].members)]
            gp.append(GpuPlan(gpu=pools[pid].gpu, members=members))
        host_plans.append(
            HostPlan(
                name=h.name,
                address=h.address,
                device=device_label(d),
                total_gib=d.total_gib or 0.0,
                unified=bool(d.unified),
                count=d.count,
                labels=h.labels,
                gpus=gp,
            )
        )

    warnings: list[str] = []
    fits = not unplaced
    if verify and assigned:
        ok = _verify(
            spec,
            hosts,
            devices,
            pools,
            host_pools,
            jobs,
            placements,
            host_plans,
            plan_fn,
            use_calibration,
            warnings,
        )
        fits = fits and ok
    order = sorted(placements, key=lambda j: (jobs[j].model, jobs[j].replica))
    return FleetPlan(
        vllm_version=spec.vllm_version,
        placement=spec.placement,
        fits=fits,
        hosts=host_plans,
        placements=[placements[j] for j in order],
        unplaced=sorted(unplaced, key=lambda u: ([m.name for m in spec.models].index(u.name), u.replica)),
        warnings=warnings,
        explain=notes,
        placement_s=placement_s,
    )


def _make_pools(hosts: list[HostSpec], devices: list[DeviceSpec]) -> tuple[list[Pool], list[list[int]]]:
    pools: list[Pool] = []
    host_pools: list[list[int]] = []
    for hi, (h, d) in enumerate(zip(hosts, devices, strict=True)):
        ids = []
        for g in range(d.count):
            pools.append(
                Pool(
                    host=hi,
                    gpu=g,
                    label=f"{h.name}:{g}",
                    total_gib=d.total_gib or 0.0,
                    # unified memory: the host reserve stays free too (memory/unified.py)
                    used_gib=d.used_gib + resolve_device(d).host_reserve_gib,
                    budget=d.budget,
                    dkey=device_key(d),
                )
            )
            ids.append(len(pools) - 1)
        host_pools.append(ids)
    return pools, host_pools


def _pack(
    spec: StackSpec,
    jobs: list[_Job],
    hosts: list[HostSpec],
    devices: list[DeviceSpec],
    pools: list[Pool],
    host_pools: list[list[int]],
    demand: Callable[[int, DeviceSpec], Demand],
    spread: bool,
    notes: list[str] | None,
) -> tuple[dict[int, list[int]], list[int]]:
    """Greedy placement in job order. Returns ({job: [pool ids]}, [unplaced jobs])."""
    host_index = {h.name: i for i, h in enumerate(hosts)}
    order_jobs = sorted(
        range(len(jobs)),
        key=lambda j: (jobs[j].spec.host is None, -jobs[j].size, jobs[j].model, jobs[j].replica),
    )
    assigned: dict[int, list[int]] = {}
    failed: list[int] = []
    model_hosts: dict[int, set[int]] = {}
    for j in order_jobs:
        job = jobs[j]
        m = job.spec
        tp = m.tensor_parallel_size
        order = (job.model, job.replica)
        cand_hosts = [host_index[m.host]] if m.host else range(len(hosts))
        best = None  # (score, host, [pool ids])
        considered = []
        for hi in cand_hosts:
            d = devices[hi]
            if tp > d.count:
                continue
            dm = demand(job.model, d)
            if dm.error is not None:
                continue
            fits = []
            for pid in host_pools[hi]:
                pool = pools[pid]
                if m.name in pool.models:
                    continue
                left = pool.room_after(dm, order)
                if left is not None:
                    fits.append((left, pid))
            if len(fits) < tp:
                continue
            score: tuple[float, ...]  # smaller is better
            if spread:
                fits.sort(key=lambda x: (-x[0] / pools[x[1]].total_gib, x[1]))
                chosen = fits[:tp]
                worst = min(left / pools[pid].total_gib for left, pid in chosen)
                score = (hi in model_hosts.get(job.model, ()), -worst, hi)
            else:
                fits.sort(key=lambda x: (x[0], x[1]))
                chosen = fits[:tp]
                score = (sum(left for left, _ in chosen), hi)
            if notes is not None:  # the figure the score above compares, not another one
                gpus = ",".join(pools[pid].label for _, pid in chosen)
                gib = max(0.0, sum(x for x, _ in chosen))
                if spread:
                    again = " (holds a replica already)" if score[0] else ""
                    considered.append(f"{gpus} leaves {worst:.0%} ({gib:.1f} GiB){again}")
                else:
                    considered.append(f"{gpus} leaves {gib:.1f} GiB")
            if best is None or score < best[0]:
                best = (score, hi, [pid for _, pid in chosen])
        if best is None:
            failed.append(j)
            continue
        _, hi, pids = best
        dm = demand(job.model, devices[hi])
        for pid in pids:
            pools[pid].add(dm, order, j, m.name)
        assigned[j] = pids
        model_hosts.setdefault(job.model, set()).add(hi)
        if notes is not None:
            rule = "least loaded" if spread else "best fit"
            notes.append(
                f"{m.name}#{job.replica} needs {dm.fraction:.3f} of a {device_label(devices[hi])} "
                f"({dm.footprint_gib:.1f} GiB): {rule} -> {', '.join(pools[p].label for p in pids)}"
                + (f"  [candidates: {'; '.join(considered)}]" if len(considered) > 1 else "")
            )
    return assigned, failed


def _why_unplaced(
    spec: StackSpec,
    job: _Job,
    hosts: list[HostSpec],
    devices: list[DeviceSpec],
    pools: list[Pool],
    host_pools: list[list[int]],
    demand: Callable[[int, DeviceSpec], Demand],
    raw_demand: DemandFn,
) -> Unplaced:
    """Long on purpose: the refusal reasons are checked in the order a user fixes them."""
    m = job.spec
    tp = m.tensor_parallel_size
    rid = f"{m.name}#{job.replica}"
    cand = [hosts.index(next(h for h in hosts if h.name == m.host))] if m.host else list(range(len(hosts)))
    where = f"pinned host {m.host}" if m.host else "any host"
    max_count = max(devices[i].count for i in cand)
    if tp > max_count:
        return Unplaced(
            name=m.name,
            replica=job.replica,
            reason=f"{rid}: tensor_parallel_size {tp} needs {tp} GPUs on one host; {where} has at most {max_count}",
            fix=f"lower tensor_parallel_size to {max_count} or add a host with {tp} GPUs",
        )
    errs = {}
    best = None  # (gap, need u, free, label, host index)
    blocked_by_replicas = False
    for hi in cand:
        d = devices[hi]
        if tp > d.count:
            continue
        dm = demand(job.model, d)
        if dm.error is not None:
            errs[device_label(d)] = dm.error
            continue
        frees = []
        for pid in host_pools[hi]:
            p = pools[pid]
            if m.name in p.models:
                blocked_by_replicas = True
                continue
            # what this replica could take here, counting its own overhead on the free check
            f = min(p.budget - p.sum_u, (p.total_gib - p.used_gib - p.sum_fp - dm.overhead_gib) / p.total_gib)
            frees.append((max(f, 0.0), p.label))
        frees.sort(reverse=True)
        if len(frees) < tp:
            continue
        f, label = frees[tp - 1]
        gap = dm.fraction - f
        if best is None or gap < best[0]:
            best = (gap, dm.fraction, f, label, hi)
    if best is None:
        if errs:
            dev, why = next(iter(errs.items()))
            return Unplaced(
                name=m.name,
                replica=job.replica,
                reason=f"{rid}: cannot serve on {', '.join(errs)}: {why}",
                fix="lower max_model_len or max_num_seqs, use a quantized checkpoint, raise tensor_parallel_size, or add a bigger device",
            )
        scope = f"pinned host {m.host}" if m.host else "the hosts"
        if tp == 1:
            why = f"every GPU of {scope} already holds a replica of {m.name}"
        else:
            why = f"none of {scope} has {tp} GPUs (tensor_parallel_size {tp}) without a replica of {m.name}"
        return Unplaced(
            name=m.name,
            replica=job.replica,
            reason=f"{rid}: {why} (replicas need distinct GPUs)",
            fix=f"lower replicas of {m.name} or add a host" + (f" with {tp} GPUs" if tp > 1 else ""),
        )
    gap, need_u, free, label, hi = best
    unit = "of a GPU" if tp == 1 else f"of each of {tp} GPUs"
    reason = f"{rid}: needs {need_u:.2f} {unit}; largest free is {free:.2f} on {label}"
    if blocked_by_replicas:
        reason += " (GPUs already holding a replica of it do not count)"
    fixes = []
    if not m.gpu_memory_utilization:
        alt = _shorter_len_that_fits(spec, job, devices[hi], free, raw_demand)
        if alt:
            fixes.append(f"lower max_model_len to {alt}")
    else:
        fixes.append(f"lower gpu_memory_utilization to {free:.2f} (KV shrinks)")
    if m.host:
        fixes.append(f"unpin it from {m.host}")
    fixes.append(f"add a host ({device_label(devices[hi])})")
    return Unplaced(
        name=m.name,
        replica=job.replica,
        reason=reason,
        fix=" or ".join(fixes),
        needs_fraction=need_u,
        largest_free=free,
        largest_free_on=label,
    )


def _shorter_len_that_fits(
    spec: StackSpec, job: _Job, dev: DeviceSpec, free: float, raw_demand: DemandFn
) -> int | None:
    """Largest max_model_len (a multiple of 1024) whose demand fits in `free`, by bisection."""
    m = job.spec
    cur = m.max_model_len
    if not cur or cur <= 1024:
        return None

    def fits(length: int) -> bool:
        d = raw_demand(m.model_copy(update={"max_model_len": length}), dev, spec.vllm_version)
        return d.error is None and d.fraction <= free + EPS

    lo, hi = 1, (cur - 1) // 1024
    if hi < 1 or not fits(1024):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid * 1024):
            lo = mid
        else:
            hi = mid - 1
    return lo * 1024


# --------------------------------------------------------------------------------------------
# Verification with the full planner
# --------------------------------------------------------------------------------------------


def _verify(
    spec: StackSpec,
    hosts: list[HostSpec],
    devices: list[DeviceSpec],
    pools: list[Pool],
    host_pools: list[list[int]],
    jobs: list[_Job],
    placements: dict[int, Placement],
    host_plans: list[HostPlan],
    plan_fn: PlanFn | None,
    use_calibration: bool,
    warnings: list[str],
) -> bool:
    """Run plan_stack on each GPU's one-device sub-spec; keep TP replicas' fractions equal across GPUs.

    Long on purpose: one planner run per GPU and the TP-consistency fix-up share the per-GPU state."""
    pf = plan_fn or (lambda s: _plan_stack()(s, use_calibration=use_calibration))
    fixed: dict[int, float] = {}  # job -> fraction forced (TP consistency)
    ok = True

    def sub_spec(pid: int) -> StackSpec:
        p = pools[pid]
        d = devices[p.host]
        members = [j for _, j in sorted(p.members)]
        models = []
        for j in members:
            # pinned to its GPUs: the planner charges its footprint to exactly those
            upd: dict[str, Any] = {
                "replicas": 1,
                "host": None,
                "port": placements[j].port,
                "gpus": placements[j].gpus,
            }
            if j in fixed:
                upd["gpu_memory_utilization"] = fixed[j]
            models.append(jobs[j].spec.model_copy(update=upd))
        return StackSpec(
            vllm_version=spec.vllm_version,
            device=d,  # all the host's GPUs, so GPU indices are the real ones; only this GPU's set is in it
            models=models,
            proxy=spec.proxy,
            hf_cache=spec.hf_cache,
            calibration_file=spec.calibration_file,
        )

    results: dict[int, Plan] = {}
    for pid, p in enumerate(pools):
        if p.members:
            results[pid] = pf(sub_spec(pid))
    # TP replicas: one fraction on all their GPUs (the smallest the solver gave)
    redo = set()
    for j, pl in placements.items():
        if jobs[j].spec.tensor_parallel_size > 1 and jobs[j].spec.gpu_memory_utilization is None:
            pids = [
                pid
                for pid in host_pools[pools_index(hosts, pl.host)]
                if any(jj == j for _, jj in pools[pid].members)
            ]
            us = [results[pid].model(jobs[j].spec.name).gpu_memory_utilization for pid in pids]
            if max(us) - min(us) > 1e-6:
                fixed[j] = min(us)
                redo.update(pids)
    for pid in redo:
        results[pid] = pf(sub_spec(pid))

    for pid, plan in results.items():
        p = pools[pid]
        hp = host_plans[p.host]
        for g in hp.gpus:
            if g.gpu == p.gpu:
                g.plan = plan.contract()
        if not plan.fits:
            ok = False
            bad = [mp for mp in plan.models if mp.verdict != "ok"]
            warnings.append(
                f"{p.label}: the planner rejects this set"
                + (f" ({bad[0].name}: {bad[0].error.message if bad[0].error else 'fail'})" if bad else "")
            )
        for _, j in p.members:
            mp = plan.model(jobs[j].spec.name)
            pl = placements[j]
            if pl.gpus and pl.gpus[0] != p.gpu:
                continue  # a TP replica reports from its first GPU
            pl.gpu_memory_utilization = mp.gpu_memory_utilization
            pl.kv_cache_gib = mp.kv_cache_gib
            pl.max_concurrency = mp.max_concurrency
            pl.footprint_gib = mp.footprint_gib
            pl.verdict = mp.verdict
            pl.error = mp.error.message if mp.error else None
    return ok


def pools_index(hosts: list[HostSpec], name: str) -> int:
    for i, h in enumerate(hosts):
        if h.name == name:
            return i
    raise KeyError(name)
