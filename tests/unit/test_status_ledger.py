"""The residency ledger: state classification, memory attribution, drift warnings (no servers)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import httpx
import pytest

from residency.errors import StateFileError
from residency.gpu import HostMemory, RecordedReader
from residency.planner.result import DevicePlan, ModelPlan, Plan
from residency.runtime.state import ProcEntry, StackState
from residency.spec import parse_spec
from residency.status.ledger import (
    Ledger,
    Thresholds,
    assess,
    build_ledger,
    classify,
    load_plan,
    read_state,
    targets_for,
)
from residency.status.watch import iter_ledgers
from residency.units import GiB

FIX = Path(__file__).parent.parent / "fixtures"
MiB = 1 << 20


def _metrics(kv: float, running: int = 0, waiting: int = 0, name: str = "m") -> str:
    return (
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f'vllm:kv_cache_usage_perc{{engine="0",model_name="{name}"}} {kv}\n'
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{engine="0",model_name="{name}"}} {running}\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{engine="0",model_name="{name}"}} {waiting}\n'
    )


def _client(routes: dict[tuple[int, str], httpx.Response | type[Exception]]) -> httpx.Client:
    """MockTransport: (port, path) -> response, or an exception class to raise. Default: refused."""

    def handler(req: httpx.Request) -> httpx.Response:
        r = routes.get((req.url.port, req.url.path))
        if r is None:
            raise httpx.ConnectError("refused", request=req)
        if isinstance(r, type):
            raise r("boom", request=req)
        return r

    return httpx.Client(transport=httpx.MockTransport(handler))


def _mp(name: str, footprint: float, tp: int = 1) -> ModelPlan:
    z = dict(
        requested_gib=0.0,
        free_at_start_gib=0.0,
        weights_gib=0.0,
        activation_gib=0.0,
        non_torch_gib=0.0,
        cudagraph_gib=0.0,
        kv_cache_gib=0.0,
        kv_cache_tokens=0,
        max_concurrency=0.0,
        block_size=16,
    )
    return ModelPlan(
        name=name,
        model="x",
        gpu_memory_utilization=0.45,
        footprint_gib=footprint,
        verdict="ok",
        tensor_parallel_size=tp,
        **z,
    )


def _plan(*mps: ModelPlan, unified: bool = False) -> Plan:
    return Plan(
        vllm_version="0.11.0",
        device=DevicePlan(name="d", total_gib=79.65, unified=unified, used_gib=0, budget_gib=75.0),
        fits=True,
        utilization_sum=0.9,
        launch_order=[m.name for m in mps],
        models=list(mps),
    )


def _spec(unified: bool, version: str = "0.11.0", **dev):
    return parse_spec(
        {
            "vllm_version": version,
            "device": {"name": "dev", "total_gib": 79.65, "unified": unified, **dev},
            "models": [
                {"name": "qwen", "model": "Qwen/Qwen3-8B", "port": 8001},
                {"name": "llama", "model": "meta-llama/Llama-3.2-3B-Instruct", "port": 8002},
            ],
            "proxy": {"port": 4000},
        }
    )


def _fixture_tree(name: str):
    tree = json.loads((FIX / "nvml" / name).read_text())["process_tree"]
    return lambda pid: tree.get(str(pid), [])


def _state(*entries: dict) -> StackState:
    """`up`'s typed state with these vLLM entries (name, pid, port, ...)."""
    return StackState(spec_path="stack.yaml", runtime="process", entries=[ProcEntry(**e) for e in entries])


STATE_H100 = _state(
    {"name": "qwen", "pid": 31415, "port": 8001, "state": "ready"},
    {"name": "llama", "pid": 31420, "port": 8002, "state": "ready"},
)
HEALTHY = {
    (8001, "/health"): httpx.Response(200),
    (8002, "/health"): httpx.Response(200),
    (8001, "/metrics"): httpx.Response(200, text=_metrics(0.25, 2, 0, "qwen")),
    (8002, "/metrics"): httpx.Response(200, text=_metrics(0.95, 8, 3, "llama")),
    (4000, "/health/liveliness"): httpx.Response(200, json="I'm alive!"),
    (4000, "/health/readiness"): httpx.Response(200, json={"status": "healthy"}),
}


def test_h100_ledger_memory_plan_drift_and_kv():
    # plan: qwen 36.5 GiB, llama 30.0 GiB. NVML: qwen's EngineCore 37486 MiB = 36.607 GiB (+0.3%),
    # llama's 36988 MiB = 36.121 GiB: (36.121 - 30) / 30 = +20.4% > 10% -> drift warning.
    led = build_ledger(
        _spec(False),
        RecordedReader(FIX / "nvml" / "h100-two-vllm.json"),
        state=STATE_H100,
        plan=_plan(_mp("qwen", 36.5), _mp("llama", 30.0)),
        client=_client(HEALTHY),
        tree_fn=_fixture_tree("h100-two-vllm.json"),
        alive_fn=lambda pid: True,
        discover_pids=False,
    )
    q, ll = led.models
    assert (q.state, ll.state) == ("ready", "ready") and led.all_ready
    assert q.pids == [31415, 31502] and q.memory_bytes == 37486 * MiB and q.memory_source == "gpu"
    assert ll.memory_bytes == 36988 * MiB
    assert q.drift_pct == pytest.approx((37486 / 1024 - 36.5) / 36.5 * 100)
    assert ll.drift_pct == pytest.approx(20.4, abs=0.05)
    assert (q.kv_cache_usage, ll.kv_cache_usage) == (0.25, 0.95)
    assert (ll.requests_running, ll.requests_waiting) == (8, 3)
    assert led.proxy is not None and led.proxy.state == "ready"
    assert not led.device.unified and led.device.host is None  # discrete GPU: no host section
    assert led.device.devices[0].total_bytes == 81559 * MiB
    assert led.stray == {}
    kinds = sorted((w.kind, w.model) for w in led.warnings)
    assert kinds == [("drift", "llama"), ("kv_high", "llama"), ("queue", "llama")]
    d = json.loads(led.to_json())
    assert d["schema_version"] == 1 and d["models"][1]["drift_pct"] == 20.4
    assert d["models"][0]["memory_gib"] == pytest.approx(36.607, abs=0.001)


def test_gb10_unified_uses_process_memory_and_warns_on_page_cache():
    state = _state({"name": "qwen", "pid": 4650, "port": 8001}, {"name": "llama", "pid": 4655, "port": 8002})
    led = build_ledger(
        _spec(True, "0.11.0"),
        RecordedReader(FIX / "nvml" / "gb10-two-vllm.json"),
        state=state,
        client=_client(HEALTHY),
        tree_fn=_fixture_tree("gb10-two-vllm.json"),
        alive_fn=lambda pid: True,
        discover_pids=False,
        plan_note="no plan: test",
    )
    assert [m.memory_bytes for m in led.models] == [48 * GiB, 30 * GiB]
    assert led.device.unified and led.device.devices[0].total_bytes is None
    assert led.device.host is not None and led.device.host.page_cache_bytes == 24 * GiB
    pc = [w for w in led.warnings if w.kind == "page_cache"]
    # 24 GiB of 119.67 GiB is 20% > 10%; on 0.11.0 the startup check ignores page cache -> warn
    assert len(pc) == 1 and pc[0].level == "warn" and "cudaMemGetInfo" in pc[0].message
    assert any(w.kind == "plan" and w.level == "info" for w in led.warnings)
    assert all(m.planned_gib is None and m.drift_pct is None for m in led.models)


def test_page_cache_is_info_on_versions_using_memavailable():
    led = build_ledger(
        _spec(True, "0.33.0"),
        RecordedReader(FIX / "nvml" / "gb10-two-vllm.json"),
        state=None,
        client=_client({}),
        alive_fn=lambda pid: False,
        discover_pids=False,
    )
    (pc,) = [w for w in led.warnings if w.kind == "page_cache"]
    assert pc.level == "info" and "MemAvailable" in pc.message


@pytest.mark.parametrize(
    ("health", "detail", "alive", "recorded", "want"),
    [
        (200, "/health 200", False, None, "ready"),
        (None, "no answer (timeout)", True, "starting", "starting"),  # vLLM binds early, answers once up
        (None, "connection refused", True, None, "starting"),
        (None, "connection refused", False, "starting", "down"),  # state file stale: process gone
        (None, "connection refused", False, None, "down"),
        (503, "/health 503", True, "ready", "down"),  # EngineDeadError: API process lingers
        (None, "no answer (timeout)", True, "ready", "ready"),  # up saw it ready: busy, not starting
        (None, "connection refused", True, "ready", "starting"),  # refused is not busy: restarting
    ],
)
def test_classify(health, detail, alive, recorded, want):
    assert classify(health, detail, alive, recorded)[0] == want


def test_classify_uses_the_previous_watch_state():
    assert classify(None, "no answer (timeout)", True, None, "ready") == (
        "ready",
        "busy: /health slow to answer",
    )
    assert classify(None, "no answer (timeout)", True, None, "starting")[0] == "starting"
    assert classify(None, "no answer (timeout)", False, None, "ready")[0] == "down"  # process gone


def test_down_and_starting_models_and_stray_gpu_process():
    routes = dict(HEALTHY)
    routes[(8001, "/health")] = httpx.TimeoutException  # qwen: alive, not answering yet
    del routes[(8002, "/health")]  # llama: refused, its pid is gone
    data = json.loads((FIX / "nvml" / "h100-two-vllm.json").read_text())
    data["devices"][0]["compute_processes"].append({"pid": 999, "usedGpuMemory": 512 * MiB})
    state = STATE_H100.model_copy(deep=True)
    state.entry("qwen").state = "starting"  # (a "ready" one would count as busy, not starting)
    led = build_ledger(
        _spec(False),
        RecordedReader(data),
        state=state,
        client=_client(routes),
        tree_fn=_fixture_tree("h100-two-vllm.json"),
        alive_fn=lambda pid: pid == 31415,
        discover_pids=False,
    )
    q, ll = led.models
    assert q.state == "starting" and q.memory_bytes == 37486 * MiB and q.kv_cache_usage is None
    assert ll.state == "down" and ll.memory_bytes is None and ll.pids == []
    assert not led.all_ready
    # llama's EngineCore 31588 still holds memory while llama is down -> stray, like pid 999
    assert set(led.stray) == {31588, 999}
    kinds = sorted(w.kind for w in led.warnings)
    assert kinds == ["down", "plan", "starting", "stray_process", "stray_process"]  # plan: "no plan" info


def test_proxy_alive_but_not_ready_and_down():
    spec = _spec(False)
    routes = {
        (4000, "/health/liveliness"): httpx.Response(200),
        (4000, "/health/readiness"): httpx.Response(503),
    }
    rd = RecordedReader(FIX / "nvml" / "h100-two-vllm.json")
    led = build_ledger(
        spec, rd, state=None, client=_client(routes), alive_fn=lambda p: False, discover_pids=False
    )
    assert led.proxy.state == "alive" and led.proxy.readiness == 503
    led = build_ledger(spec, rd, state=None, client=_client({}), alive_fn=lambda p: False, discover_pids=False)
    assert led.proxy.state == "down"
    assert any(w.kind == "proxy" for w in led.warnings)


def _ledger_with(
    memory_gib: float | None, planned: float | None, unified=False, host=None, kv=None
) -> Ledger:
    from residency.status.ledger import DeviceStatus, ModelStatus

    m = ModelStatus(
        name="a",
        replica=0,
        url="http://127.0.0.1:1",
        state="ready",
        detail="",
        memory_bytes=None if memory_gib is None else int(memory_gib * GiB),
        planned_gib=planned,
        kv_cache_usage=kv,
    )
    dev = DeviceStatus(reader="host", unified=unified, name=None, devices=[], host=host)
    return Ledger(
        spec="s", taken_at=0, vllm_version="0.33.0", models=[m], proxy=None, device=dev, plan_note="plan ok"
    )


@pytest.mark.parametrize(
    ("actual", "planned", "warn"),
    [
        (11.2, 10.0, True),  # +12% and +1.2 GiB
        (10.9, 10.0, False),  # +9%: within 10%
        (1.3, 1.0, True),  # +30%, +0.3 GiB > 0.25 floor
        (1.2, 1.0, False),  # +20% but only 0.2 GiB: toy-model noise
        (8.0, 10.0, False),  # under plan is not drift
        (None, 10.0, False),  # no reading
        (11.2, None, False),  # no plan
    ],
)
def test_drift_rule(actual, planned, warn):
    got = [w for w in assess(_ledger_with(actual, planned), Thresholds()) if w.kind == "drift"]
    assert bool(got) is warn


def test_drift_threshold_is_configurable_and_kv_high_boundary():
    assert assess(_ledger_with(10.9, 10.0), Thresholds(drift_pct=5.0))[0].kind == "drift"
    assert [w.kind for w in assess(_ledger_with(None, None, kv=0.90), Thresholds())] == ["kv_high"]
    assert assess(_ledger_with(None, None, kv=0.89), Thresholds()) == []


def test_available_low_on_unified_memory():
    # 4 GiB available of 100 GiB = 4% < 5%; page cache 5 GiB = 5% < 10%: only available_low
    host = HostMemory(
        total_bytes=100 * GiB, available_bytes=4 * GiB, free_bytes=1 * GiB, page_cache_bytes=5 * GiB
    )
    assert [w.kind for w in assess(_ledger_with(None, None, unified=True, host=host), Thresholds())] == [
        "available_low"
    ]
    # the same host on a discrete-GPU box is not the device: no host warnings
    assert assess(_ledger_with(None, None, unified=False, host=host), Thresholds()) == []


def test_planned_footprint_counts_tp_ranks():
    led = build_ledger(
        _spec(False),
        RecordedReader(FIX / "nvml" / "h100-two-vllm.json"),
        state=None,
        plan=_plan(_mp("qwen", 20.0, tp=2), _mp("llama", 30.0)),
        client=_client({}),
        alive_fn=lambda p: False,
        discover_pids=False,
    )
    assert [m.planned_gib for m in led.models] == [40.0, 30.0]  # 20 GiB per GPU x TP 2
    assert led.device.planned_total_gib == 70.0


def test_targets_from_spec_and_state():
    spec = parse_spec(
        {
            "device": {"total_gib": 24, "unified": True, "count": 2},
            "models": [{"name": "a", "model": "x"}, {"name": "b", "model": "y", "port": 9000, "replicas": 2}],
        }
    )
    t = targets_for(spec, None)
    # a has no port: 8000 + index 0; b's replicas take consecutive ports
    assert [(x.name, x.replica, x.port) for x in t] == [("a", 0, 8000), ("b", 0, 9000), ("b", 1, 9001)]
    st = _state(
        {"name": "b", "pid": 11, "port": 9100, "state": "ready"},
        {"name": "b-1", "model": "b", "replica": 1, "pid": 12, "port": 9101},
        {"name": "a", "pid": 10, "service": "res-a", "log_path": "/tmp/a.log"},
    )
    t = targets_for(spec, st)
    assert [(x.name, x.replica, x.port, x.pid) for x in t] == [
        ("a", 0, 8000, 10),
        ("b", 0, 9100, 11),
        ("b", 1, 9101, 12),
    ]
    assert t[0].container == "res-a" and t[0].log_path == "/tmp/a.log" and t[1].recorded_state == "ready"


def test_read_state_next_to_spec(tmp_path):
    spec = tmp_path / "stack.yaml"
    spec.write_text("models: []\n")
    assert read_state(spec) is None
    p = tmp_path / ".residency" / "stack" / "state.json"
    p.parent.mkdir(parents=True)
    p.write_text(_state({"name": "a", "pid": 5}).model_dump_json())
    assert read_state(spec).entry("a").pid == 5
    # not guessed around: a state file of another shape is one line with the fix (#13.14)
    for bad in ("{not json", json.dumps({"models": {"a": {"pid": 5}}})):
        p.write_text(bad)
        with pytest.raises(StateFileError, match="not a residency state file .*delete it"):
            read_state(spec)


def test_load_plan_tolerates_a_spec_the_planner_refuses(monkeypatch):
    from residency.errors import UnknownModelError

    spec = _spec(False)
    mod = types.ModuleType("residency.planner.plan")

    def boom(s, **kw):
        raise UnknownModelError("models[0].model", "cannot resolve model\nsecond line")

    mod.plan_stack = boom
    monkeypatch.setitem(sys.modules, "residency.planner.plan", mod)
    plan, note = load_plan(spec)
    assert plan is None and note == "no plan: UnknownModelError: models[0].model: cannot resolve model"
    mod.plan_stack = lambda s, **kw: _plan(_mp("qwen", 1.0), _mp("llama", 1.0))
    plan, note = load_plan(spec)
    assert plan is not None and note == "plan ok"

    def bug(s, **kw):
        raise ValueError("a planner bug")

    mod.plan_stack = bug  # a bug is not hidden behind "no plan"
    with pytest.raises(ValueError, match="a planner bug"):
        load_plan(spec)


def test_watch_loop_survives_everything_down():
    sleeps: list[float] = []
    spec = parse_spec(
        {
            "device": {"total_gib": 24, "unified": True},
            "models": [{"name": "a", "model": "x", "port": 1}],
            "proxy": {"port": 2},
        }
    )
    ledgers = list(iter_ledgers(spec, None, interval=0.5, count=3, use_plan=False, sleep=sleeps.append))
    assert len(ledgers) == 3 and all(led.models[0].state == "down" for led in ledgers)
    assert len(sleeps) == 2 and all(0 <= s <= 0.5 for s in sleeps)


def test_reads_the_state_file_up_writes(tmp_path):
    """Contract with residency.runtime.state: what `up` saves is what status targets."""
    from residency.runtime.state import ProcEntry, StackState, StateStore, state_dir

    spec_path = tmp_path / "stack.yaml"
    spec_path.write_text("")
    st = StackState(spec_path=str(spec_path), runtime="process")
    st.put(ProcEntry(name="qwen", model="qwen", pid=31415, port=18001, state="ready", log_path="/l/q.log"))
    st.put(ProcEntry(name="llama", model="llama", pid=31420, port=18002, state="starting"))
    st.put(ProcEntry(name="litellm", kind="proxy", pid=31500, port=14000, state="ready"))
    StateStore(state_dir(spec_path)).save(st)

    state = read_state(spec_path)
    t = targets_for(_spec(False), state)
    assert [(x.name, x.pid, x.port, x.recorded_state) for x in t] == [
        ("qwen", 31415, 18001, "ready"),
        ("llama", 31420, 18002, "starting"),
    ]
    assert t[0].log_path == "/l/q.log"
    routes = {
        (14000, "/health/liveliness"): httpx.Response(200),
        (14000, "/health/readiness"): httpx.Response(200),
    }
    led = build_ledger(
        _spec(False),
        RecordedReader(FIX / "nvml" / "h100-two-vllm.json"),
        spec_path=spec_path,
        client=_client(routes),
        alive_fn=lambda p: False,
        discover_pids=False,
    )
    assert (
        led.proxy.url == "http://127.0.0.1:14000" and led.proxy.state == "ready"
    )  # port from the state file
    assert [m.url for m in led.models] == ["http://127.0.0.1:18001", "http://127.0.0.1:18002"]


def test_orphaned_engine_processes_of_a_down_model():
    """Watch: the API server was killed, its EngineCore (31502) lives on and keeps 36.6 GiB."""
    reader = RecordedReader(FIX / "nvml" / "h100-two-vllm.json")
    tree = _fixture_tree("h100-two-vllm.json")
    kw = dict(state=STATE_H100, tree_fn=tree, discover_pids=False)
    first = build_ledger(_spec(False), reader, client=_client(HEALTHY), alive_fn=lambda p: True, **kw)
    assert first.models[0].pids == [31415, 31502]
    routes = {k: v for k, v in HEALTHY.items() if k[0] != 8001}
    second = build_ledger(
        _spec(False), reader, client=_client(routes), alive_fn=lambda p: p != 31415, previous=first, **kw
    )
    q = second.models[0]
    assert q.state == "down" and q.orphan_pids == [31502] and q.memory_bytes == 37486 * MiB
    assert second.stray == {}  # counted as the model's orphan, not as a stranger
    (orphan,) = [w for w in second.warnings if w.kind == "orphan"]
    assert "31502" in orphan.message and "36.61 GiB" in orphan.message


def test_container_pid_through_compose_labels():
    from subprocess import CompletedProcess

    from residency.runtime.docker import find_cmd
    from residency.status.ledger import container_pid

    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        if cmd[:2] == ["docker", "ps"]:
            return CompletedProcess(cmd, 0, stdout="3f2a9c\n", stderr="")
        return CompletedProcess(cmd, 0, stdout="4242\n" if cmd[-1] == "3f2a9c" else "0\n", stderr="")

    assert container_pid("qwen", "stack", run=run) == 4242
    assert calls == [
        find_cmd("stack", "qwen"),
        ["docker", "inspect", "-f", "{{.State.Pid}}", "3f2a9c"],
    ]
    assert container_pid("stopped-one", None, run=run) is None  # State.Pid 0: not running

    def broken(cmd, **kw):
        raise FileNotFoundError("docker")

    assert container_pid("qwen", "stack", run=broken) is None


def test_one_off_status_finds_engine_processes_left_in_ups_process_group():
    """No --watch, no previous ledger: the API server (31415) was killed on its own; `up` recorded
    its process group, in which the EngineCore (31502) still holds 37486 MiB = 36.61 GiB."""
    reader = RecordedReader(FIX / "nvml" / "h100-two-vllm.json")
    state = STATE_H100.model_copy(deep=True)
    state.entry("qwen").pgid, state.entry("qwen").create_time = 31415, 1700000000.0
    asked = []

    def group_fn(pgid, created_after):
        asked.append((pgid, created_after))
        return [31502] if pgid == 31415 else []

    routes = {k: v for k, v in HEALTHY.items() if k[0] != 8001}
    led = build_ledger(
        _spec(False),
        reader,
        spec_path="stack.yaml",
        state=state,
        client=_client(routes),
        tree_fn=_fixture_tree("h100-two-vllm.json"),
        alive_fn=lambda p: p not in (31415,),
        group_fn=group_fn,
        discover_pids=False,
    )
    q = led.models[0]
    assert asked == [(31415, 1700000000.0)]  # only the down model's recorded group is looked up
    assert q.state == "down" and q.orphan_pids == [31502] and q.memory_bytes == 37486 * MiB
    assert led.stray == {}
    (orphan,) = [w for w in led.warnings if w.kind == "orphan"]
    assert orphan.message == (
        "qwen is down but its engine processes (pids 31502) still hold 36.61 GiB; run `residency down stack.yaml`"
    )
    # a healthy model with a recorded group is not looked up, and an empty group warns nothing
    led2 = build_ledger(
        _spec(False),
        reader,
        state=state,
        client=_client(HEALTHY),
        tree_fn=_fixture_tree("h100-two-vllm.json"),
        alive_fn=lambda p: True,
        group_fn=lambda *a: pytest.fail("looked up a ready model's group"),
        discover_pids=False,
    )
    assert not [w for w in led2.warnings if w.kind == "orphan"]


def test_up_state_carries_process_group_to_status(tmp_path):
    from residency.runtime.state import StateStore

    spec = tmp_path / "stack.yaml"
    spec.write_text("")
    store = StateStore(tmp_path / ".residency" / "stack")
    st = StackState(spec_path=str(spec), runtime="process")
    st.put(ProcEntry(name="qwen", model="qwen", pid=31415, pgid=31415, create_time=1700000000.5, port=8001))
    store.save(st)
    d = read_state(spec)
    assert d.models()[0].pgid == 31415 and d.models()[0].create_time == 1700000000.5
    (t, _) = targets_for(_spec(False), d)
    assert t.pgid == 31415 and t.create_time == 1700000000.5 and t.pid == 31415


def test_group_pids_finds_a_child_that_outlived_its_leader():
    """A real process group: the leader exits, its sleeping child (re-parented) is still found."""
    import subprocess
    import time

    from residency.gpu import group_pids

    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen(['sleep', '30']); print(p.pid)"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = int(leader.stdout.readline())
    leader.wait(timeout=10)
    try:
        import psutil

        ct = psutil.Process(child).create_time()
        assert group_pids(leader.pid) == [child]
        assert group_pids(leader.pid, created_after=ct) == [child]
        # a group id recorded for a leader created later than everything in it: a reused id, not ours
        assert group_pids(leader.pid, created_after=time.time() + 60) == []
    finally:
        import os
        import signal

        os.kill(child, signal.SIGKILL)
