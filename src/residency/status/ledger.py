"""The live residency ledger: what each model of a stack really holds, against the plan.

`build_ledger` collects (state file via status.targets, health/process probes via status.probes,
/metrics, per-process memory from a `GpuReader`) and status.assess turns the collected figures into
drift warnings. `assess` is pure: it reads only the ledger, so the drift rules are unit-testable.

State per model:
  ready    - GET /health answers 200
  starting - the server's process is alive but /health does not answer 200 yet (vLLM binds its
             port early and answers only once the engine is up), or the state file says so
  down     - nothing alive answers (or /health says 5xx: EngineDeadError)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from residency.errors import ResidencyError
from residency.gpu import (
    DeviceReading,
    GpuReader,
    HostMemory,
    group_pids,
    process_tree,
    tree_bytes,
)
from residency.runtime.procs import process_alive
from residency.status.assess import Thresholds, Warning, assess
from residency.status.metrics import VllmMetrics, scrape_metrics
from residency.status.probes import (
    ProxyStatus,
    container_pid,
    listening_pids,
    probe_health,
    probe_proxy,
)
from residency.status.targets import LOCAL, Target, read_state, targets_for
from residency.units import GiB

if TYPE_CHECKING:
    import httpx

    from residency.planner.result import Plan
    from residency.runtime.state import StackState
    from residency.spec import StackSpec

# The split modules' names, re-exported: callers import the ledger's vocabulary from here.
__all__ = [
    "DeviceStatus",
    "Ledger",
    "ModelStatus",
    "ProxyStatus",
    "Target",
    "Thresholds",
    "Warning",
    "assess",
    "build_ledger",
    "classify",
    "collect_model",
    "container_pid",
    "listening_pids",
    "load_plan",
    "planned_gib",
    "probe_health",
    "probe_proxy",
    "read_state",
    "targets_for",
]


State = Literal["ready", "starting", "down"]


@dataclass
class ModelStatus:
    name: str
    replica: int
    url: str | None
    state: State
    detail: str
    pid: int | None = None
    container: str | None = None
    pids: list[int] = field(default_factory=list)  # the process tree holding the memory
    memory_bytes: int | None = None
    memory_source: str | None = None  # "gpu" (NVML per-process) or "rss" (host)
    planned_gib: float | None = None  # plan footprint x TP x PP
    kv_cache_usage: float | None = None  # 0-1
    kv_metric: str | None = None
    kv_cache_tokens: int | None = None
    requests_running: float | None = None
    requests_waiting: float | None = None
    generation_tokens_total: float | None = None
    prefix_cache_hit_rate: float | None = None
    served_names: list[str] = field(default_factory=list)
    log_path: str | None = None
    orphan_pids: list[int] = field(default_factory=list)  # down, but processes it had still hold memory
    pgid: int | None = None  # process group recorded by `up`: `residency down` stops what is left of it

    @property
    def memory_gib(self) -> float | None:
        return None if self.memory_bytes is None else self.memory_bytes / GiB

    @property
    def drift_pct(self) -> float | None:
        """(actual - planned) / planned, in percent."""
        if self.memory_bytes is None or not self.planned_gib:
            return None
        return (self.memory_bytes / GiB - self.planned_gib) / self.planned_gib * 100.0


@dataclass
class DeviceStatus:
    reader: str  # nvml | recorded | host
    unified: bool
    name: str | None
    devices: list[DeviceReading]
    host: HostMemory | None  # shown on unified memory and on the CPU runtime
    planned_total_gib: float | None = None
    spec_total_gib: float | None = None


@dataclass
class Ledger:
    spec: str
    taken_at: float
    vllm_version: str
    models: list[ModelStatus]
    proxy: ProxyStatus | None
    device: DeviceStatus
    plan_note: str  # "plan ok", "plan: does not fit", or "no plan: <why>"
    stray: dict[int, int | None] = field(default_factory=dict)  # GPU pids not in any model tree
    warnings: list[Warning] = field(default_factory=list)
    state_lost: bool = False  # no state file: `up`'s processes were found by their tags

    @property
    def all_ready(self) -> bool:
        return all(m.state == "ready" for m in self.models)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for m, md in zip(self.models, d["models"], strict=True):
            md["memory_gib"] = None if m.memory_gib is None else round(m.memory_gib, 3)
            md["drift_pct"] = None if m.drift_pct is None else round(m.drift_pct, 1)
        d["stray"] = {str(k): v for k, v in self.stray.items()}
        return d

    def to_json(self) -> str:
        from residency.jsonout import dumps

        return dumps(self.to_dict(), indent=None)


# ---------------------------------------------------------------------------------------------
# Collection


# ---------------------------------------------------------------------------------------------
# Collection


def classify(
    health: int | None, health_detail: str, alive: bool, recorded: str | None, previous: str | None = None
) -> tuple[State, str]:
    """`previous`: this model's state in the last ledger of a watch. A server that was ready and is
    alive but slow to answer is busy, not starting: on a CPU box under a burst, /health can take
    seconds to answer."""
    if health == 200:
        return "ready", health_detail
    if health is None and alive and "timeout" in health_detail and "ready" in (previous, recorded):
        return "ready", "busy: /health slow to answer"
    if health is not None and health >= 500:
        # vLLM (0.10.1-0.33.0) answers 503 once its engine died (EngineDeadError); the API process
        # may linger
        return "down", f"{health_detail}: engine not serving (see its log)"
    if alive:
        return "starting", f"process alive, {health_detail}"
    if recorded in ("starting",):
        return "down", f"state file says starting but no process answers ({health_detail})"
    return "down", health_detail


def collect_model(
    t: Target,
    client: httpx.Client,
    per_pid: dict[int, int | None],
    memory_source: str,
    tree_fn: Callable[[int], list[int]] = process_tree,
    alive_fn: Callable[[int | None], bool] | None = None,
    timeout: float = 3.0,
    previous: str | None = None,
) -> ModelStatus:
    url = f"http://{t.address}:{t.port}" if t.port else None
    health, detail = probe_health(client, url + "/health", timeout) if url else (None, "no port")
    # one liveness test for a recorded process: PID plus the create time `up` recorded
    alive = alive_fn(t.pid) if alive_fn is not None else process_alive(t.pid, t.create_time)
    state, detail = classify(health, detail, alive, t.recorded_state, previous)
    ms = ModelStatus(
        name=t.name,
        replica=t.replica,
        url=url,
        state=state,
        detail=detail,
        pid=t.pid,
        container=t.container,
        log_path=t.log_path,
        pgid=t.pgid,
    )
    if t.pid is not None and (alive or state != "down"):
        # a pid in another namespace (container) is not visible here: look it up by itself
        _hold(ms, tree_fn(t.pid) or [t.pid], per_pid, memory_source)
    if state == "ready" and url:
        m = scrape_metrics(url, client=client, timeout=timeout)
        if m is not None:
            _apply_metrics(ms, m)
    return ms


def _apply_metrics(ms: ModelStatus, m: VllmMetrics) -> None:
    ms.kv_cache_usage = m.kv_cache_usage
    ms.kv_metric = m.kv_cache_usage_name
    ms.kv_cache_tokens = m.kv_cache_tokens
    ms.requests_running = m.requests_running
    ms.requests_waiting = m.requests_waiting
    ms.generation_tokens_total = m.generation_tokens_total
    ms.prefix_cache_hit_rate = m.prefix_cache_hit_rate
    ms.served_names = list(m.model_names)


def load_plan(spec: StackSpec) -> tuple[Plan | None, str]:
    """The plan for the spec, or None and why ("no plan: ...") when the planner cannot give one."""
    from residency.planner.plan import plan_stack

    try:
        plan = plan_stack(spec)
    except ResidencyError as e:  # status must work when the spec cannot be planned (an unknown model offline)
        return None, f"no plan: {type(e).__name__}: {e}".splitlines()[0][:200]
    return plan, "plan ok" if plan.fits else "plan: does not fit (see residency plan)"


def planned_gib(plan: Plan | None, name: str, replica: int) -> float | None:
    """Plan footprint for one model replica, all its GPUs together (footprint is per GPU)."""
    if plan is None:
        return None
    mine = [m for m in plan.models if m.name == name]
    if not mine:
        return None
    mp = next((m for m in mine if m.replica == replica), mine[0])
    if mp.verdict != "ok" and mp.footprint_gib <= 0:
        return None
    ranks = max(1, mp.tensor_parallel_size, len(mp.gpus))  # gpus: TP x PP ranks when placed
    return mp.footprint_gib * ranks


def _unified(spec: StackSpec, plan: Plan | None, reader: GpuReader, devices: list[DeviceReading]) -> bool:
    dev = spec.device
    if dev is not None and dev.unified is not None:
        return dev.unified
    if plan is not None:
        return plan.device.unified
    # NVML without device totals is the GB10 signature; the CPU runtime shares host RAM
    return reader.kind == "host" or any(d.total_bytes is None for d in devices)


def build_ledger(
    spec: StackSpec,
    reader: GpuReader,
    *,
    spec_path: str | Path | None = None,
    plan: Plan | None = None,
    plan_note: str | None = None,
    state: StackState | None = None,
    client: httpx.Client | None = None,
    thresholds: Thresholds | None = None,
    tree_fn: Callable[[int], list[int]] = process_tree,
    alive_fn: Callable[[int | None], bool] | None = None,
    group_fn: Callable[[int, float | None], list[int]] = group_pids,
    discover_pids: bool = True,
    timeout: float = 3.0,
    previous: Ledger | None = None,
) -> Ledger:
    """Collect one ledger. `plan`/`plan_note` come from `load_plan` (called once per watch);
    `state` defaults to the `up` state file next to the spec; `previous` is the watch's last ledger."""

    own_client = client is None
    from residency.deadline import deadline_client

    client = client or deadline_client(timeout)
    try:
        if state is None:
            state = read_state(spec_path)
        targets = targets_for(spec, state)
        _fill_pids(targets, state, discover_pids)

        devices = _safe(reader.devices, [])
        per_pid = _safe(reader.processes, {})
        memory_source = "rss" if reader.kind == "host" else "gpu"
        with ThreadPoolExecutor(max_workers=min(8, len(targets) + 1)) as ex:
            proxy_entry = state.proxy() if state is not None else None
            proxy_port = proxy_entry.port if proxy_entry is not None else None
            proxy_f = ex.submit(probe_proxy, client, spec, timeout, proxy_port)
            before = {(m.name, m.replica): m.state for m in previous.models} if previous else {}
            futs = [
                ex.submit(
                    collect_model,
                    t,
                    client,
                    per_pid,
                    memory_source,
                    tree_fn,
                    alive_fn,
                    timeout,
                    before.get((t.name, t.replica)),
                )
                for t in targets
            ]
            models = [f.result() for f in futs]
            proxy = proxy_f.result()
        for ms in models:
            ms.planned_gib = planned_gib(plan, ms.name, ms.replica)
        if previous is not None:
            _find_orphans(models, previous, per_pid, memory_source, alive_fn or process_alive)
        _find_group_orphans(models, targets, per_pid, memory_source, group_fn)

        device = _device_status(spec, plan, reader, devices, models)
        held = {p for m in models for p in m.pids}
        stray = {} if reader.kind == "host" else {p: b for p, b in per_pid.items() if p not in held}
        ledger = Ledger(
            spec=str(spec_path) if spec_path else "",
            taken_at=time.time(),
            vllm_version=spec.vllm_version,
            models=models,
            proxy=proxy,
            device=device,
            plan_note=plan_note or ("plan ok" if plan is not None else "no plan"),
            stray=stray,
            state_lost=state is not None and state.recovered,
        )
        ledger.warnings = assess(ledger, thresholds or Thresholds())
        return ledger
    finally:
        if own_client:
            client.close()


def _fill_pids(targets: list[Target], state: StackState | None, discover: bool) -> None:
    """Pids the state file does not give: a container's main process (docker runtime), else (when
    `discover`) the local process listening on the model's port."""
    project = state.compose_project if state is not None else None
    for t in targets:
        if t.pid is None and t.container:
            t.pid = container_pid(t.container, project)
    need = {t.port for t in targets if t.pid is None and t.port and t.address == LOCAL} if discover else set()
    if need:
        by_port = listening_pids(need)
        for t in targets:
            if t.pid is None and t.port in by_port:
                t.pid = by_port[t.port]


def _device_status(
    spec: StackSpec,
    plan: Plan | None,
    reader: GpuReader,
    devices: list[DeviceReading],
    models: list[ModelStatus],
) -> DeviceStatus:
    unified = _unified(spec, plan, reader, devices)
    dev = spec.device
    return DeviceStatus(
        reader=reader.kind,
        unified=unified,
        name=(dev.name or dev.preset) if dev else None,
        devices=devices,
        host=_safe(reader.host, None) if (unified or reader.kind == "host") else None,
        planned_total_gib=(
            round(sum(m.planned_gib for m in models if m.planned_gib), 3) if plan is not None else None
        ),
        spec_total_gib=dev.total_gib if dev else None,
    )


def _find_orphans(
    models: list[ModelStatus],
    previous: Ledger,
    per_pid: dict[int, int | None],
    memory_source: str,
    alive_fn: Callable[[int | None], bool],
) -> None:
    """A model that went down while processes of its last tree live on: vLLM's EngineCore and
    workers can outlive a killed API server (they are re-parented to init) and keep its memory."""
    before = {(m.name, m.replica): m.pids for m in previous.models}
    for ms in models:
        if ms.state != "down" or ms.pids:
            continue
        left = [p for p in before.get((ms.name, ms.replica), []) if alive_fn(p)]
        if left:
            ms.orphan_pids = left
            _hold(ms, left, per_pid, memory_source)


def _find_group_orphans(
    models: list[ModelStatus],
    targets: list[Target],
    per_pid: dict[int, int | None],
    memory_source: str,
    group_fn: Callable[[int, float | None], list[int]],
) -> None:
    """One-off status (no previous ledger): a down model whose process group, recorded by `up`,
    still has live members. Killing vLLM's API server on its own leaves the EngineCore and workers
    alive, holding the memory (0.10.1-0.33.0: the V1 engine runs EngineCore in its own process by
    default, VLLM_ENABLE_V1_MULTIPROCESSING=1)."""
    for ms, t in zip(models, targets, strict=True):
        if ms.state != "down" or ms.pids or t.pgid is None:
            continue
        left = _safe(lambda t=t: group_fn(t.pgid, t.create_time), [])
        if left:
            ms.orphan_pids = left
            _hold(ms, left, per_pid, memory_source)


def _hold(ms: ModelStatus, pids: list[int], per_pid: dict[int, int | None], memory_source: str) -> None:
    """These processes hold the model's memory: what the reader says they hold, summed."""
    ms.pids = pids
    held = tree_bytes(pids[0], per_pid, tree=pids)
    if held is not None:
        ms.memory_bytes = held
        ms.memory_source = memory_source


def _safe(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a flaky reading must not take the ledger down
        return default


# ---------------------------------------------------------------------------------------------
# Assessment (pure)
