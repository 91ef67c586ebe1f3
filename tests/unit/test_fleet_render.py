"""Fleet rendering: per-host compose (compose-spec schema), one load-balanced litellm.yaml, k8s (kubernetes-validate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_placement import host, model, spec_of, toy_plan

from residency.planner.placement import place_fleet
from residency.render.fleet import render_fleet


def _fleet_spec(proxy_replicas: int = 2, placement: str = "pack"):
    """Hosts h (2 GPUs, labelled) and g (1 GPU); c tp2, a x3, b (toy planner figures, see test_placement)."""
    hosts = [host("h", count=2), host("g")]
    hosts[0]["labels"] = {"node.example/box": "h"}
    hosts[0]["address"] = "10.0.0.1"
    hosts[1]["address"] = "10.0.0.2"
    s = spec_of(
        hosts,
        [
            model("c", tensor_parallel_size=2, max_num_seqs=2, max_model_len=4096),
            model("a", replicas=3, max_num_seqs=1, max_model_len=4096, tool_call_parser="hermes"),
            model("b", max_num_seqs=2, max_model_len=4096),
        ],
        placement,
    )
    return s.model_copy(update={"proxy": s.proxy.model_copy(update={"replicas": proxy_replicas})})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    s = _fleet_spec()
    fp = place_fleet(s, plan_fn=toy_plan)
    assert fp.fits, fp.unplaced
    out = tmp_path_factory.mktemp("fleet")
    return s, fp, render_fleet(s, fp, out)


def _compose_schema():
    import check_jsonschema

    p = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(p.read_text())


def test_one_compose_file_per_host_valid_and_wired(rendered):
    import jsonschema

    s, fp, files = rendered
    assert {k for k in files if k.startswith("compose.")} == {
        "compose.h.yaml",
        "compose.g.yaml",
        "compose.proxy.yaml",
    }
    schema = _compose_schema()
    for name in ("compose.h.yaml", "compose.g.yaml", "compose.proxy.yaml"):
        jsonschema.validate(yaml.safe_load(files[name].content), schema)
    h = yaml.safe_load(files["compose.h.yaml"].content)["services"]
    # placement (test_placement's toy numbers): c on h:0,1; a#0, b on h:0; a#1 on h:1; a#2 on g:0
    assert list(h) == ["c", "a", "a-1", "b"]
    devs = {k: v["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for k, v in h.items()}
    assert devs == {"c": ["0", "1"], "a": ["0"], "a-1": ["1"], "b": ["0"]}
    # the start chain stays inside the host's file; ports are published and distinct
    assert h["a"]["depends_on"] == {"c": {"condition": "service_healthy"}}
    assert "depends_on" not in h["c"]
    ports = [v["ports"][0] for v in h.values()]
    assert ports == ["8000:8000", "8001:8000", "8002:8000", "8003:8000"]
    g = yaml.safe_load(files["compose.g.yaml"].content)["services"]
    assert list(g) == ["a-2"] and "depends_on" not in g["a-2"]
    assert g["a-2"]["command"][g["a-2"]["command"].index("--served-model-name") + 1] == "a"
    proxy = yaml.safe_load(files["compose.proxy.yaml"].content)["services"]
    assert set(proxy) == {"redis", "litellm"}
    assert proxy["litellm"]["environment"]["REDIS_HOST"] == "redis"


def test_litellm_load_balances_replicas_under_one_name(rendered):
    s, fp, files = rendered
    text = files["litellm.yaml"].content
    cfg = yaml.safe_load(text)
    bases = {}
    for e in cfg["model_list"]:
        bases.setdefault(e["model_name"], []).append(e["litellm_params"]["api_base"])
        assert "rpm" not in e["litellm_params"] and "tpm" not in e["litellm_params"]
    assert bases == {
        "c": ["http://10.0.0.1:8000/v1"],
        "a": ["http://10.0.0.1:8001/v1", "http://10.0.0.1:8002/v1", "http://10.0.0.2:8000/v1"],
        "b": ["http://10.0.0.1:8003/v1"],
    }
    rs = cfg["router_settings"]
    assert rs["routing_strategy"] == "simple-shuffle"
    assert (
        rs["num_retries"] >= rs["allowed_fails"] + 1
    )  # a request that hits a dead replica is retried elsewhere
    assert rs["redis_host"] == "os.environ/REDIS_HOST" and rs["redis_password"] == "os.environ/REDIS_PASSWORD"
    assert cfg["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    env = files[".env"]
    assert env.mode == 0o600 and env.secret
    assert "REDIS_PASSWORD=" in env.content and "LITELLM_MASTER_KEY=sk-" in env.content
    assert "sk-" not in text


def test_single_proxy_has_no_redis(tmp_path):
    s = _fleet_spec(proxy_replicas=1)
    files = render_fleet(s, place_fleet(s, plan_fn=toy_plan), tmp_path)
    rs = yaml.safe_load(files["litellm.yaml"].content)["router_settings"]
    assert "redis_host" not in rs
    assert "redis" not in yaml.safe_load(files["compose.proxy.yaml"].content)["services"]
    assert "REDIS_PASSWORD" not in files[".env"].content
    assert "k8s/redis.yaml" not in files


def test_k8s_manifests_validate_and_carry_replicas_gpus_affinity(rendered):
    import kubernetes_validate

    from residency.render.k8s import K8S_VERSION

    s, fp, files = rendered
    docs = {}
    for rel, f in files.items():
        if not rel.startswith("k8s/"):
            continue
        for doc in yaml.safe_load_all(f.content):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
    # a: three replicas, three different fractions (slack differs per GPU) -> three Deployments
    # named by number (same device type), one Service selecting all of them
    a_deps = [d for (k, n), d in docs.items() if k == "Deployment" and n.startswith("a-")]
    assert sorted(d["metadata"]["name"] for d in a_deps) == ["a-1", "a-2", "a-3"]
    assert sum(d["spec"]["replicas"] for d in a_deps) == 3
    assert docs[("Service", "a")]["spec"]["selector"] == {"residency.dev/model": "a"}
    c = docs[("Deployment", "c")]
    pod = c["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [{"matchExpressions": [{"key": "node.example/box", "operator": "In", "values": ["h"]}]}]

    def hosts_of(d):
        t = d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        return [e["values"][0] for term in t["nodeSelectorTerms"] for e in term["matchExpressions"]]

    # hosts without labels are matched by kubernetes.io/hostname = host name
    assert sorted(hosts_of(d)[0] for d in a_deps) == ["g", "h", "h"]
    lite = docs[("Deployment", "litellm")]
    assert lite["spec"]["replicas"] == 2
    env = {e["name"]: e for e in lite["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_HOST"]["value"] == "redis"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "REDIS_PASSWORD"
    assert ("Deployment", "redis") in docs and ("Service", "redis") in docs
    cfg = yaml.safe_load(docs[("ConfigMap", "litellm-config")]["data"]["config.yaml"])
    assert [(e["model_name"], e["litellm_params"]["api_base"]) for e in cfg["model_list"]] == [
        ("c", "http://c:8000/v1"),
        ("a", "http://a:8000/v1"),
        ("b", "http://b:8000/v1"),
    ]
    # time-slicing: the busiest GPU (h:0) holds c, a, b -> 3 slices per GPU
    assert "replicas: 3" in docs[("ConfigMap", "residency-time-slicing")]["data"]["any"]


def test_spread_adds_topology_spread_for_multi_replica_deployments(tmp_path):
    """a with a fixed fraction: the same args everywhere -> ONE Deployment of 3 replicas, spread."""
    s = _fleet_spec(placement="spread")
    s = s.model_copy(
        update={
            "models": [
                m.model_copy(update={"gpu_memory_utilization": 0.2}) if m.name == "a" else m for m in s.models
            ]
        }
    )
    fp = place_fleet(s, plan_fn=toy_plan)
    assert len(fp.by_model("a")) == 3
    files = render_fleet(s, fp, tmp_path)
    [dep, svc] = list(yaml.safe_load_all(files["k8s/a.yaml"].content))
    assert dep["metadata"]["name"] == "a" and dep["spec"]["replicas"] == 3
    tsc = dep["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert tsc["topologyKey"] == "kubernetes.io/hostname" and tsc["labelSelector"]["matchLabels"] == {
        "residency.dev/model": "a"
    }
    # pack mode renders no spread constraint
    s2 = s.model_copy(update={"placement": "pack"})
    files = render_fleet(s2, place_fleet(s2, plan_fn=toy_plan), tmp_path / "pack")
    dep = next(yaml.safe_load_all(files["k8s/a.yaml"].content))
    assert "topologySpreadConstraints" not in dep["spec"]["template"]["spec"]


def test_bundled_fleet_example_renders_valid_files(tmp_path):
    """examples/fleet.yaml through the real planner: every compose file and manifest validates."""
    import jsonschema
    import kubernetes_validate

    from residency.render.k8s import K8S_VERSION
    from residency.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml")
    fp = place_fleet(spec)
    assert fp.fits
    files = render_fleet(spec, fp, tmp_path)
    assert {"compose.spark.yaml", "compose.h100-a.yaml", "compose.h100-b.yaml", "compose.proxy.yaml"} <= set(
        files
    )
    schema = _compose_schema()
    n_docs = 0
    for rel, f in files.items():
        if rel.startswith("compose."):
            jsonschema.validate(yaml.safe_load(f.content), schema)
        elif rel.startswith("k8s/"):
            for doc in yaml.safe_load_all(f.content):
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
                n_docs += 1
    assert n_docs >= 5 + 5  # a Deployment and a Service per model at least, plus LiteLLM and Redis
    # the coder replicas (tensor_parallel 2) ask for 2 GPUs and are kept on the H100 boxes
    coder = [d for d in yaml.safe_load_all(files["k8s/coder.yaml"].content) if d["kind"] == "Deployment"]
    for d in coder:
        pod = d["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        assert {t["matchExpressions"][0]["values"][0] for t in terms} <= {"h100-a", "h100-b"}
    assert sum(d["spec"]["replicas"] for d in coder) == 2


def test_place_and_render_refuses_an_unplaceable_fleet(tmp_path):
    from residency.errors import ResidencyError
    from residency.render.fleet import place_and_render
    from residency.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml")
    files = place_and_render(spec, tmp_path)
    assert "compose.spark.yaml" in files and "litellm.yaml" in files
    big = spec.model_copy(
        update={
            "models": [m.model_copy(update={"replicas": 5}) if m.name == "moe" else m for m in spec.models]
        }
    )
    with pytest.raises(ResidencyError) as e:
        place_and_render(big, tmp_path)
    assert e.value.exit_code == 1
    assert "moe#1" in str(e.value) and "fix:" in str(e.value)
