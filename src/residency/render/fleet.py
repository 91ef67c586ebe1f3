"""Rendering a multi-host fleet: per-host compose files, one load-balanced litellm.yaml, Kubernetes.

Everything per vLLM instance comes from the one-box renderers (`render.compose.vllm_service`,
`render.litellm.model_entry`/`render_litellm_config`, `render.k8s.model_manifests`, and through
them `render.flags.serve_args`); this module only adds what a fleet needs on top: which host runs
what, published ports, replicas as deployments of one model name, Redis for a scaled-out proxy,
node affinity.

Files (relative to the output folder):
  compose.<host>.yaml   vLLM services of that host, one start chain per host, ports published
  compose.proxy.yaml    LiteLLM (+ Redis when proxy.replicas > 1)
  litellm.yaml          one model_name per model, one deployment per replica
  .env                  LiteLLM master key (mode 0600)
  agents.md             proxy URL and model names
  k8s/                  per-model Deployments (replicas, GPU requests, node affinity), LiteLLM, Redis
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from residency.planner.placement import FleetPlan, Placement
from residency.planner.result import ModelPlan
from residency.render.common import VLLM_CONTAINER_PORT, Member, service_name
from residency.spec import StackSpec

# LiteLLM router settings for replicas of self-hosted vLLM backends (LiteLLM proxy >= 1.50;
# checked with the test stack's LiteLLM in tests/e2e/test_fleet_e2e.py).
#
# routing_strategy simple-shuffle with rpm/tpm unset picks a replica uniformly at random. vLLM
# backends have no rate limits to track, and a vLLM engine queues and batches internally, so
# counting in-flight requests (least-busy) or tokens (usage-based) buys little and costs a shared
# cache write per request (a Redis round trip when the proxy is scaled out). simple-shuffle is
# stateless, so every proxy replica routes the same way without coordination.
ROUTING_STRATEGY = "simple-shuffle"
# A replica that restarts refuses connections for minutes (model load). LiteLLM's retry does not
# skip a deployment that failed with a retryable error (connection refused maps to 500), and the
# failure that starts a cooldown is recorded by a callback that can land after the retry has
# picked its replica (seen with LiteLLM 1.108 in tests/e2e/test_fleet_e2e.py). So cool a replica
# down at its first failure (allowed_fails 0) and retry up to 3 times: an agent sees an error only
# if every pick lands on the dead replica before its cooldown is seen.
NUM_RETRIES = 3
ALLOWED_FAILS = 0
# Probe a cooled-down replica again every 30 s: about the time a restarted small model needs to
# come back; a big one stays cooled down a few rounds, costing one failed (retried) try per round.
COOLDOWN_S = 30
REDIS_PORT = 6379
REDIS_IMAGE = "redis:7-alpine"


# --------------------------------------------------------------------------------------------
# placements -> render members
# --------------------------------------------------------------------------------------------


def member_key(p: Placement) -> str:
    return p.name if p.replica == 0 else f"{p.name}-{p.replica}"


def _model_plan(fleet: FleetPlan, p: Placement, spec_model) -> ModelPlan:
    """The planner's figures for this replica (from its first GPU's verified plan)."""
    mp = None
    for h in fleet.hosts:
        if h.name != p.host:
            continue
        for g in h.gpus:
            if g.gpu == p.gpus[0] and g.plan:
                for m in g.plan["models"]:
                    if m["name"] == p.name:
                        mp = ModelPlan.model_validate(m)
    if mp is None:  # unverified placement: the demand figures
        mp = ModelPlan(
            name=p.name,
            model=spec_model.model,
            gpu_memory_utilization=p.gpu_memory_utilization,
            requested_gib=0.0,
            free_at_start_gib=0.0,
            weights_gib=0.0,
            activation_gib=0.0,
            non_torch_gib=0.0,
            cudagraph_gib=0.0,
            kv_cache_gib=p.kv_cache_gib,
            kv_cache_tokens=0,
            max_concurrency=p.max_concurrency,
            block_size=16,
            footprint_gib=p.footprint_gib,
            verdict=p.verdict,
            max_model_len=spec_model.max_model_len or 0,
            max_num_seqs=spec_model.max_num_seqs or 0,
            tensor_parallel_size=spec_model.tensor_parallel_size,
        )
    return mp.model_copy(update={"host": p.host, "gpus": list(p.gpus), "replica": p.replica})


def fleet_members(spec: StackSpec, fleet: FleetPlan) -> list[tuple[Placement, Member]]:
    """(placement, render member) per replica, in launch order (spec order, then replica)."""
    by_name = {m.name: m for m in spec.models}
    out = []
    for p in fleet.placements:
        ms = by_name[p.name]
        out.append((p, Member(ms, _model_plan(fleet, p, ms), member_key(p))))
    return out


def api_base(p: Placement) -> str:
    return f"http://{p.address}:{p.port}/v1"


# --------------------------------------------------------------------------------------------
# LiteLLM
# --------------------------------------------------------------------------------------------


def router_settings(spec: StackSpec) -> dict[str, Any]:
    rs: dict[str, Any] = {
        "routing_strategy": ROUTING_STRATEGY,
        "num_retries": NUM_RETRIES,
        "allowed_fails": ALLOWED_FAILS,
        "cooldown_time": COOLDOWN_S,
        "retry_after": 0,  # no wait before retrying on another replica
    }
    if spec.proxy.replicas > 1:
        # Several proxy replicas share cooldowns and in-flight counts through Redis.
        rs.update(
            {
                "redis_host": "os.environ/REDIS_HOST",
                "redis_port": "os.environ/REDIS_PORT",
                "redis_password": "os.environ/REDIS_PASSWORD",
            }
        )
    return rs


def litellm_config(spec: StackSpec, members: list[Member], bases: dict[str, str]) -> dict[str, Any]:
    from residency.render.litellm import render_litellm_config

    cfg = render_litellm_config(spec, members, bases)
    rs = cfg.setdefault("router_settings", {})
    rs.update(router_settings(spec))
    cfg.setdefault("litellm_settings", {})["num_retries"] = NUM_RETRIES
    return cfg


LITELLM_HEADER = """\
# LiteLLM proxy config for the fleet, rendered by `residency render` from the placement.
# Do not edit: re-render. The master key comes from the environment ({env}), see .env.
# Replicas of a model are several deployments of ONE model_name: the router load-balances them
# ({strategy}, no rpm/tpm: uniform choice), retries a failed request on another replica
# (num_retries {retries}) and cools a failing replica down for {cooldown} s after {fails_plus}
# failures in a minute, so a restarting backend costs no agent an error.
{redis}"""


def litellm_fleet_yaml(spec: StackSpec, members: list[Member], bases: dict[str, str]) -> str:
    import yaml

    redis = (
        f"# The proxy runs as {spec.proxy.replicas} replicas: they share router state through Redis\n"
        "# (REDIS_HOST, REDIS_PORT, REDIS_PASSWORD from the environment).\n"
        if spec.proxy.replicas > 1
        else ""
    )
    head = LITELLM_HEADER.format(
        env=spec.proxy.master_key_env,
        strategy=ROUTING_STRATEGY,
        retries=NUM_RETRIES,
        cooldown=COOLDOWN_S,
        fails_plus=ALLOWED_FAILS + 1,
        redis=redis,
    )
    return head + yaml.safe_dump(litellm_config(spec, members, bases), sort_keys=False, width=120)


# --------------------------------------------------------------------------------------------
# compose
# --------------------------------------------------------------------------------------------

COMPOSE_HEADER = """\
# vLLM services of host {host} ({address}, {device}), rendered by `residency render` from the
# fleet placement (vLLM {version}). Re-render instead of editing. Run on {host}:
#   docker compose -f compose.{host}.yaml up -d
# Start order on this host: {order}; each waits for the previous one to be healthy, so no two
# engines profile memory at the same time. The vLLM ports are published because the LiteLLM
# proxy (compose.proxy.yaml) runs elsewhere: allow them only from the proxy's address.
"""


def host_compose(
    spec: StackSpec, host: str, pairs: list[tuple[Placement, Member]], spec_dir: Path | None
) -> dict:
    from residency.render.compose import vllm_service

    services: dict[str, Any] = {}
    previous = None
    for p, m in pairs:
        name = service_name(m.key)
        svc = vllm_service(spec, m, previous, spec_dir)
        svc.pop("expose", None)
        svc["ports"] = [f"{p.port}:{VLLM_CONTAINER_PORT}"]
        services[name] = svc
        previous = name
    return {"name": f"residency-{service_name(host)}", "services": services}


def proxy_compose(spec: StackSpec) -> dict:
    from residency.render.compose import PROXY_SERVICE, proxy_service

    svc = proxy_service(spec, None)
    services: dict[str, Any] = {}
    if spec.proxy.replicas > 1:
        services["redis"] = {
            "image": REDIS_IMAGE,
            "command": ["redis-server", "--requirepass", "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"],
            "healthcheck": {"test": ["CMD-SHELL", 'redis-cli -a "$$REDIS_PASSWORD" ping'], "interval": "10s"},
            "environment": {"REDIS_PASSWORD": "${REDIS_PASSWORD}"},
            "restart": "unless-stopped",
        }
        svc["environment"] = {
            **svc.get("environment", {}),
            "REDIS_HOST": "redis",
            "REDIS_PORT": str(REDIS_PORT),
            "REDIS_PASSWORD": "${REDIS_PASSWORD}",
        }
        svc["depends_on"] = {"redis": {"condition": "service_healthy"}}
    services[PROXY_SERVICE] = svc
    return {"name": "residency-proxy", "services": services}


# --------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------

MODEL_LABEL = "residency.dev/model"
HOST_LABEL = "kubernetes.io/hostname"

K8S_MODEL_HEADER = """\
# Model `{name}` ({model}): {n} replica(s), rendered by `residency render` from the placement.
# {groups}
# Node affinity keeps the pods on the hosts the placement chose (by the hosts' labels, else
# {host_label}); Kubernetes cannot pin a pod to one GPU index, so GPU sharing relies on the
# time-slicing config in gpu-sharing.yaml and the planned fractions. The Service `{svc}` selects
# every replica ({model_label}={name}); LiteLLM routes to it and kube-proxy balances the pods.
"""


def _node_terms(hosts) -> list[dict]:
    terms = []
    for h in hosts:
        labels = h.labels or {HOST_LABEL: h.name}
        terms.append(
            {
                "matchExpressions": [
                    {"key": k, "operator": "In", "values": [v]} for k, v in sorted(labels.items())
                ]
            }
        )
    return terms


def k8s_model(
    spec: StackSpec, fleet: FleetPlan, name: str, pairs, previous: str | None, spec_dir
) -> tuple[str, str]:
    """(file name, YAML) for one model: a Deployment per group of identical settings + one Service."""
    import yaml

    from residency.render.k8s import model_manifests

    hosts_by_name = {h.name: h for h in fleet.hosts}
    groups: dict[tuple, list] = {}
    for p, m in pairs:
        key = (p.device, round(m.plan.gpu_memory_utilization, 4), m.plan.kv_cache_memory_bytes)
        groups.setdefault(key, []).append((p, m))
    svc_name = service_name(name)
    docs: list[dict] = []
    notes = []
    # Deployment names: the model's, else by device type, else numbered (same device, other fraction)
    by_device = [k[0] for k in groups]
    if len(groups) == 1:
        dep_names = [svc_name]
    elif len(set(by_device)) == len(by_device):
        dep_names = [service_name(f"{name}-{d}") for d in by_device]
    else:
        dep_names = [service_name(f"{name}-{i + 1}") for i in range(len(groups))]
    for dep_name, ((device, gmu, _), gp) in zip(dep_names, groups.items(), strict=True):
        p0, m0 = gp[0]
        member = Member(m0.spec, m0.plan, dep_name)
        dep, _svc = model_manifests(spec, member, previous, spec_dir)
        dep["spec"]["replicas"] = len(gp)
        for meta in (dep["metadata"], dep["spec"]["template"]["metadata"]):
            meta["labels"][MODEL_LABEL] = name
        placed_hosts = sorted({p.host for p, _ in gp})
        pod = dep["spec"]["template"]["spec"]
        pod["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": _node_terms([hosts_by_name[h] for h in placed_hosts])
                }
            }
        }
        if spec.placement == "spread" and len(gp) > 1:
            pod["topologySpreadConstraints"] = [
                {
                    "maxSkew": 1,
                    "topologyKey": HOST_LABEL,
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {MODEL_LABEL: name}},
                }
            ]
        docs.append(dep)
        notes.append(
            f"{dep_name}: {len(gp)} x {device} at gpu_memory_utilization {gmu} on {', '.join(placed_hosts)}"
        )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": svc_name,
                "labels": {MODEL_LABEL: name, "app.kubernetes.io/part-of": "residency"},
            },
            "spec": {
                "type": "ClusterIP",
                "selector": {MODEL_LABEL: name},
                "ports": [{"name": "http", "port": VLLM_CONTAINER_PORT, "targetPort": "http"}],
            },
        }
    )
    head = K8S_MODEL_HEADER.format(
        name=name,
        model=pairs[0][1].spec.model,
        n=len(pairs),
        groups="\n# ".join(notes),
        host_label=HOST_LABEL,
        svc=svc_name,
        model_label=MODEL_LABEL,
    )
    return f"{svc_name}.yaml", head + yaml.safe_dump_all(docs, sort_keys=False, width=200)


def k8s_redis() -> list[dict]:
    labels = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/part-of": "residency"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "redis", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": "redis"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "redis",
                                "image": REDIS_IMAGE,
                                "args": ["--requirepass", "$(REDIS_PASSWORD)"],
                                "env": [_secret_env("REDIS_PASSWORD")],
                                "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "redis", "labels": labels},
            "spec": {
                "selector": {"app.kubernetes.io/name": "redis"},
                "ports": [{"name": "redis", "port": REDIS_PORT}],
            },
        },
    ]


def _secret_env(key: str) -> dict:
    from residency.render.k8s import SECRET_NAME

    return {"name": key, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}}


def k8s_litellm(spec: StackSpec, config_text: str) -> list[dict]:
    from residency.render.k8s import litellm_manifests

    docs = litellm_manifests(spec, config_text)
    if spec.proxy.replicas > 1:
        for d in docs:
            if d["kind"] == "Secret":
                d["stringData"]["REDIS_PASSWORD"] = "${REDIS_PASSWORD}"  # placeholder, like the master key
            if d["kind"] == "Deployment":
                c = d["spec"]["template"]["spec"]["containers"][0]
                c["env"] += [
                    {"name": "REDIS_HOST", "value": "redis"},
                    {"name": "REDIS_PORT", "value": str(REDIS_PORT)},
                    _secret_env("REDIS_PASSWORD"),
                ]
    return docs


def render_k8s_fleet(spec: StackSpec, fleet: FleetPlan, pairs, spec_dir: Path | None) -> dict[str, str]:
    """File name (relative to k8s/) -> YAML."""
    import yaml

    from residency.render.k8s import GPU_SHARING_HEADER, LITELLM_HEADER, SECRET_NAME, gpu_sharing_manifest

    files: dict[str, str] = {}
    by_model: dict[str, list] = {}
    for p, m in pairs:
        by_model.setdefault(p.name, []).append((p, m))
    previous = None
    for name, group in by_model.items():
        fname, text = k8s_model(spec, fleet, name, group, previous, spec_dir)
        files[fname] = text
        previous = service_name(name)
    # In the cluster LiteLLM reaches each model through its Service (one deployment per model).
    svc_members = [Member(g[0][1].spec, g[0][1].plan, name) for name, g in by_model.items()]
    bases = {m.key: f"http://{service_name(m.key)}:{VLLM_CONTAINER_PORT}/v1" for m in svc_members}
    lite = litellm_fleet_yaml(spec, svc_members, bases)
    files["litellm.yaml"] = LITELLM_HEADER.format(secret=SECRET_NAME) + yaml.safe_dump_all(
        k8s_litellm(spec, lite), sort_keys=False, width=200
    )
    if spec.proxy.replicas > 1:
        files["redis.yaml"] = (
            "# Shared router state for the scaled-out LiteLLM proxy. REDIS_PASSWORD comes from the Secret.\n"
            + yaml.safe_dump_all(k8s_redis(), sort_keys=False, width=200)
        )
    # time-slicing: as many nvidia.com/gpu replicas per GPU as the busiest GPU holds pods
    busiest: list[Member] = []
    for h in fleet.hosts:
        for g in h.gpus:
            ms = [m for p, m in pairs if p.host == h.name and g.gpu in p.gpus]
            if len(ms) > len(busiest):
                busiest = ms
    cm, replicas, util_sum = gpu_sharing_manifest(busiest, 1)
    files["gpu-sharing.yaml"] = GPU_SHARING_HEADER.format(
        replicas=replicas, util_sum=util_sum
    ) + yaml.safe_dump_all([cm], sort_keys=False, width=200)
    return files


# --------------------------------------------------------------------------------------------
# all files
# --------------------------------------------------------------------------------------------


def render_fleet(
    spec: StackSpec,
    fleet: FleetPlan,
    out_dir: Path,
    *,
    spec_dir: Path | None = None,
    rotate_key: bool = False,
) -> dict:
    """Everything `residency render` writes for a multi-host spec: relative path -> RenderedFile.

    Same shape as `render.stack.render_files`, so the render command writes it with `write_files`.
    """
    import yaml

    from residency.render.stack import agent_rendered_files, check_names
    from residency.render.writer import RenderedFile, env_file, new_master_key, read_env_value

    pairs = fleet_members(spec, fleet)
    check_names([m for _, m in pairs])
    key_env = spec.proxy.master_key_env
    key = None if rotate_key else read_env_value(out_dir / ".env", key_env)
    key = key or new_master_key()
    files: dict[str, RenderedFile] = {}
    for h in fleet.hosts:
        on_host = [(p, m) for p, m in pairs if p.host == h.name]
        if not on_host:
            continue
        order = " -> ".join(service_name(m.key) for _, m in on_host)
        head = COMPOSE_HEADER.format(
            host=h.name, address=h.address, device=h.device, version=spec.vllm_version, order=order
        )
        body = yaml.safe_dump(host_compose(spec, h.name, on_host, spec_dir), sort_keys=False, width=200)
        files[f"compose.{service_name(h.name)}.yaml"] = RenderedFile(head + body)
    files["compose.proxy.yaml"] = RenderedFile(
        "# LiteLLM proxy for the fleet (run it on any host that reaches the vLLM hosts' ports).\n"
        + yaml.safe_dump(proxy_compose(spec), sort_keys=False, width=200)
    )
    members = [m for _, m in pairs]
    files["litellm.yaml"] = RenderedFile(
        litellm_fleet_yaml(spec, members, {m.key: api_base(p) for p, m in pairs})
    )
    env = env_file(key_env, key)
    if spec.proxy.replicas > 1:
        rkey = None if rotate_key else read_env_value(out_dir / ".env", "REDIS_PASSWORD")
        env = RenderedFile(
            env.content + f"REDIS_PASSWORD={rkey or new_master_key()[3:]}\n", mode=env.mode, secret=True
        )
    files[".env"] = env
    files.update(agent_rendered_files(spec, members))
    for rel, text in render_k8s_fleet(spec, fleet, pairs, spec_dir).items():
        files[f"k8s/{rel}"] = RenderedFile(text)
    return files


def place_and_render(
    spec: StackSpec, out_dir: Path, *, spec_dir: Path | None = None, rotate_key: bool = False
) -> dict:
    """`residency render` for a multi-host spec: place, refuse if anything is unplaced or rejected, render.

    Raises errors.PlanDoesNotFitError (exit 1) naming each refusal and its fix.
    """
    from residency.errors import PlanDoesNotFitError
    from residency.planner.placement import place_fleet

    fleet = place_fleet(spec)
    if not fleet.fits:
        parts = [f"{u.reason} (fix: {u.fix})" for u in fleet.unplaced] + fleet.warnings
        raise PlanDoesNotFitError(
            "the fleet placement does not fit, so nothing was rendered: "
            + "; ".join(parts)
            + ". See `residency plan`"
        )
    return render_fleet(spec, fleet, out_dir, spec_dir=spec_dir, rotate_key=rotate_key)
