"""Containers for real: `residency up --runtime docker` and the rendered compose.yaml, brought up by
a real Docker engine with the test images (residency-test/vllm-cpu, residency-test/litellm) serving
the toy models (mounted, not baked in). Host networking only; every request goes to 127.0.0.1.

One `up` (hermes then chat, then the proxy) is shared by the start-order, status, verify and
tool-call tests; then `down`, a second `up` whose second model vLLM rejects (rolled back), and the
rendered compose (one engine and the proxy) started by compose itself. Four vLLM containers start
in all (~20-30 s each with the test image's warm model-info cache and stackkit.VLLM_ENV's
no-compile, no-worker-process engine), one that vLLM rejects at its config check, and two proxies.
Without a Docker engine these tests are skipped with the daemon's own error (dockerkit).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e import dockerkit as dk
from tests.e2e.stackkit import SPEC_VLLM_ENV, WEATHER_TOOL, cpu_device, free_port, model_path, require_stack

pytestmark = [pytest.mark.e2e, pytest.mark.docker]



@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    require_stack(models=["toy-hermes", "toy-chat"])
    return dk.require_docker()


def _spec(tmp_path: Path, images: dict[str, str], *, chat: bool = True) -> tuple[Path, str]:
    """The toy stack in host mode with the test images: toy-hermes (hermes tool parser) then toy-chat
    (unless `chat` is False). Returns the spec path and its compose project name (unique: a crashed
    run never collides)."""
    common = {
        "image": images["vllm"],
        "max_num_seqs": 4,
        "dtype": "bfloat16",
        "kv_cache_memory_bytes": 128 << 20,
        "env": SPEC_VLLM_ENV,  # the host servers' environment in the containers too
    }
    (tmp_path / "hf").mkdir(exist_ok=True)
    spec = {
        "vllm_version": "0.32.0",
        "device": cpu_device(),
        "calibration_file": str(tmp_path / "calibration.json"),
        "hf_cache": str(tmp_path / "hf"),
        "models": [
            {
                "name": "hermes",
                "model": str(model_path("toy-hermes")),
                "port": free_port(),
                "max_model_len": 2048,
                "tool_call_parser": "hermes",
                **common,
            },
            {
                "name": "chat",
                "model": str(model_path("toy-chat")),
                "port": free_port(),
                "max_model_len": 2048,
                **common,
            },
        ][: 2 if chat else 1],
        "proxy": {"network": "host", "host": "127.0.0.1", "port": free_port(), "image": images["litellm"]},
    }
    stem = f"docker-{secrets.token_hex(3)}"
    path = tmp_path / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, f"residency-{stem}"


def _residency(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "residency.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250"},
    )


def _key(env_file: Path) -> str:
    return env_file.read_text().split("LITELLM_MASTER_KEY=", 1)[1].split()[0]


def _tool_call(proxy_port: int, key: str) -> dict:
    """A structured tool call through the proxy (tool_choice auto, the agents' default)."""
    r = httpx.post(
        f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "hermes",
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [WEATHER_TOOL],
            "tool_choice": "auto",
            "max_tokens": 64,
            "temperature": 0,
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    msg = r.json()["choices"][0]["message"]
    assert msg.get("tool_calls"), msg
    return msg["tool_calls"][0]["function"]


def _assert_started_in_order(containers: dict[str, dict], order: list[str]) -> None:
    """Each service started after the engine before it logged "init engine ... took" (Docker's stamps)."""
    for engine, later in zip(order, order[1:], strict=False):
        assert dk.when(containers[later]["State"]["StartedAt"]) >= dk.log_line_time(
            containers[engine]["Id"], "init engine"
        ), (engine, later)


UP = ("--runtime", "docker", "--cpu", "--settle-seconds", "2")


@pytest.fixture
def projects():
    """Compose projects a test starts; whatever a failing test leaves is removed by label."""
    started: list[str] = []
    yield started
    for p in started:
        dk.remove_project(p)


@dataclass
class UpStack:
    spec: Path
    project: str
    out: str  # what `up` printed
    before: dict[str, set[str]]  # the engine's leftovers before `up`

    @property
    def sdir(self) -> Path:
        return self.spec.parent / ".residency" / self.spec.stem


@pytest.fixture(scope="module")
def up_stack(images, tmp_path_factory) -> Iterator[UpStack]:
    """One `up --runtime docker` (hermes, chat, proxy) shared by the tests that read a running stack."""
    spec, project = _spec(tmp_path_factory.mktemp("docker-up"), images)
    before = dk.leftovers()
    t0 = time.monotonic()
    try:
        r = _residency("up", str(spec), *UP)
        print(f"up --runtime docker: {time.monotonic() - t0:.0f} s")
        assert r.returncode == 0, r.stdout + r.stderr
        yield UpStack(spec, project, r.stdout + r.stderr, before)
    finally:
        dk.remove_project(project)


def test_up_runtime_docker_starts_each_container_in_order(up_stack, images):
    out = up_stack.out
    assert "hermes: ready" in out and "chat: ready" in out and "litellm: ready" in out
    assert re.search(r"KV cache logged 0\.1[23] GiB", out), out  # from `docker logs` (128 MiB set)
    containers = dk.by_service(dk.project_containers(up_stack.project))
    assert set(containers) == {"hermes", "chat", "litellm"}
    for name, c in containers.items():
        assert c["State"]["Running"] and c["HostConfig"]["NetworkMode"] == "host", name
        assert c["Config"]["Labels"]["io.residency.kind"] == ("proxy" if name == "litellm" else "vllm")
        assert c["Config"]["Image"] == images["litellm" if name == "litellm" else "vllm"]
    _assert_started_in_order(containers, ["hermes", "chat", "litellm"])
    state = json.loads((up_stack.sdir / "state.json").read_text())
    assert state["runtime"] == "docker" and state["compose_project"] == up_stack.project


def test_status_and_verify_read_the_running_containers(up_stack):
    spec = up_stack.spec
    containers = dk.by_service(dk.project_containers(up_stack.project))
    # status reads the containers: both engines ready, each with its container's process
    r = _residency("status", str(spec), "--json", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    status = json.loads(r.stdout)
    models = {m["name"]: m for m in status["models"]}
    assert {n: m["state"] for n, m in models.items()} == {"hermes": "ready", "chat": "ready"}, models
    assert models["hermes"]["pid"] == containers["hermes"]["State"]["Pid"]

    # verify through the proxy (and directly): the tool checks agents need pass on the hermes model
    r = _residency("verify", str(spec), "--model", "hermes", "--only", "P1,T1", "--json", "--timeout", "120")
    report = json.loads(r.stdout)
    (hermes,) = report["models"]
    checks = {c["id"]: c for c in hermes["checks"]}
    assert checks["P1"]["status"] == "pass", checks["P1"]
    assert set(checks["T1"]["hops"]) == {"direct", "proxy"}
    assert checks["T1"]["hops"]["proxy"]["status"] in ("pass", "warn"), checks["T1"]
    assert "get_weather(" in checks["T1"]["hops"]["proxy"]["detail"]
    state = json.loads((up_stack.sdir / "state.json").read_text())
    call = _tool_call(state_proxy_port(state), _key(up_stack.sdir / ".env"))
    assert call["name"] == "get_weather" and "city" in json.loads(call["arguments"]), call


def test_down_leaves_nothing_then_a_fault_is_rolled_back(up_stack):
    spec, project, before = up_stack.spec, up_stack.project, up_stack.before
    # down removes exactly what up started
    t0 = time.monotonic()
    r = _residency("down", str(spec), "--grace", "10", timeout=300)
    print(f"down: {time.monotonic() - t0:.0f} s")
    assert r.returncode == 0, r.stdout + r.stderr
    assert dk.project_containers(project) == [] and dk.project_networks(project) == []
    assert not (up_stack.sdir / "state.json").exists()
    assert dk.leftovers() == before

    # a fault: vLLM rejects chat's max_model_len (beyond the toy's positions) at its config check, so
    # its container exits within seconds; hermes, which this run started first, is then rolled back
    limit = json.loads((model_path("toy-chat") / "config.json").read_text())["max_position_embeddings"]
    bad = yaml.safe_load(spec.read_text())
    bad["models"][1]["max_model_len"] = limit * 2
    spec.write_text(yaml.safe_dump(bad, sort_keys=False))
    t0 = time.monotonic()
    r = _residency("up", str(spec), *UP, "--rollback")
    out = r.stdout + r.stderr
    print(f"up --rollback with a failing model: {time.monotonic() - t0:.0f} s")
    assert r.returncode == 1, out
    assert "hermes: ready" in out and "chat failed to start" in out
    assert f"max_model_len ({limit * 2})" in out  # vLLM's own words, read from `docker logs`
    assert "fix:" in out and "rolled back" in out
    assert "stopping hermes" in out
    assert dk.project_containers(project) == [] and dk.project_networks(project) == []
    assert dk.leftovers() == before


def state_proxy_port(state: dict) -> int:
    (proxy,) = [e for e in state["entries"] if e["kind"] == "proxy"]
    return int(proxy["port"])


def test_rendered_compose_gates_the_proxy_on_engine_health_and_down_leaves_nothing(
    tmp_path, images, projects
):
    """compose alone (no residency) with the rendered file: one engine, then the proxy its health check gates
    (the engine-to-engine links are the same depends_on/healthcheck pair, ordered by `up` above)."""
    spec, project = _spec(tmp_path, images, chat=False)
    projects.append(project)
    out = tmp_path / "rendered"
    r = _residency("render", str(spec), "-o", str(out), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    compose = out / "compose.yaml"
    doc = yaml.safe_load(compose.read_text())
    assert list(doc["services"]) == ["hermes", "litellm"]
    assert doc["services"]["litellm"]["depends_on"] == {"hermes": {"condition": "service_healthy"}}
    assert all(s["network_mode"] == "host" for s in doc["services"].values())
    before = dk.leftovers()
    base = [*dk.compose_cli(), "-f", str(compose), "-p", project]
    t0 = time.monotonic()
    # compose itself walks the health-gated depends_on chain: hermes healthy -> litellm
    r = subprocess.run([*base, "up", "-d"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"compose up -d returned after {time.monotonic() - t0:.0f} s")
    deadline = time.monotonic() + 300
    while True:
        containers = dk.by_service(dk.project_containers(project))
        health = (containers["litellm"]["State"].get("Health") or {}).get("Status")
        if health == "healthy":
            break
        assert health in ("starting", None) and time.monotonic() < deadline, containers["litellm"]["State"]
        time.sleep(1)
    print(f"compose up: the proxy healthy {time.monotonic() - t0:.0f} s after `up -d`")
    _assert_started_in_order(containers, ["hermes", "litellm"])
    call = _tool_call(yaml.safe_load(spec.read_text())["proxy"]["port"], _key(out / ".env"))
    assert call["name"] == "get_weather" and "city" in json.loads(call["arguments"]), call

    t0 = time.monotonic()
    r = subprocess.run([*base, "down", "--timeout", "10"], capture_output=True, text=True, timeout=300)
    print(f"compose down: {time.monotonic() - t0:.0f} s")
    assert r.returncode == 0, r.stdout + r.stderr
    assert dk.project_containers(project) == [] and dk.project_networks(project) == []
    assert dk.leftovers() == before  # no container, network, volume or build leftover: only cached images
