"""up/down on the process runtime against fake `vllm` and `litellm` executables (tiny Python HTTP
servers that print vLLM's log lines), so the orchestration is checked in seconds. The real
servers are exercised in tests/e2e/test_up_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from residency.planner.result import DevicePlan, ModelPlan, Plan
from residency.runtime.bringup import UpFailed, UpOptions, up_stack
from residency.runtime.down import down_stack
from residency.runtime.memory import Settle
from residency.runtime.process import ProcessBackend, free_port
from residency.runtime.state import LockedError, StateStore, read_state
from residency.spec import load_spec

FAKE_VLLM = textwrap.dedent(
    """\
    #!{python}
    # Fake `vllm serve`: prints vLLM 0.32 CPU log lines, serves /health, keeps a child like EngineCore.
    import http.server, json, os, subprocess, sys, time
    a = sys.argv[2:]
    port = int(a[a.index("--port") + 1]); name = a[a.index("--served-model-name") + 1]
    mml = int(a[a.index("--max-model-len") + 1]) if "--max-model-len" in a else 2048
    print("INFO non-default args: " + json.dumps({{"model": a[0], "max_model_len": mml}}), flush=True)
    if mml > 4096:
        print(f"ValueError: User-specified max_model_len ({{mml}}) is greater than the derived max_model_len "
              f"(max_position_embeddings=4096 or model_max_length=None in model's config.json).", flush=True)
        sys.exit(1)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # the engine core
    with open(os.environ["FAKE_PIDS"], "a") as f:
        f.write(f"{{os.getpid()}} {{child.pid}}\\n")
    print("INFO Starting to load model " + a[0], flush=True)
    time.sleep(float(os.environ.get("FAKE_DELAY", "0.3")))
    print("INFO Model loading took 0.01 GiB memory and 0.3 seconds", flush=True)
    print("INFO Explicitly set (0.25/23.42) GiB for KV cache on node 0.", flush=True)
    print("INFO GPU KV cache size: 4,096 tokens", flush=True)
    print("INFO init engine (profile, create kv cache, warmup model) took 0.5 seconds", flush=True)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404); self.end_headers()
        def log_message(self, *x): pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)

FAKE_LITELLM = textwrap.dedent(
    """\
    #!{python}
    # Fake LiteLLM proxy: /health/readiness, and /v1/models behind the master key from the environment.
    import http.server, os, sys, yaml
    a = sys.argv[1:]
    port = int(a[a.index("--port") + 1]); cfg = yaml.safe_load(open(a[a.index("--config") + 1]))
    key = os.environ["LITELLM_MASTER_KEY"]
    assert cfg["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP") == "True"
    names = [m["model_name"] for m in cfg["model_list"]]
    print("proxy up with", names, flush=True)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health/readiness":
                self.send_response(200); self.end_headers(); return
            ok = self.headers.get("Authorization") == "Bearer " + key
            self.send_response(200 if ok and self.path == "/v1/models" else 401); self.end_headers()
        def log_message(self, *x): pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


def _exe(path: Path, text: str) -> str:
    path.write_text(text.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    pids = tmp_path / "pids.txt"
    pids.touch()
    monkeypatch.setenv("FAKE_PIDS", str(pids))
    yield _exe(tmp_path / "vllm", FAKE_VLLM), _exe(tmp_path / "litellm", FAKE_LITELLM), pids
    # a failed assertion must not leave fake servers behind: kill every group this test started
    st = StateStore(tmp_path / "state").load()
    leaders = [e.pid for e in (st.entries if st else []) if e.pid]
    leaders += [int(line.split()[0]) for line in pids.read_text().splitlines() if line.strip()]
    for pid in leaders:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _spec(tmp_path: Path, second_mml: int = 2048) -> Path:
    for d in ("toy-a", "toy-b"):
        (tmp_path / d).mkdir(exist_ok=True)
    spec = {
        "vllm_version": "0.32.0",
        "device": {"name": "cpu", "total_gib": 23.42, "unified": True},
        "models": [
            {"name": "alpha", "model": "./toy-a", "max_model_len": 2048, "tool_call_parser": "hermes"},
            {"name": "beta", "model": "./toy-b", "max_model_len": second_mml},
        ],
        "proxy": {"host": "127.0.0.1", "port": free_port()},
    }
    p = tmp_path / "stack.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


def _plan(spec) -> Plan:
    def mp(m):
        # tiny CPU footprint (0.5 GiB) so the MemAvailable check passes on any test box
        return ModelPlan(
            name=m.name, model=m.model, gpu_memory_utilization=0.05, requested_gib=1.17, free_at_start_gib=20.0,
            weights_gib=0.01, activation_gib=0.0, non_torch_gib=0.1, cudagraph_gib=0.0, kv_cache_gib=0.25,
            kv_cache_tokens=4096, max_concurrency=2.0, block_size=128, footprint_gib=0.5, verdict="ok",
            max_model_len=m.max_model_len, kv_cache_memory_bytes=268435456,
        )  # fmt: skip

    return Plan(
        vllm_version="0.32.0",
        device=DevicePlan(name="cpu", total_gib=23.42, unified=True, used_gib=0.0, budget_gib=22.0),
        fits=True,
        utilization_sum=0.1,
        launch_order=[m.name for m in spec.models],
        models=[mp(m) for m in spec.models],
    )


class _Console:
    def __init__(self):
        self.lines: list[str] = []

    def print(self, *a, **k):
        from rich.console import Console

        c = Console(width=200, record=True, file=open(os.devnull, "w"))
        c.print(*a, **k)
        self.lines.append(c.export_text())

    def status(self, text):
        class _S:
            def __enter__(s):
                return s

            def __exit__(s, *x):
                return False

            def update(s, t):
                pass

        return _S()

    @property
    def text(self):
        return "".join(self.lines)


def _run_up(tmp_path, spec_path, vllm, litellm, rollback=False):
    spec = load_spec(spec_path)
    store = StateStore(tmp_path / "state")
    backend = ProcessBackend(
        spec, spec_path.parent, store, vllm=vllm, litellm=litellm, master_key="sk-test-key-123"
    )
    opts = UpOptions(
        rollback=rollback, cpu=True, poll_s=0.2, settle=Settle(window_s=0.6), grace_s=5, timeout_s=30
    )
    console = _Console()
    try:
        return up_stack(spec_path, spec, _plan(spec), backend, store, opts, console), store, console
    except UpFailed as e:
        e.console = console
        e.store = store
        raise


def _all_pids(pids_file: Path) -> list[int]:
    return [int(x) for line in pids_file.read_text().split("\n") if line for x in line.split()]


def test_up_then_down_process_runtime(tmp_path, fakes):
    vllm, litellm, pids_file = fakes
    spec_path = _spec(tmp_path)
    started, store, console = _run_up(tmp_path, spec_path, vllm, litellm)
    assert [s.member.key for s in started] == ["alpha", "beta"]
    # one at a time: beta's fake server wrote its pids only after alpha's were recorded
    lines = pids_file.read_text().split()
    assert len(lines) == 4
    st = store.load()
    assert [e.name for e in st.entries] == ["alpha", "beta", "litellm"]
    assert all(e.state == "ready" for e in st.entries)
    alpha = st.entry("alpha")
    assert "--enable-auto-tool-choice" in alpha.command and alpha.command[1] == "serve"
    assert alpha.command[2] == str((tmp_path / "toy-a").resolve())  # local dir resolved against the spec
    # logged KV beside the plan's: 0.25 GiB and 4096 tokens from the fake log lines
    assert started[0].kv_gib == pytest.approx(0.25) and started[0].kv_tokens == 4096
    assert "KV cache logged 0.25 GiB / planned 0.25 GiB" in console.text
    # the proxy got the key through the environment, and its config points at the real ports
    cfg = yaml.safe_load((store.dir / "litellm.yaml").read_text())
    assert [m["litellm_params"]["api_base"] for m in cfg["model_list"]] == [
        f"http://127.0.0.1:{st.entry('alpha').port}/v1",
        f"http://127.0.0.1:{st.entry('beta').port}/v1",
    ]
    assert "sk-test-key-123" not in console.text
    assert "sk-test-key-123" not in (store.dir / "state.json").read_text()
    # status can read the state
    d = read_state(spec_path, tmp_path / "state")
    assert [m.model_name for m in d.models()] == ["alpha", "beta"] and d.proxy().port == st.entry(
        "litellm"
    ).port

    # a second `up` keeps what runs
    started2, _, console2 = _run_up(tmp_path, spec_path, vllm, litellm)
    assert all(s.reused for s in started2)
    assert "already running" in console2.text
    assert len(pids_file.read_text().split()) == 4  # nothing new started

    every = _all_pids(pids_file) + [e.pid for e in st.entries]
    assert all(psutil.pid_exists(p) for p in every)
    n = down_stack(spec_path, store, _Console(), grace_s=5)
    assert n == 3
    time.sleep(0.2)
    alive = [p for p in every if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []  # engine-core children too: nothing orphaned
    assert not store.path.exists()


def test_rerun_after_interrupted_up_gates_the_kept_engine(tmp_path, fakes, monkeypatch):
    """Issue 13.2: an engine an interrupted `up` left loading passes the gates before the next starts."""
    from residency.render.common import members
    from residency.runtime.state import StackState

    vllm, litellm, pids_file = fakes
    monkeypatch.setenv("FAKE_DELAY", "1.5")  # alpha is still loading when the rerun comes
    spec_path = _spec(tmp_path)
    spec = load_spec(spec_path)
    store = StateStore(tmp_path / "state")
    backend = ProcessBackend(
        spec, spec_path.parent, store, vllm=vllm, litellm=litellm, master_key="sk-test-key-123"
    )
    st = StackState(spec_path=str(spec_path), runtime=backend.runtime)
    alpha = members(spec, _plan(spec))[0]
    e = backend.start(alpha, st)  # what `up` had done when it was killed: state "starting"
    e.model = "alpha"
    st.put(e)
    store.save(st)
    started, store, console = _run_up(tmp_path, spec_path, vllm, litellm)
    text = console.text
    assert "alpha: already running" in text and "not ready yet" in text
    assert text.index("alpha: ready") < text.index("beta: starting"), text
    assert [s.member.key for s in started] == ["alpha", "beta"] and started[0].reused
    assert all(x.state == "ready" for x in store.load().entries)
    down_stack(spec_path, store, _Console(), grace_s=5)


def test_failed_second_model_keeps_first_and_reports_cause(tmp_path, fakes):
    vllm, litellm, pids_file = fakes
    spec_path = _spec(tmp_path, second_mml=8192)
    with pytest.raises(UpFailed) as ei:
        _run_up(tmp_path, spec_path, vllm, litellm)
    text = ei.value.console.text
    assert "beta failed to start" in text
    assert "User-specified max_model_len (8192)" in text  # vLLM's own words
    assert "[max_seq_len]" in text and "fix:" in text
    assert "alpha kept running" in text
    st = ei.value.store.load()
    assert [e.name for e in st.entries] == ["alpha"]  # no proxy started, beta gone
    alpha_pid = st.entry("alpha").pid
    assert psutil.pid_exists(alpha_pid)
    down_stack(spec_path, ei.value.store, _Console(), grace_s=5)
    time.sleep(0.2)
    assert not any(psutil.pid_exists(p) for p in _all_pids(pids_file))


def test_failed_second_model_with_rollback_stops_everything(tmp_path, fakes):
    vllm, litellm, pids_file = fakes
    spec_path = _spec(tmp_path, second_mml=8192)
    with pytest.raises(UpFailed):
        _run_up(tmp_path, spec_path, vllm, litellm, rollback=True)
    store = StateStore(tmp_path / "state")
    assert not store.path.exists()
    time.sleep(0.2)
    pids = _all_pids(pids_file)
    assert len(pids) == 2  # alpha and its child had started
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_lock_blocks_a_second_up(tmp_path):
    store = StateStore(tmp_path / "state")
    with store.lock("up"):
        with pytest.raises(LockedError, match="another `residency up`"):
            with StateStore(tmp_path / "state").lock("up"):
                pass
    with store.lock("up"):  # released
        pass


def test_down_leaves_foreign_processes_alone(tmp_path):
    """A recorded PID that now belongs to another process (PID reuse) is not signalled."""
    import subprocess

    from residency.runtime.state import ProcEntry, StackState

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store = StateStore(tmp_path / "state")
        st = StackState(spec_path="x.yaml", runtime="process")
        # same pid, but a create time from another era: not ours
        st.put(ProcEntry(name="alpha", pid=other.pid, pgid=other.pid, create_time=1000.0, port=1))
        store.save(st)
        down_stack(tmp_path / "x.yaml", store, _Console(), grace_s=1)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_state_file_shape(tmp_path):
    from residency.runtime.state import ProcEntry, StackState

    store = StateStore(tmp_path / "s")
    st = StackState(spec_path="a.yaml", runtime="process")
    st.put(ProcEntry(name="m", model="m", pid=1, pgid=1, port=9, log_path="/x.log"))
    store.save(st)
    raw = json.loads(store.path.read_text())
    assert raw["entries"][0]["pid"] == 1 and raw["runtime"] == "process"


def test_explain_failure_uses_planner_kinds():
    from residency.runtime.logwatch import explain_failure

    log = (
        "INFO Model loading took 7.5 GiB memory and 3.1 seconds\n"
        "ERROR ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` "
        "when initializing the engine.\n"
    )
    f = explain_failure(log)
    assert f.kind == "no_cache_blocks"
    assert "No available memory for the cache blocks" in f.message
    assert f.fix  # a fix is always given for a known kind
    g = explain_failure("something odd\nRuntimeError: engine core died unexpectedly\n")
    assert g.kind == "other" and "engine core died" in g.message and g.tail


def test_phases_and_logged_kv_from_a_cpu_log():
    from residency.runtime.logwatch import current_phase, init_done, logged_kv

    lines = [
        "INFO vLLM API server version 0.32.0",
        "INFO Starting to load model /m/toy-hermes...",
        "INFO Model loading took 0.02 GiB memory and 0.8 seconds",
        "INFO Explicitly set (0.25/23.42) GiB for KV cache on node 0.",
        "INFO GPU KV cache size: 2,048 tokens",
        "INFO init engine (profile, create kv cache, warmup model) took 9.1 seconds",
        "INFO Application startup complete.",
    ]
    expect = [
        "starting engine",
        "loading weights",
        "weights loaded",
        "KV cache allocated",
        "KV cache allocated",
        "engine initialised",
        "API server up",
    ]
    for i, phase in enumerate(expect):
        assert current_phase("\n".join(lines[: i + 1])) == phase
    assert not init_done("\n".join(lines[:5])) and init_done("\n".join(lines))
    kv = logged_kv("\n".join(lines))
    assert kv.kv_cache_gib == 0.25 and kv.kv_cache_tokens == 2048 and kv.init_seconds == 9.1


def test_settle_needs_a_quiet_window():
    s = Settle(window_s=3.0, tol_bytes=64 * 2**20, tol_frac=0.01)
    mib = 2**20
    # growing 200 MiB/s for 3 s: not settled
    for t in range(4):
        s.add(float(t), 1000 * mib + 200 * mib * t)
    assert not s.settled()
    # then flat (within 10 MiB) for 3 s: settled
    for t in range(4, 8):
        s.add(float(t), 1600 * mib + (t % 2) * 10 * mib)
    assert s.settled()


@pytest.mark.parametrize("window", [1.0, 0.5, 2.0])
def test_settle_window_at_or_below_the_poll_interval_settles(window):
    """Issue 13.13: --settle-seconds 1 with 1 s polls (a little late each time) never settled."""
    s = Settle(window_s=window)
    t = 0.0
    for _ in range(5):
        s.add(t, 2**30)
        t += 1.05  # the poll interval plus the time a poll takes
    assert s.settled()
    s.add(t, 2 * 2**30)  # then memory moves: not settled
    assert not s.settled()


def test_free_memory_probe_choice_and_need():
    from residency.runtime.memory import choose_probe, needed_gib

    plan = _plan(load_spec_dummy())
    gpu = plan.device.model_copy(update={"unified": False, "name": "NVIDIA H100"})
    probe, note = choose_probe(gpu, cpu=False)
    # this box has no NVML: the check is skipped with a note, never silently
    assert probe is None and "NVML" in note
    probe, note = choose_probe(gpu.model_copy(update={"unified": True}), cpu=False)
    # unified memory: MemAvailable, read through the status package's host reader
    assert probe is not None and probe.host and probe.reader.kind == "host" and probe.free_gib() > 0
    assert probe.name == "MemAvailable (/proc/meminfo)"
    mp = plan.models[0]
    # CPU backend with a fixed KV pool: the footprint (0.5 GiB) is what must be free
    assert needed_gib(mp, cpu=True) == 0.5
    # GPU: vLLM's own check wants gmu x total = requested 1.17 GiB (> footprint 0.5)
    assert needed_gib(mp, cpu=False) == 1.17


def load_spec_dummy():
    from residency.spec import parse_spec

    return parse_spec(
        {"device": {"total_gib": 23.42}, "models": [{"name": "alpha", "model": "x", "max_model_len": 2048}]}
    )


def test_command_differences_ignore_the_fraction_only():
    from residency.runtime.bringup import command_differences

    run = [
        "vllm",
        "serve",
        "/m",
        "--port",
        "1",
        "--gpu-memory-utilization",
        "0.47",
        "--max-model-len",
        "2048",
        "--enforce-eager",
    ]
    same = [
        "vllm",
        "serve",
        "/m",
        "--port",
        "1",
        "--gpu-memory-utilization",
        "0.48",
        "--max-model-len",
        "2048",
        "--enforce-eager",
    ]
    assert command_differences(run, same) == []
    other = [
        "vllm",
        "serve",
        "/m",
        "--port",
        "1",
        "--gpu-memory-utilization",
        "0.47",
        "--max-model-len",
        "4096",
    ]
    d = command_differences(run, other)
    assert "--max-model-len: running 2048, plan 4096" in d and any("--enforce-eager" in x for x in d)


def test_free_memory_and_tree_memory_read_through_the_status_reader(tmp_path):
    """up's free-memory probe and per-process memory use the status package's GpuReader."""
    import os

    from residency.gpu import RecordedReader
    from residency.runtime.memory import FreeMemory, tree_memory_bytes

    gib = 1 << 30
    fixture = {
        "devices": [
            {"name": "GPU0", "memory_info": {"total": 80 * gib, "used": 30 * gib, "free": 50 * gib}},
            {"name": "GPU1", "memory_info": {"total": 80 * gib, "used": 60 * gib, "free": 20 * gib}},
            {"name": "GB10", "memory_info": "NotSupported"},
        ]
    }
    # TP over GPUs 0 and 1: the least free of the two (20 GiB) is what each rank finds
    assert FreeMemory(RecordedReader(fixture), gpus=[0, 1]).free_gib() == 20.0
    assert FreeMemory(RecordedReader(fixture), gpus=[0]).free_gib() == 50.0
    # a device whose totals answer N/A (GB10): not checked rather than a wrong number
    assert FreeMemory(RecordedReader(fixture), gpus=[2]).free_gib() is None
    assert FreeMemory(RecordedReader(fixture), gpus=[7]).free_gib() is None
    # per-process readings limited to a process tree: only the pids asked for
    fixture["devices"][0]["compute_processes"] = [
        {"pid": 11, "usedGpuMemory": 3 * gib},
        {"pid": 12, "usedGpuMemory": gib},
    ]
    fixture["devices"][1]["compute_processes"] = [{"pid": 11, "usedGpuMemory": 3 * gib}]
    assert RecordedReader(fixture).processes([11, 99]) == {11: 6 * gib}  # 3 + 3 GiB over two GPUs
    # no NVML on this box: the process tree's RSS (this test process holds some memory)
    assert tree_memory_bytes(os.getpid()) > 10 * 2**20
    assert tree_memory_bytes(2**22 + 12345) is None  # no such pid
