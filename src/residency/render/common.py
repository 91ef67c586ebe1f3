"""Pieces shared by the renderers and the runtimes: launch order, names, ports, timings."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from residency.planner.result import ModelPlan, Plan
from residency.ports import DEFAULT_PROXY_PORT, DEFAULT_VLLM_PORT
from residency.spec import ModelSpec, StackSpec

VLLM_CONTAINER_PORT = DEFAULT_VLLM_PORT  # every vLLM container listens here; not published on the host
LITELLM_CONTAINER_PORT = DEFAULT_PROXY_PORT
HEALTH_PATH = "/health"  # vLLM: 200 once the engine is initialised, 503 when dead (all versions)
HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"


@dataclass(frozen=True)
class Member:
    """One vLLM instance to launch: the spec entry, its plan, and a unique instance key."""

    spec: ModelSpec
    plan: ModelPlan
    key: str  # the model name, or name-<replica> for replicas after the first


def members(spec: StackSpec, plan: Plan) -> list[Member]:
    """vLLM instances in the plan's launch order (replicas of a model follow each other)."""
    by_name = {m.name: m for m in spec.models}
    order = {n: i for i, n in enumerate(plan.launch_order)}
    planned = sorted(plan.models, key=lambda mp: (order.get(mp.name, len(order)), mp.replica))
    out: list[Member] = []
    for mp in planned:
        ms = by_name.get(mp.name)
        if ms is None:
            continue
        key = mp.name if mp.replica == 0 else f"{mp.name}-{mp.replica}"
        out.append(Member(ms, mp, key))
    return out


def service_name(key: str) -> str:
    """A compose service / Kubernetes object name: lowercase [a-z0-9-], starting with a letter."""
    s = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    if not s or not s[0].isalpha():
        s = "m-" + s
    return s[:50].rstrip("-")


def start_period_seconds(weights_gib: float) -> int:
    """Grace before a failing health check counts: 5 min plus 20 s per GiB of weights.

    Weights load at roughly 1 GiB/s from a local disk, then torch.compile and graph capture take
    a few minutes on big models; 20 s/GiB leaves room for slow disks (Qwen3-Next-80B-FP8,
    ~75 GiB -> 300 + 1500 = 1800 s). A first start that downloads the checkpoint takes longer:
    pre-download it into the Hugging Face cache.
    """
    return int(math.ceil((300 + 20 * max(weights_gib, 0.0)) / 30.0) * 30)


def fmt_gib(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def yaml_dump(obj, *, all_docs: bool = False) -> str:
    """YAML with multi-line strings as literal blocks (readable embedded configs)."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):  # no &id001 anchors: every manifest reads on its own
            return True

    def _str(dumper, data):
        if "\n" in data:
            return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
        return dumper.represent_scalar("tag:yaml.org,2002:str", data)

    _Dumper.add_representer(str, _str)
    if all_docs:
        return yaml.dump_all(obj, Dumper=_Dumper, sort_keys=False, width=200)
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=200)
