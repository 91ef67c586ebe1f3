"""k8s/: a Deployment + Service per vLLM instance, LiteLLM as Deployment + ConfigMap + Secret + Service,
and the NVIDIA device plugin config that lets several pods share one GPU (time-slicing).
"""

from __future__ import annotations

import math
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
from residency.render.compose import model_image
from residency.render.flags import serve_args
from residency.spec import StackSpec, local_model_dir

K8S_VERSION = "1.33.0"  # the schema version the tests validate against (kubernetes-validate)
PART_OF = "residency"
SECRET_NAME = "litellm-master-key"

GPU_SHARING_HEADER = """\
# One GPU shared by several vLLM pods: Kubernetes hands out whole `nvidia.com/gpu` devices, so
# without this config only one model pod per GPU is ever scheduled.
#
# Choice: NVIDIA device plugin TIME-SLICING. Each physical GPU is advertised as {replicas}
# `nvidia.com/gpu` replicas, one per co-resident vLLM pod. Time-slicing gives no memory
# isolation: each pod still sees the whole GPU, which is exactly what the plan assumes, because
# vLLM's --gpu-memory-utilization is a fraction of the WHOLE device (the fractions below sum to
# {util_sum:.3f} of it). The plan, not Kubernetes, keeps the pods inside their budgets.
#
# Why not MPS: the device plugin's MPS sharing splits memory EVENLY between replicas and vLLM
# then sees only its slice as "total", so uneven planned fractions (e.g. 0.55 + 0.30) would be
# wrong. Use MPS only if every model was planned with the same fraction.
#
# Apply (GPU operator): put this ConfigMap in the operator's namespace, then
#   kubectl patch clusterpolicies.nvidia.com/cluster-policy --type merge \\
#     -p '{{"spec":{{"devicePlugin":{{"config":{{"name":"residency-time-slicing","default":"any"}}}}}}}}'
# Standalone device plugin: pass it with --config-file / the Helm value `config.name`.
# failRequestsGreaterThanOne keeps a tensor-parallel pod from getting two slices of ONE GPU.
"""

MODEL_HEADER = """\
# vLLM instance `{key}` ({model}) rendered by `residency render` from the plan.
# Planned: gpu_memory_utilization {gmu}, KV cache {kv:.2f} GiB ({tokens} tokens), footprint {fp:.2f} GiB.
# Start chain: {chain}
# strategy Recreate: a rolling update would run two copies of this model at once and overrun
# the GPU's memory plan.
"""

LITELLM_HEADER = """\
# LiteLLM proxy in front of the vLLM services. The Secret holds only a placeholder: fill it
# from the rendered .env without printing the key, e.g.
#   set -a; . ../.env; set +a; envsubst < litellm.yaml | kubectl apply -f -
# or create it directly:  kubectl create secret generic {secret} --from-env-file=../.env
# and then apply this file without its Secret document (applying it as is puts the placeholder back).
"""


def _labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": component,
    }


def _probe(path: str, port: str, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


_WAIT_PREV = (
    "import time, urllib.request\n"
    "url = 'http://{svc}:{port}{path}'\n"
    "while True:\n"
    "    try:\n"
    "        urllib.request.urlopen(url, timeout=4); break\n"
    "    except Exception:\n"
    "        print('waiting for', url, flush=True); time.sleep(5)\n"
)


def model_manifests(spec: StackSpec, m: Member, previous: str | None, spec_dir: Path | None) -> list[dict]:
    name = service_name(m.key)
    labels = _labels(name, "vllm")
    hf_cache = str(Path(spec.hf_cache).expanduser())
    volumes: list[dict[str, Any]] = [
        {"name": "hf-cache", "hostPath": {"path": hf_cache, "type": "DirectoryOrCreate"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
    ]
    mounts = [
        {"name": "hf-cache", "mountPath": HF_CACHE_IN_CONTAINER},
        {"name": "dshm", "mountPath": "/dev/shm"},  # stands in for compose's ipc: host
    ]
    model_path = None
    local = local_model_dir(m.spec.model, spec_dir)
    if local is not None:
        model_path = f"/models/{name}"
        volumes.append({"name": "model", "hostPath": {"path": str(local), "type": "Directory"}})
        mounts.append({"name": "model", "mountPath": model_path, "readOnly": True})
    env = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", **m.spec.env}
    gpus = max(m.plan.tensor_parallel_size, m.spec.tensor_parallel_size) * m.spec.pipeline_parallel_size
    start_failures = math.ceil(start_period_seconds(m.plan.weights_gib) / 10)
    container = {
        "name": "vllm",
        "image": model_image(spec, m),
        "command": ["vllm", "serve"],
        "args": serve_args(
            m.spec,
            m.plan,
            vllm_version=spec.vllm_version,
            port=VLLM_CONTAINER_PORT,
            host="0.0.0.0",
            model_path=model_path,
        ),
        "ports": [{"name": "http", "containerPort": VLLM_CONTAINER_PORT}],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"limits": {"nvidia.com/gpu": gpus}},
        "volumeMounts": mounts,
        # startup: the engine may take start_period to load; /health answers 200 only after engine
        # init (0.10.1-0.33.0)
        "startupProbe": _probe(HEALTH_PATH, "http", 10, start_failures),
        "readinessProbe": _probe(HEALTH_PATH, "http", 10, 3),
        "livenessProbe": _probe(HEALTH_PATH, "http", 30, 3),
    }
    pod: dict[str, Any] = {"containers": [container], "volumes": volumes}
    if previous is not None:
        # Kubernetes starts all pods at once; co-resident engines that profile together charge
        # each other's loading to their own KV budget (0.10.1-0.33.0; vLLM #55827). Wait for the
        # previous one.
        pod["initContainers"] = [
            {
                "name": f"wait-for-{previous}"[:63],
                "image": model_image(spec, m),
                "command": [
                    "python3",
                    "-c",
                    _WAIT_PREV.format(svc=previous, port=VLLM_CONTAINER_PORT, path=HEALTH_PATH),
                ],
            }
        ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "type": "ClusterIP",  # in-cluster only: agents go through LiteLLM
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": VLLM_CONTAINER_PORT, "targetPort": "http"}],
        },
    }
    return [deployment, service]


def litellm_manifests(spec: StackSpec, litellm_config_text: str) -> list[dict]:
    name = "litellm"
    labels = _labels(name, "proxy")
    key_env = spec.proxy.master_key_env
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "litellm-config", "labels": labels},
            "data": {"config.yaml": litellm_config_text},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET_NAME, "labels": labels},
            "type": "Opaque",
            "stringData": {key_env: "${" + key_env + "}"},  # placeholder, see the header
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": spec.proxy.replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "litellm",
                                "image": spec.proxy.image,
                                "args": [
                                    "--config",
                                    "/app/config.yaml",
                                    "--port",
                                    str(LITELLM_CONTAINER_PORT),
                                ],
                                "ports": [{"name": "http", "containerPort": LITELLM_CONTAINER_PORT}],
                                "env": [
                                    {
                                        "name": key_env,
                                        "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key_env}},
                                    },
                                    {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
                                    {"name": "LITELLM_TELEMETRY", "value": "False"},
                                ],
                                "volumeMounts": [
                                    {
                                        "name": "config",
                                        "mountPath": "/app/config.yaml",
                                        "subPath": "config.yaml",
                                    }
                                ],
                                "readinessProbe": _probe("/health/readiness", "http", 10, 3),
                                "livenessProbe": _probe("/health/liveliness", "http", 30, 3),
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "litellm-config"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "selector": {"app.kubernetes.io/name": name},
                "ports": [{"name": "http", "port": spec.proxy.port, "targetPort": "http"}],
            },
        },
    ]


def gpu_sharing_manifest(mems: list[Member], gpu_count: int) -> tuple[dict, int, float]:
    replicas = max(1, math.ceil(len(mems) / max(gpu_count, 1)))
    util_sum = sum(m.plan.gpu_memory_utilization for m in mems) / max(gpu_count, 1)
    config = (
        "version: v1\n"
        "flags:\n"
        "  migStrategy: none\n"
        "sharing:\n"
        "  timeSlicing:\n"
        "    renameByDefault: false\n"
        "    failRequestsGreaterThanOne: true\n"
        "    resources:\n"
        "    - name: nvidia.com/gpu\n"
        f"      replicas: {replicas}\n"
    )
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "residency-time-slicing", "labels": {"app.kubernetes.io/part-of": PART_OF}},
        "data": {"any": config},
    }
    return cm, replicas, util_sum


def _dump(docs: list[dict]) -> str:
    return yaml_dump(docs, all_docs=True)


def render_k8s(
    spec: StackSpec,
    mems: list[Member],
    litellm_config_text: str,
    gpu_count: int = 1,
    spec_dir: Path | None = None,
) -> dict[str, str]:
    """File name (relative to k8s/) -> YAML text."""
    files: dict[str, str] = {}
    names = [service_name(m.key) for m in mems]
    chain = " -> ".join(names + ["litellm"])
    previous: str | None = None
    for m, name in zip(mems, names, strict=True):
        head = MODEL_HEADER.format(
            key=m.key,
            model=m.spec.model,
            gmu=m.plan.gpu_memory_utilization,
            kv=m.plan.kv_cache_gib,
            tokens=m.plan.kv_cache_tokens,
            fp=m.plan.footprint_gib,
            chain=chain,
        )
        files[f"{name}.yaml"] = head + _dump(model_manifests(spec, m, previous, spec_dir))
        previous = name
    files["litellm.yaml"] = LITELLM_HEADER.format(secret=SECRET_NAME) + _dump(
        litellm_manifests(spec, litellm_config_text)
    )
    cm, replicas, util_sum = gpu_sharing_manifest(mems, gpu_count)
    files["gpu-sharing.yaml"] = GPU_SHARING_HEADER.format(replicas=replicas, util_sum=util_sum) + _dump([cm])
    return files
