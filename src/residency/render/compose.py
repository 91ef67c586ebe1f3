"""compose.yaml: one vLLM service per planned instance, started one at a time, LiteLLM last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

# Both images ship python3 (curl is not guaranteed), so health checks use it.
_PY_HEALTH = "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4); sys.exit(0)"


def vllm_image(version: str) -> str:
    return f"vllm/vllm-openai:v{version}"


def api_bases(mems: list[Member]) -> dict[str, str]:
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


def vllm_service(spec: StackSpec, m: Member, previous: str | None, spec_dir: Path | None) -> dict[str, Any]:
    volumes = [f"{spec.hf_cache}:{HF_CACHE_IN_CONTAINER}"]
    model_path = None
    local = local_model_dir(m.spec.model, spec_dir)
    if local is not None:
        model_path = f"/models/{service_name(m.key)}"
        volumes.append(f"{local}:{model_path}:ro")
    env = {"HF_TOKEN": "${HF_TOKEN:-}", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    env.update(m.spec.env)
    svc: dict[str, Any] = {
        "image": vllm_image(spec.vllm_version),
        "entrypoint": ["vllm", "serve"],
        # `$` would be read as compose interpolation: escape it in engine arguments.
        "command": [
            a.replace("$", "$$")
            for a in serve_args(
                m.spec,
                m.plan,
                vllm_version=spec.vllm_version,
                port=VLLM_CONTAINER_PORT,
                host="0.0.0.0",
                model_path=model_path,
            )
        ],
        "ipc": "host",  # PyTorch shares tensors between processes through /dev/shm
        "environment": env,
        "volumes": volumes,
        "expose": [str(VLLM_CONTAINER_PORT)],  # reachable by the proxy only, not published
        "deploy": _gpu_reservation(m),
        "healthcheck": {
            "test": ["CMD", "python3", "-c", _PY_HEALTH.format(port=VLLM_CONTAINER_PORT, path=HEALTH_PATH)],
            "interval": "15s",
            "timeout": "5s",
            "retries": 3,
            "start_period": f"{start_period_seconds(m.plan.weights_gib)}s",
            "start_interval": "5s",
        },
        # No automatic restart: after a reboot Docker would restart every container at once, and
        # co-resident vLLMs profiling together mis-size each other (0.10.1-0.33.0: the profile
        # charges any device-wide change to its own KV budget; vLLM #10533, #55827).
        "restart": "no",
    }
    if previous is not None:
        svc["depends_on"] = {previous: {"condition": "service_healthy"}}
    return svc


def proxy_service(spec: StackSpec, last: str | None) -> dict[str, Any]:
    p = spec.proxy
    svc: dict[str, Any] = {
        "image": p.image,
        "command": ["--config", "/app/config.yaml", "--port", str(LITELLM_CONTAINER_PORT)],
        "env_file": [".env"],
        "environment": {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"},
        "volumes": ["./litellm.yaml:/app/config.yaml:ro"],
        "ports": [f"{p.host}:{p.port}:{LITELLM_CONTAINER_PORT}"],
        "healthcheck": {
            "test": [
                "CMD",
                "python3",
                "-c",
                _PY_HEALTH.format(port=LITELLM_CONTAINER_PORT, path="/health/liveliness"),
            ],
            "interval": "15s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "60s",
        },
        "restart": "unless-stopped",  # the proxy holds no GPU memory; restarting it is harmless
    }
    if last is not None:
        svc["depends_on"] = {last: {"condition": "service_healthy"}}
    return svc


def render_compose(spec: StackSpec, mems: list[Member], spec_dir: Path | None = None) -> dict[str, Any]:
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
# the engine's memory to settle between starts. Only the LiteLLM proxy is published.
"""


def compose_yaml(spec: StackSpec, mems: list[Member], spec_dir: Path | None = None) -> str:
    body = yaml_dump(render_compose(spec, mems, spec_dir))
    order = " -> ".join([service_name(m.key) for m in mems] + [PROXY_SERVICE])
    return HEADER.format(version=spec.vllm_version, order=order) + body
