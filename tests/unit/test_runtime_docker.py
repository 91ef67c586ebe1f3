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
from residency.errors import ResidencyError
from residency.render.common import members
from residency.runtime import docker as d
from residency.runtime.bringup import UpFailed, UpOptions, up_stack
from residency.runtime.down import down_stack
from residency.runtime.memory import Settle
from residency.runtime.state import StackState, StateStore

F = Path("/s/.residency/stack/rendered/compose.yaml")


CLI = ["docker-compose"]


@pytest.fixture(autouse=True)
def _no_inspect_cache(monkeypatch):
    monkeypatch.setattr(d, "INSPECT_TTL_S", 0.0)  # every poll reads the fake afresh


def test_command_lines():
    assert d.up_service_cmd(CLI, F, "residency-stack", "qwen3-4b") == [
        "docker-compose", "-f", str(F), "-p", "residency-stack", "up", "-d", "--no-deps", "qwen3-4b",
    ]  # fmt: skip
    assert d.down_cmd(["docker", "compose"], F, "p") == [
        "docker", "compose", "-f", str(F), "-p", "p", "down", "--remove-orphans", "--timeout", "30",
    ]  # fmt: skip
    # containers are found by compose's own labels, the same for compose v1 and v2
    assert d.find_cmd("p", "svc") == [
        "docker", "ps", "--all", "--quiet", "--no-trunc",
        "--filter", "label=com.docker.compose.project=p", "--filter", "label=com.docker.compose.service=svc",
    ]  # fmt: skip
    assert d.stop_cmds("abc", 30) == [
        ["docker", "stop", "--time", "30", "abc"],
        ["docker", "rm", "--force", "abc"],
    ]
    assert d.logs_cmd("abc") == ["docker", "logs", "abc"]
    assert d.project_name(Path("/x/My Stack.yaml")) == "residency-my-stack"


def test_compose_cli_prefers_the_v2_plugin():
    def v2(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 0, "Docker Compose version v2.29.1", "")

    def v1_only(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "docker: unknown command: docker compose")

    assert d.compose_cli(v2) == ["docker", "compose"]
    assert d.compose_cli(v1_only) == ["docker-compose"]


def test_container_view_reads_inspect():
    info = {
        "Id": "abc",
        "Name": "/residency-stack_qwen3-4b_1",
        "State": {"Status": "running", "Pid": 77, "ExitCode": 0, "StartedAt": "2026-01-01T00:00:01Z",
                  "Health": {"Status": "healthy"}},
        "Config": {"Labels": {"com.docker.compose.service": "qwen3-4b", "io.residency.kind": "vllm"}},
    }  # fmt: skip
    v = d.container_view(info)
    assert (v["name"], v["service"], v["status"], v["health"], v["pid"]) == (
        "residency-stack_qwen3-4b_1", "qwen3-4b", "running", "healthy", 77,
    )  # fmt: skip
    assert d.container_view({"State": {"Status": "exited", "Pid": 0}})["pid"] is None


class FakeDocker:
    """Answers like docker + docker-compose 1.29 (no v2 plugin): a service becomes healthy two
    inspects after `up`; the failing one exits after its first inspect."""

    def __init__(self, fail_service: str | None = None, fail_up: str | None = None):
        self.calls: list[list[str]] = []
        self.up: dict[str, int] = {}  # service -> inspects since up
        self.fail = fail_service
        self.fail_up = fail_up  # `docker-compose up` of this service fails, leaving a created container

    def _ids(self, cmd):
        pre = "label=com.docker.compose.service="
        svc = next((a.removeprefix(pre) for a in cmd if a.startswith(pre)), None)
        return [f"id-{s}" for s in self.up if svc is None or s == svc]

    def __call__(self, cmd, **kw):
        self.calls.append(cmd)
        out, rc = "", 0
        if cmd[:3] == ["docker", "compose", "version"]:
            rc = 1
        elif cmd[:2] == ["docker", "ps"]:
            out = "\n".join(self._ids(cmd))
        elif cmd[:2] == ["docker", "inspect"]:
            rows = []
            for cid in cmd[4:]:
                svc = cid.removeprefix("id-")
                if svc not in self.up:
                    continue
                self.up[svc] += 1
                failed = svc == self.fail
                state = "exited" if failed and self.up[svc] > 1 else "running"
                health = "healthy" if self.up[svc] > 2 and not failed else "starting"
                rows.append({
                    "Id": cid, "Name": f"/p_{svc}_1",
                    "State": {"Status": state, "Pid": 0, "Health": {"Status": health}, "StartedAt": "t"},
                    "Config": {"Labels": {"com.docker.compose.service": svc}},
                })  # fmt: skip
            out = json.dumps(rows)
        elif cmd[:2] == ["docker", "logs"]:
            svc = cmd[-1].removeprefix("id-")
            if svc == self.fail:
                out = "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`"
            else:
                out = "Available KV cache memory: 12.00 GiB\ninit engine (profile, create kv cache, warmup model) took 40.1 seconds"
        elif cmd[0] == "docker-compose" and "up" in cmd:
            self.up[cmd[-1]] = 0
            if cmd[-1] == self.fail_up:
                return subprocess.CompletedProcess(
                    cmd, 1, "", "ERROR: for qwen3-4b  Cannot start service qwen3-4b: address already in use"
                )
        elif cmd[0] == "docker-compose" and "down" in cmd:
            self.up.clear()
        elif cmd[:2] == ["docker", "rm"]:
            self.up.pop(cmd[-1].removeprefix("id-"), None)
        return subprocess.CompletedProcess(cmd, rc, out, "")

    def verbs(self):
        out = []
        for c in self.calls:
            if c[0] == "docker-compose" and c[5] in ("up", "down"):
                out.append((c[5], c[-1] if c[5] == "up" else c[4]))
            elif c[:2] in (["docker", "stop"], ["docker", "rm"]):
                out.append((c[1], c[-1].removeprefix("id-")))
        return out


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
    inspects_next = [
        i for i, c in enumerate(fake.calls) if c[:2] == ["docker", "inspect"] and "id-qwen3-next" in c
    ]
    assert len(inspects_next) >= 3 and inspects_next[2] < first_up_4b  # started after qwen3-next was healthy
    assert rendered["services"]["qwen3-4b"]["labels"]["io.residency.model"] == "qwen3-4b"
    assert [s.kv_gib for s in started] == [12.0, 12.0]
    st = store.load()
    assert st.compose_project == "residency-stack" and st.runtime == "docker"
    fake.calls.clear()
    down_stack(spec_path, store, _Console(), docker_runner=fake)
    assert fake.calls[-1] == d.down_cmd(["docker-compose"], Path(st.compose_file), "residency-stack")
    assert [e.log_path for e in st.entries] == [
        "docker logs p_qwen3-next_1",
        "docker logs p_qwen3-4b_1",
        "docker logs p_litellm_1",
    ]
    assert not store.path.exists()


def _failing_up(tmp_path, monkeypatch, fake, *, rollback: bool, match: str):
    """up_stack against `fake`, which makes one service fail; returns (store, console) after the UpFailed."""
    spec, plan, spec_path, store, b = _backend(tmp_path, fake)
    monkeypatch.setattr(bu, "choose_probe", lambda *a, **k: (None, "test: no probe"))
    console = _Console()
    opts = UpOptions(rollback=rollback, poll_s=0.01, settle=Settle(window_s=0), timeout_s=5)
    with pytest.raises(UpFailed, match=match):
        up_stack(spec_path, spec, plan, b, store, opts, console)
    return store, console


def test_docker_failed_service_is_stopped_and_explained(tmp_path, monkeypatch):
    fake = FakeDocker(fail_service="qwen3-4b")
    store, console = _failing_up(tmp_path, monkeypatch, fake, rollback=False, match="no_cache_blocks")
    assert ("stop", "qwen3-4b") in fake.verbs() and ("rm", "qwen3-4b") in fake.verbs()
    assert ("up", "litellm") not in fake.verbs()
    assert ("stop", "qwen3-next") not in fake.verbs()  # kept: the failed one only is removed
    assert "qwen3-next kept running" in console.text
    assert [e.name for e in store.load().entries] == ["qwen3-next"]


def test_docker_failed_service_with_rollback_removes_everything(tmp_path, monkeypatch):
    fake = FakeDocker(fail_service="qwen3-4b")
    store, console = _failing_up(tmp_path, monkeypatch, fake, rollback=True, match="no_cache_blocks")
    assert ("stop", "qwen3-next") in fake.verbs() and ("rm", "qwen3-next") in fake.verbs()
    assert fake.verbs()[-1][0] == "down"  # the last container gone: the project (network) too
    assert fake.up == {} and not store.path.exists()
    assert "rolled back" in console.text


@pytest.mark.parametrize("rollback", [False, True])
def test_docker_service_that_compose_cannot_start_leaves_a_stated_stack(tmp_path, monkeypatch, rollback):
    """`docker-compose up` itself fails (a port taken, an image missing): the half-created container is
    removed, the stack is left as after a failed start, and --rollback stops what this run started."""
    fake = FakeDocker(fail_up="qwen3-4b")
    store, console = _failing_up(
        tmp_path, monkeypatch, fake, rollback=rollback, match="qwen3-4b could not be started"
    )
    assert "address already in use" in console.text
    assert ("rm", "qwen3-4b") in fake.verbs() and "qwen3-4b" not in fake.up
    assert ("up", "litellm") not in fake.verbs()
    if rollback:
        assert fake.up == {} and not store.path.exists() and "rolled back" in console.text
    else:
        assert [e.name for e in store.load().entries] == ["qwen3-next"]
        assert "qwen3-next kept running" in console.text


def test_compose_error_survives_a_failing_cleanup(tmp_path):
    """The cleanup after a failed `docker-compose up` fails as well (here: `down` of the emptied project):
    the user still sees compose's own error, not the cleanup's."""

    class _DownFails(FakeDocker):
        def __call__(self, cmd, **kw):
            if cmd[0] == "docker-compose" and "down" in cmd:
                self.calls.append(cmd)
                return subprocess.CompletedProcess(cmd, 1, "", "network busy")
            return super().__call__(cmd, **kw)

    fake = _DownFails(fail_up="qwen3-next")
    spec, plan, spec_path, store, b = _backend(tmp_path, fake)
    with pytest.raises(ResidencyError, match="address already in use") as ex:
        b.start(members(spec, plan)[0], StackState(spec_path=str(spec_path), runtime="docker"))
    assert "network busy" not in str(ex.value)
    assert any(c[0] == "docker-compose" and "down" in c for c in fake.calls)  # the cleanup did run
