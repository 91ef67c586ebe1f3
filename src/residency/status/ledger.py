"""The live residency ledger: what each model of a stack really holds, against the plan.

`build_ledger` collects (state file, health probes, /metrics, per-process memory from a
`GpuReader`, the proxy's health) and `assess` turns the collected figures into drift warnings.
`assess` is pure: it reads only the ledger, so the drift rules are unit-testable.

State per model:
  ready    - GET /health answers 200
  starting - the server's process is alive but /health does not answer 200 yet (vLLM binds its
             port early and answers only once the engine is up), or the state file says so
  down     - nothing alive answers (or /health says 5xx: EngineDeadError)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from residency.status.gpu import (
    DeviceReading,
    GiB,
    GpuReader,
    HostMemory,
    group_pids,
    process_tree,
    tree_bytes,
)
from residency.status.metrics import VllmMetrics, scrape_metrics

if TYPE_CHECKING:
    import httpx

    from residency.planner.result import Plan
    from residency.spec import StackSpec

SCHEMA_VERSION = 1
DEFAULT_PORT_BASE = 8000  # a model without `port` is probed at 8000 + its index in the spec
LOCAL = "127.0.0.1"

State = Literal["ready", "starting", "down"]


@dataclass(frozen=True)
class Thresholds:
    drift_pct: float = 10.0  # actual footprint above plan by more than this percent ...
    drift_floor_gib: float = 0.25  # ... and by more than this many GiB (ignores noise on toy models)
    kv_high: float = 0.90  # KV usage (0-1) at or above this: requests will queue or be preempted
    page_cache_frac: float = 0.10  # unified memory: page cache above this share of total
    available_low_frac: float = 0.05  # unified memory: MemAvailable below this share of total


@dataclass
class Target:
    """Where to look for one model (replica): from the up state file, else from the spec."""

    name: str
    replica: int = 0
    address: str = LOCAL
    port: int | None = None
    pid: int | None = None
    container: str | None = None
    recorded_state: str | None = None  # what the state file says (starting, ready, stopped, ...)
    log_path: str | None = None
    pgid: int | None = None  # the process group `up` started the server in (process runtime)
    create_time: float | None = None  # the leader's create time `up` recorded: guards against reuse


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
class ProxyStatus:
    url: str
    state: Literal["ready", "alive", "down"]
    liveliness: int | None = None  # HTTP status of /health/liveliness (None: no answer)
    readiness: int | None = None  # HTTP status of /health/readiness
    detail: str = ""


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
class Warning:
    kind: str  # drift, down, starting, kv_high, queue, page_cache, available_low, stray_process, served_name, plan
    message: str
    model: str | None = None
    level: Literal["warn", "info"] = "warn"


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

    @property
    def all_ready(self) -> bool:
        return all(m.state == "ready" for m in self.models)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        for m, md in zip(self.models, d["models"], strict=True):
            md["memory_gib"] = None if m.memory_gib is None else round(m.memory_gib, 3)
            md["drift_pct"] = None if m.drift_pct is None else round(m.drift_pct, 1)
        d["stray"] = {str(k): v for k, v in self.stray.items()}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


# ---------------------------------------------------------------------------------------------
# The up state file (src/residency/runtime/state.py owns its format; read tolerantly here)


def state_path_candidates(spec_path: str | Path) -> list[Path]:
    p = Path(spec_path)
    stem = p.stem
    return [
        p.resolve().parent / ".residency" / stem / "state.json",
        Path.cwd() / ".residency" / stem / "state.json",
    ]


def read_state(spec_path: str | Path | None) -> dict[str, Any] | None:
    """The `up` state file as a dict, or None when there is none (or it cannot be read)."""
    if spec_path is None:
        return None
    try:  # prefer up's own reader when it exists
        from residency.runtime import state as rstate  # type: ignore[attr-defined]

        loader = getattr(rstate, "load_state", None) or getattr(rstate, "read_state", None)
        if loader is not None:
            st = loader(spec_path)
            if st is not None:
                return st if isinstance(st, dict) else _as_dict(st)
    except Exception:  # noqa: BLE001 - the runtime package may not exist yet or may change
        pass
    for cand in state_path_candidates(spec_path):
        if cand.is_file():
            try:
                return json.loads(cand.read_text())
            except (OSError, ValueError):
                return None
    return None


def _as_dict(obj: Any) -> dict[str, Any] | None:
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    try:
        return asdict(obj)
    except TypeError:
        return None


def _state_entries(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Flatten {"models": {name: {...} | [{...}, ...]}} or {"models": [{"name": ...}]}."""
    if not state:
        return []
    models = state.get("models") or state.get("services") or {}
    out: list[dict[str, Any]] = []
    if isinstance(models, dict):
        for name, v in models.items():
            for i, e in enumerate(v if isinstance(v, list) else [v]):
                if isinstance(e, dict):
                    out.append({"name": name, "replica": e.get("replica", i), **e})
    elif isinstance(models, list):
        out = [e for e in models if isinstance(e, dict) and e.get("name")]
    return out


def _opt_int(v: Any) -> int | None:
    try:
        return None if v in (None, "") else int(v)
    except (TypeError, ValueError):
        return None


def _opt_float(v: Any) -> float | None:
    try:
        return None if v in (None, "") else float(v)
    except (TypeError, ValueError):
        return None


def targets_for(spec: StackSpec, state: dict[str, Any] | None) -> list[Target]:
    """One target per model replica. State file entries win over spec ports."""
    addr = {h.name: h.address for h in spec.hosts or []}
    entries = _state_entries(state)
    out: list[Target] = []
    for idx, m in enumerate(spec.models):
        base_port = m.port if m.port is not None else DEFAULT_PORT_BASE + idx
        mine = [e for e in entries if e.get("name") == m.name or e.get("model_name") == m.name]
        for r in range(m.replicas):
            e = next((x for x in mine if _opt_int(x.get("replica")) == r), None)
            if e is None and m.replicas == 1 and mine:
                e = mine[0]
            e = e or {}
            host = e.get("host") or m.host
            address = e.get("address") or addr.get(host or "", LOCAL)
            if address in ("0.0.0.0", "", None):
                address = LOCAL
            out.append(
                Target(
                    name=m.name,
                    replica=r,
                    address=address,
                    port=_opt_int(e.get("port")) or base_port + r,  # replicas: consecutive ports
                    pid=_opt_int(e.get("pid")),
                    container=e.get("container") or e.get("container_id") or e.get("container_name"),
                    recorded_state=e.get("state") or e.get("status"),
                    log_path=e.get("log_path") or e.get("log"),
                    pgid=_opt_int(e.get("pgid")),
                    create_time=_opt_float(e.get("create_time")),
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Collection


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def listening_pids(ports: set[int]) -> dict[int, int]:
    """port -> pid of the local process listening on it (spec-only operation: no state file)."""
    import psutil

    out: dict[int, int] = {}
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return out
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports and c.pid:
            out.setdefault(c.laddr.port, c.pid)
    return out


def container_pid(
    container: str, project: str | None = None, run: Callable[..., Any] | None = None
) -> int | None:
    """Host pid of a container's main process (docker runtime), None when docker cannot say.

    `container` is a compose service (with `project`) or a container name/id. NVML reports host
    pids, so this pid's process tree is what holds the model's GPU memory."""
    import shutil
    import subprocess

    if run is None:
        if shutil.which("docker") is None:
            return None
        run = subprocess.run
    try:
        ref = container
        if project:
            r = run(
                ["docker", "compose", "-p", project, "ps", "-q", container],
                capture_output=True,
                text=True,
                timeout=5,
            )
            ids = (r.stdout or "").split() if r.returncode == 0 else []
            ref = ids[0] if ids else container
        r = run(["docker", "inspect", "-f", "{{.State.Pid}}", ref], capture_output=True, text=True, timeout=5)
        pid = int((r.stdout or "0").strip() or 0) if r.returncode == 0 else 0
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return pid or None  # 0: the container is not running


def probe_health(client: httpx.Client, url: str, timeout: float = 2.0) -> tuple[int | None, str]:
    """(HTTP status, detail). Status None: no answer (refused, timeout)."""
    import httpx

    try:
        r = client.get(url, timeout=timeout)
        return r.status_code, f"/health {r.status_code}"
    except httpx.ConnectError:
        return None, "connection refused"
    except httpx.TimeoutException:
        return None, "no answer (timeout)"
    except httpx.HTTPError as e:
        return None, f"{type(e).__name__}"


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
    alive_fn: Callable[[int | None], bool] = pid_alive,
    timeout: float = 3.0,
    previous: str | None = None,
) -> ModelStatus:
    url = f"http://{t.address}:{t.port}" if t.port else None
    health, detail = probe_health(client, url + "/health", timeout) if url else (None, "no port")
    alive = alive_fn(t.pid)
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


def probe_proxy(
    client: httpx.Client, spec: StackSpec, timeout: float = 2.0, port: int | None = None
) -> ProxyStatus:
    """LiteLLM's unauthenticated health endpoints: /health/liveliness and /health/readiness.
    `port`: where `up` started it (state file), else the spec's proxy port."""
    host = spec.proxy.host if spec.proxy.host not in ("0.0.0.0", "::", "") else LOCAL
    url = f"http://{host}:{port or spec.proxy.port}"
    live, ld = probe_health(client, url + "/health/liveliness", timeout)
    if live is None:
        return ProxyStatus(url=url, state="down", detail=ld)
    ready, rd = probe_health(client, url + "/health/readiness", timeout)
    state: Literal["ready", "alive", "down"] = (
        "ready" if ready == 200 else ("alive" if live == 200 else "down")
    )
    return ProxyStatus(
        url=url,
        state=state,
        liveliness=live,
        readiness=ready,
        detail=f"liveliness {live}, readiness {ready or rd}",
    )


def load_plan(spec: StackSpec) -> tuple[Plan | None, str]:
    """The plan for the spec, or None and why ("no plan: ...") when the planner cannot give one."""
    try:
        from residency.planner.plan import plan_stack
    except ImportError as e:
        return None, f"no plan: planner unavailable ({e})"
    try:
        plan = plan_stack(spec)
    except Exception as e:  # noqa: BLE001 - status must work even when planning fails
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
    state: dict[str, Any] | None = None,
    client: httpx.Client | None = None,
    thresholds: Thresholds | None = None,
    tree_fn: Callable[[int], list[int]] = process_tree,
    alive_fn: Callable[[int | None], bool] = pid_alive,
    group_fn: Callable[[int, float | None], list[int]] = group_pids,
    discover_pids: bool = True,
    timeout: float = 3.0,
    previous: Ledger | None = None,
) -> Ledger:
    """Collect one ledger. `plan`/`plan_note` come from `load_plan` (called once per watch);
    `state` defaults to the `up` state file next to the spec; `previous` is the watch's last ledger."""
    import httpx

    own_client = client is None
    client = client or httpx.Client(timeout=timeout)
    try:
        if state is None:
            state = read_state(spec_path)
        targets = targets_for(spec, state)
        project = (state or {}).get("compose_project")
        for t in targets:  # docker runtime: the container's main process
            if t.pid is None and t.container:
                t.pid = container_pid(t.container, project)
        if discover_pids:  # no pid from a state file: the process listening on the model's port
            need = {t.port for t in targets if t.pid is None and t.port and t.address == LOCAL}
            if need:
                by_port = listening_pids(need)
                for t in targets:
                    if t.pid is None and t.port in by_port:
                        t.pid = by_port[t.port]

        devices = _safe(reader.devices, [])
        per_pid = _safe(reader.processes, {})
        memory_source = "rss" if reader.kind == "host" else "gpu"
        with ThreadPoolExecutor(max_workers=min(8, len(targets) + 1)) as ex:
            proxy_port = _opt_int(((state or {}).get("proxy") or {}).get("port"))
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
            _find_orphans(models, previous, per_pid, memory_source, alive_fn)
        _find_group_orphans(models, targets, per_pid, memory_source, group_fn)

        unified = _unified(spec, plan, reader, devices)
        host = _safe(reader.host, None) if (unified or reader.kind == "host") else None
        dev = spec.device
        device = DeviceStatus(
            reader=reader.kind,
            unified=unified,
            name=(dev.name or dev.preset) if dev else None,
            devices=devices,
            host=host,
            planned_total_gib=(
                round(sum(m.planned_gib for m in models if m.planned_gib), 3) if plan is not None else None
            ),
            spec_total_gib=dev.total_gib if dev else None,
        )
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
        )
        ledger.warnings = assess(ledger, thresholds or Thresholds())
        return ledger
    finally:
        if own_client:
            client.close()


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


def _gib(b: int | float | None) -> str:
    return "?" if b is None else f"{b / GiB:.2f} GiB"


def assess(ledger: Ledger, th: Thresholds) -> list[Warning]:
    """Drift warnings from a collected ledger; reads nothing else."""
    from residency.spec import version_key

    w: list[Warning] = []
    for m in ledger.models:
        who = m.name if m.replica == 0 else f"{m.name}#{m.replica}"
        if m.state == "down":
            w.append(Warning("down", f"{who} is down at {m.url or '?'} ({m.detail})", m.name))
            if m.orphan_pids:
                pids = ", ".join(map(str, m.orphan_pids))
                if m.pgid is not None:  # started by `up`: down stops what is left of its process group
                    fix = f"run `residency down {ledger.spec}`" if ledger.spec else "run `residency down`"
                else:
                    fix = f"stop them (kill {' '.join(map(str, m.orphan_pids))}) before restarting it"
                w.append(
                    Warning(
                        "orphan",
                        f"{who} is down but its engine processes (pids {pids}) still hold "
                        f"{_gib(m.memory_bytes)}; {fix}",
                        m.name,
                    )
                )
            continue
        if m.state == "starting":
            w.append(Warning("starting", f"{who} is starting ({m.detail})", m.name, level="info"))
        if m.drift_pct is not None and m.planned_gib is not None and m.memory_gib is not None:
            over = m.memory_gib - m.planned_gib
            if m.drift_pct > th.drift_pct and over > th.drift_floor_gib:
                w.append(
                    Warning(
                        "drift",
                        f"{who} holds {m.memory_gib:.2f} GiB, {m.drift_pct:.0f}% over its planned "
                        f"{m.planned_gib:.2f} GiB: the plan underestimates it; run `residency calibrate` on "
                        "its startup log so the next plan uses measured figures",
                        m.name,
                    )
                )
        if m.kv_cache_usage is not None and m.kv_cache_usage >= th.kv_high:
            w.append(
                Warning(
                    "kv_high",
                    f"{who} KV cache {m.kv_cache_usage:.0%} full: new requests wait and running ones may be "
                    "preempted; give it more KV (gpu_memory_utilization / kv_cache_memory_bytes) or lower max_num_seqs",
                    m.name,
                )
            )
        if m.requests_waiting and m.requests_waiting > 0 and (m.kv_cache_usage or 0) >= th.kv_high:
            w.append(Warning("queue", f"{who} has {m.requests_waiting:.0f} requests waiting", m.name))
        if m.state == "ready" and m.served_names and m.name not in m.served_names:
            w.append(
                Warning(
                    "served_name",
                    f"{who}: the server at {m.url} serves {', '.join(m.served_names)}, not {m.name!r} "
                    "(another process on its port, or --served-model-name differs)",
                    m.name,
                    level="info",
                )
            )
    if ledger.proxy is not None and ledger.proxy.state != "ready":
        w.append(
            Warning(
                "proxy",
                f"LiteLLM proxy at {ledger.proxy.url} is {ledger.proxy.state} ({ledger.proxy.detail})",
            )
        )
    for pid, b in sorted(ledger.stray.items()):
        w.append(
            Warning(
                "stray_process",
                f"pid {pid} holds {_gib(b)} of GPU memory and is not one of this stack's models "
                "(a leftover server keeps memory the plan counts as free)",
            )
        )
    d = ledger.device
    h = d.host
    if d.unified and h is not None and h.total_bytes > 0:
        # the CPU backend sizes its KV from VLLM_CPU_KVCACHE_SPACE, not from free memory: GPUs only
        if d.reader != "host" and h.page_cache_bytes > th.page_cache_frac * h.total_bytes:
            old = version_key(ledger.vllm_version)[:3] <= (0, 11, 0)
            how = (
                f"vLLM {ledger.vllm_version} checks cudaMemGetInfo free, which counts page cache as used, at startup"
                if old
                else f"vLLM {ledger.vllm_version} counts it as free (MemAvailable), but CUDA allocations on unified "
                "memory can still fail before the kernel reclaims it"
            )
            w.append(
                Warning(
                    "page_cache",
                    f"page cache holds {_gib(h.page_cache_bytes)} of {_gib(h.total_bytes)} unified memory; {how}: "
                    "drop caches before starting another model (sync; echo 3 | sudo tee /proc/sys/vm/drop_caches)",
                    level="warn" if old else "info",
                )
            )
        if h.available_bytes < th.available_low_frac * h.total_bytes:
            w.append(
                Warning(
                    "available_low",
                    f"MemAvailable is {_gib(h.available_bytes)} of {_gib(h.total_bytes)}: the next model will not "
                    "start and running ones risk the OOM killer",
                )
            )
    if ledger.plan_note.startswith("no plan"):
        w.append(Warning("plan", ledger.plan_note, level="info"))
    return w
