"""The docker runtime's command lines and its bring-up sequence, checked without a Docker engine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from test_render_helpers import two_model_plan, two_model_spec
from test_runtime_process import _Console

import residency.runtime.bringup as bu
from residency.runtime import docker as d
from residency.runtime.bringup import UpFailed, UpOptions, up_stack
from residency.runtime.down import down_stack
from residency.runtime.memory import Settle
from residency.runtime.state import StateStore

F = Path("/s/.residency/stack/rendered/compose.yaml")


def test_command_lines():
    assert d.up_service_cmd(F, "residency-stack", "qwen3-4b") == [
        "docker", "compose", "-f", str(F), "-p", "residency-stack", "up", "-d", "--no-deps", "qwen3-4b",
    ]  # fmt: skip
    assert d.ps_cmd(F, "p", "svc")[-5:] == ["ps", "--all", "--format", "json", "svc"]
    assert d.logs_cmd(F, "p", "svc")[-4:] == ["logs", "--no-color", "--no-log-prefix", "svc"]
    assert d.stop_service_cmds(F, "p", "svc", 30) == [
        ["docker", "compose", "-f", str(F), "-p", "p", "stop", "-t", "30", "svc"],
        ["docker", "compose", "-f", str(F), "-p", "p", "rm", "-f", "svc"],
    ]
    assert d.down_cmd(F, "p") == ["docker", "compose", "-f", str(F), "-p", "p", "down", "--timeout", "30"]
    assert d.inspect_pid_cmd("p-svc-1") == ["docker", "inspect", "--format", "{{.State.Pid}}", "p-svc-1"]
    assert d.project_name(Path("/x/My Stack.yaml")) == "residency-my-stack"


def test_parse_ps_both_formats():
    row = {"Name": "p-a-1", "Service": "a", "State": "running", "Health": "healthy"}
    assert d.parse_ps(json.dumps([row])) == [row]  # compose < 2.21: one JSON array
    assert d.parse_ps(json.dumps(row) + "\n" + json.dumps({**row, "Service": "b"})) == [
        row,
        {**row, "Service": "b"},
    ]
    assert d.parse_ps("") == []


class FakeDocker:
    """Answers like `docker compose`: a service becomes healthy two polls after `up`."""

    def __init__(self, fail_service: str | None = None):
        self.calls: list[list[str]] = []
        self.up: dict[str, int] = {}
        self.fail = fail_service

    def __call__(self, cmd):
        self.calls.append(cmd)
        out, rc = "", 0
        if cmd[:2] == ["docker", "inspect"]:
            out = "0"
        elif "up" in cmd:
            self.up[cmd[-1]] = 0
        elif "ps" in cmd:
            svc = cmd[-1]
            if svc in self.up:
                self.up[svc] += 1
                failed = svc == self.fail
                state = "exited" if failed and self.up[svc] > 1 else "running"
                health = "healthy" if self.up[svc] > 2 and not failed else "starting"
                out = json.dumps({"Name": f"p-{svc}-1", "Service": svc, "State": state, "Health": health})
        elif "logs" in cmd:
            svc = cmd[-1]
            if svc == self.fail:
                out = "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`"
            else:
                out = "Available KV cache memory: 12.00 GiB\ninit engine (profile, create kv cache, warmup model) took 40.1 seconds"
        elif "stop" in cmd or "rm" in cmd:
            self.up.pop(cmd[-1], None)
        return subprocess.CompletedProcess(cmd, rc, out, "")

    def verbs(self):
        return [
            (c[6], c[-1]) for c in self.calls if c[1] == "compose" and c[6] in ("up", "stop", "rm", "down")
        ]


def _backend(tmp_path, runner):
    spec, plan = two_model_spec(), two_model_plan()
    spec_path = tmp_path / "stack.yaml"
    spec_path.write_text("models: []\n")
    store = StateStore(tmp_path / "state")
    b = d.DockerBackend(spec, spec_path, plan, store, master_key="sk-docker-key", runner=runner)
    b.render()
    return spec, plan, spec_path, store, b


def test_docker_bring_up_order_and_down(tmp_path, monkeypatch):
    fake = FakeDocker()
    spec, plan, spec_path, store, b = _backend(tmp_path, fake)
    rendered = yaml.safe_load((store.dir / "rendered" / "compose.yaml").read_text())
    assert list(rendered["services"]) == ["qwen3-next", "qwen3-4b", "litellm"]
    env = (store.dir / "rendered" / ".env").read_text()
    assert "sk-docker-key" in env and ((store.dir / "rendered" / ".env").stat().st_mode & 0o777) == 0o600
    opts = UpOptions(cpu=True, poll_s=0.01, settle=Settle(window_s=0.0), timeout_s=5)
    console = _Console()
    # the plan's footprints are DGX-sized; skip the free-memory probe for this engine-less test
    monkeypatch.setattr(bu, "choose_probe", lambda *a, **k: (None, "test: no probe"))
    started = up_stack(spec_path, spec, plan, b, store, opts, console)
    # one service at a time, in plan order, the proxy last
    assert fake.verbs() == [("up", "qwen3-next"), ("up", "qwen3-4b"), ("up", "litellm")]
    first_up_4b = next(i for i, c in enumerate(fake.calls) if c[-1] == "qwen3-4b" and "up" in c)
    healthy_polls_next = [i for i, c in enumerate(fake.calls) if c[-1] == "qwen3-next" and "ps" in c]
    assert (
        max(healthy_polls_next[:3]) < first_up_4b
    )  # qwen3-4b started only after qwen3-next was polled healthy
    assert [s.kv_gib for s in started] == [12.0, 12.0]
    st = store.load()
    assert st.compose_project == "residency-stack" and st.runtime == "docker"
    fake.calls.clear()
    down_stack(spec_path, store, _Console(), docker_runner=fake)
    assert fake.calls == [d.down_cmd(Path(st.compose_file), "residency-stack")]
    assert not store.path.exists()


def test_docker_failed_service_is_stopped_and_explained(tmp_path, monkeypatch):
    fake = FakeDocker(fail_service="qwen3-4b")
    spec, plan, spec_path, store, b = _backend(tmp_path, fake)
    monkeypatch.setattr(bu, "choose_probe", lambda *a, **k: (None, "test: no probe"))
    console = _Console()
    with pytest.raises(UpFailed, match="no_cache_blocks"):
        up_stack(
            spec_path,
            spec,
            plan,
            b,
            store,
            UpOptions(poll_s=0.01, settle=Settle(window_s=0), timeout_s=5),
            console,
        )
    assert ("stop", "qwen3-4b") in fake.verbs() and ("rm", "qwen3-4b") in fake.verbs()
    assert ("up", "litellm") not in fake.verbs()
    assert "qwen3-next kept running" in console.text
    assert [e.name for e in store.load().entries] == ["qwen3-next"]
