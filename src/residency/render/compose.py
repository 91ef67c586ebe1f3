"""compose.yaml: one vLLM service per planned instance, started one at a time, LiteLLM last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from residency.errors import SpecError
from residency.memory.device import is_cpu_name
from residency.render.common import (
    HEALTH_PATH,
    HF_CACHE_IN_CONTAINER,
    LITELLM_CONTAINER_PORT,
    VLLM_CONTAINER_PORT,
    Member,
    service_name,
    start_period_seconds,
    yaml_dump,
)
from residency.render.flags import serve_args
from residency.spec import StackSpec, local_model_dir

PROXY_SERVICE = "litellm"
# Labels on every container (besides compose's own project/service labels): `up`, `status` and
# `down` find a stack's containers by them, whichever compose implementation started them.
LABEL_KIND = "io.residency.kind"  # vllm | proxy
LABEL_MODEL = "io.residency.model"  # the served model name (spec models[].name)
LABEL_REPLICA = "io.residency.replica"

# Both images ship python3 (curl is not guaranteed), so health checks use it.
_PY_HEALTH = "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4); sys.exit(0)"


def vllm_image(version: str) -> str:
    return f"vllm/vllm-openai:v{version}"


def model_image(spec: StackSpec, m: Member) -> str:
    return m.spec.image or vllm_image(spec.vllm_version)


def host_network(spec: StackSpec) -> bool:
    return spec.proxy.network == "host"


def cpu_device(spec: StackSpec) -> bool:
    """vLLM's CPU backend (device name "cpu..."): no GPU to reserve for the containers."""
    d = spec.device
    return d is not None and is_cpu_name(d.name or d.preset or "")


def vllm_port(spec: StackSpec, m: Member) -> int:
    """The port a vLLM listens on. Bridge: the same in every container. Host: its own port on the
    host, `models[].port` (+ replica index) or 8000 + the model's index in the spec, the rule
    `residency status` probes by."""
    if not host_network(spec):
        return VLLM_CONTAINER_PORT
    base = m.spec.port
    if base is None:
        base = VLLM_CONTAINER_PORT + [x.name for x in spec.models].index(m.spec.name)
    return base + m.plan.replica


def check_host_ports(spec: StackSpec, mems: list[Member]) -> None:
    """On the host network two services cannot share a port: one line naming the field and the fix."""
    if not host_network(spec):
        return
    seen: dict[int, str] = {spec.proxy.port: "the proxy (proxy.port)"}
    for m in mems:
        port = vllm_port(spec, m)
        if port > 65535:
            raise SpecError(f"models[{m.spec.name}].port", f"replica port {port} is above 65535", "lower it")
        if port in seen:
            raise SpecError(
                f"models[{m.spec.name}].port",
                f"port {port} is also used by {seen[port]}, and proxy.network is host",
                "give each model its own `port` (replicas take the following ports)",
            )
        seen[port] = f"{m.key}"


def api_bases(spec: StackSpec, mems: list[Member], *, network: str | None = None) -> dict[str, str]:
    """Where the proxy reaches each vLLM: by service name on a bridge (and in k8s), 127.0.0.1 on the host."""
    if (network or spec.proxy.network) == "host":
        return {m.key: f"http://127.0.0.1:{vllm_port(spec, m)}/v1" for m in mems}
    return {m.key: f"http://{service_name(m.key)}:{VLLM_CONTAINER_PORT}/v1" for m in mems}


def _gpu_reservation(m: Member) -> dict[str, Any]:
    dev: dict[str, Any] = {"driver": "nvidia", "capabilities": ["gpu"]}
    if m.plan.gpus:
        dev["device_ids"] = [str(g) for g in m.plan.gpus]
    else:
        dev["count"] = (
            max(m.plan.tensor_parallel_size, m.spec.tensor_parallel_size) * m.spec.pipeline_parallel_size
        )
    return {"resources": {"reservations": {"devices": [dev]}}}


def model_mount(m: Member, spec_dir: Path | None) -> tuple[Path, str] | None:
    """(host directory, path in the container) when the model is a local checkpoint, else None."""
    local = local_model_dir(m.spec.model, spec_dir)
    return None if local is None else (local, f"/models/{service_name(m.key)}")


def vllm_args(spec: StackSpec, m: Member, spec_dir: Path | None) -> list[str]:
    """Arguments after `vllm serve` in the container (the command `up --runtime docker` records)."""
    mount = model_mount(m, spec_dir)
    return serve_args(
        m.spec,
        m.plan,
        vllm_version=spec.vllm_version,
        port=vllm_port(spec, m),
        # host network: loopback only, like the bridge's unpublished port (the proxy is local)
        host="127.0.0.1" if host_network(spec) else "0.0.0.0",
        model_path=mount[1] if mount else None,
    )


def vllm_service(spec: StackSpec, m: Member, previous: str | None, spec_dir: Path | None) -> dict[str, Any]:
    volumes = [f"{spec.hf_cache}:{HF_CACHE_IN_CONTAINER}"]
    mount = model_mount(m, spec_dir)
    if mount is not None:
        volumes.append(f"{mount[0]}:{mount[1]}:ro")
    env = {"HF_TOKEN": "${HF_TOKEN:-}", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    env.update(m.spec.env)
    host = host_network(spec)
    port = vllm_port(spec, m)
    svc: dict[str, Any] = {
        "image": model_image(spec, m),
        "entrypoint": ["vllm", "serve"],
        # `$` would be read as compose interpolation: escape it in engine arguments.
        "command": [a.replace("$", "$$") for a in vllm_args(spec, m, spec_dir)],
        "ipc": "host",  # PyTorch shares tensors between processes through /dev/shm
        "environment": env,
        "volumes": volumes,
        "labels": {LABEL_KIND: "vllm", LABEL_MODEL: m.spec.name, LABEL_REPLICA: str(m.plan.replica)},
        "healthcheck": {
            "test": ["CMD", "python3", "-c", _PY_HEALTH.format(port=port, path=HEALTH_PATH)],
            # no start_interval: Debian's docker-compose 1.29 rejects the key (and engines < 25
            # ignore it), so a short interval keeps the start chain quick
            "interval": "5s",
            "timeout": "5s",
            "retries": 3,
            "start_period": f"{start_period_seconds(m.plan.weights_gib)}s",
        },
        # No automatic restart: after a reboot Docker would restart every container at once, and
        # co-resident vLLMs profiling together mis-size each other (0.10.1-0.33.0: the profile
        # charges any device-wide change to its own KV budget; vLLM #10533, #55827).
        "restart": "no",
    }
    if host:
        svc["network_mode"] = "host"
    else:
        svc["expose"] = [str(VLLM_CONTAINER_PORT)]  # reachable by the proxy only, not published
    if not cpu_device(spec):
        svc["deploy"] = _gpu_reservation(m)
    if previous is not None:
        svc["depends_on"] = {previous: {"condition": "service_healthy"}}
    return svc


def proxy_service(spec: StackSpec, last: str | None) -> dict[str, Any]:
    p = spec.proxy
    host = host_network(spec)
    port = p.port if host else LITELLM_CONTAINER_PORT
    command = ["--config", "/app/config.yaml", "--port", str(port)]
    if host:
        command += ["--host", p.host]
    svc: dict[str, Any] = {
        "image": p.image,
        "command": command,
        "env_file": [".env"],
        "environment": {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"},
        "volumes": ["./litellm.yaml:/app/config.yaml:ro"],
        "labels": {LABEL_KIND: "proxy"},
        "healthcheck": {
            "test": ["CMD", "python3", "-c", _PY_HEALTH.format(port=port, path="/health/liveliness")],
            "interval": "5s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "60s",
        },
        "restart": "unless-stopped",  # the proxy holds no GPU memory; restarting it is harmless
    }
    if host:
        svc["network_mode"] = "host"
    else:
        svc["ports"] = [f"{p.host}:{p.port}:{LITELLM_CONTAINER_PORT}"]
    if last is not None:
        svc["depends_on"] = {last: {"condition": "service_healthy"}}
    return svc


def render_compose(spec: StackSpec, mems: list[Member], spec_dir: Path | None = None) -> dict[str, Any]:
    check_host_ports(spec, mems)
    services: dict[str, Any] = {}
    previous: str | None = None
    for m in mems:
        name = service_name(m.key)
        services[name] = vllm_service(spec, m, previous, spec_dir)
        previous = name
    services[PROXY_SERVICE] = proxy_service(spec, previous)
    return {"services": services}


HEADER = """\
# Rendered by `residency render` from the plan (vLLM {version}). Re-render instead of editing.
# Start order: the vLLM services start one at a time in plan order ({order}); each waits for
# the previous one to be healthy, so no two engines profile memory at the same time.
# `docker compose up -d` follows that chain; `residency up --runtime docker` also waits for
# the engine's memory to settle between starts. {network}
"""

_NETWORK_NOTE = {
    "bridge": "Only the LiteLLM proxy is published.",
    "host": "Host network: each vLLM listens on 127.0.0.1 at its own port.",
}


def compose_yaml(spec: StackSpec, mems: list[Member], spec_dir: Path | None = None) -> str:
    body = yaml_dump(render_compose(spec, mems, spec_dir))
    order = " -> ".join([service_name(m.key) for m in mems] + [PROXY_SERVICE])
    return (
        HEADER.format(version=spec.vllm_version, order=order, network=_NETWORK_NOTE[spec.proxy.network])
        + body
    )
