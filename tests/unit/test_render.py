"""render: flags, compose (schema + semantics), litellm.yaml, k8s (kubernetes-validate), agents.md, writer."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from test_render_helpers import mplan, two_model_plan, two_model_spec

from residency.errors import SpecError
from residency.render.common import members, start_period_seconds
from residency.render.flags import serve_args
from residency.render.stack import render_files
from residency.render.writer import ChangedFilesError, read_env_value, write_files


def _compose_schema():
    import check_jsonschema

    p = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(p.read_text())


@pytest.fixture
def rendered(tmp_path):
    spec, plan = two_model_spec(), two_model_plan()
    files = render_files(spec, plan, tmp_path)
    return spec, plan, files


# ---------------------------------------------------------------- flags


def test_flags_carry_plan_and_spec_settings():
    spec, plan = two_model_spec(), two_model_plan()
    ms, mp = spec.models[0], plan.model("qwen3-next")
    a = serve_args(ms, mp, vllm_version="0.11.0", port=8123, host="127.0.0.1")
    assert a[0] == "Qwen/Qwen3-Next-80B-A3B-Instruct-FP8"

    def val(flag):
        return a[a.index(flag) + 1]

    assert val("--served-model-name") == "qwen3-next"
    assert val("--port") == "8123" and val("--host") == "127.0.0.1"
    assert val("--gpu-memory-utilization") == "0.65"
    # 20 GiB = 20 * 2^30 = 21474836480 bytes, given in the plan
    assert val("--kv-cache-memory-bytes") == "21474836480"
    assert val("--max-model-len") == "131072"
    assert val("--max-num-seqs") == "8"
    assert val("--max-num-batched-tokens") == "8192"
    assert val("--kv-cache-dtype") == "fp8"
    assert val("--tool-call-parser") == "hermes"
    assert "--enable-auto-tool-choice" in a  # on by default when a parser is set
    assert "--enforce-eager" not in a and "--reasoning-parser" not in a
    assert "--tensor-parallel-size" not in a  # TP 1 is the default


def test_flags_second_model_and_extra_args_last():
    spec, plan = two_model_spec(), two_model_plan()
    a = serve_args(spec.models[1], plan.model("qwen3-4b"), vllm_version="0.11.0", port=8000)
    assert "--enforce-eager" in a
    assert a[a.index("--reasoning-parser") + 1] == "qwen3"
    assert "--enable-auto-tool-choice" not in a and "--tool-call-parser" not in a
    assert "--kv-cache-memory-bytes" not in a
    assert a[-2:] == ["--seed", "7"]


def test_flags_kv_bytes_refused_before_0_10_2():
    spec, plan = two_model_spec(), two_model_plan()
    with pytest.raises(SpecError, match="0.10.2"):
        serve_args(spec.models[0], plan.model("qwen3-next"), vllm_version="0.10.1", port=8000)


def test_start_period_scales_with_weights():
    # 300 + 20*7.5 = 450 s (already a multiple of 30); 300 + 20*75 = 1800 s
    assert start_period_seconds(7.5) == 450
    assert start_period_seconds(75.0) == 1800
    assert start_period_seconds(0.01) == 330  # 300.2 rounds up to the next 30 s


def test_members_follow_launch_order():
    spec, plan = two_model_spec(), two_model_plan()
    assert [m.key for m in members(spec, plan)] == ["qwen3-next", "qwen3-4b"]


# ---------------------------------------------------------------- compose


def test_compose_valid_against_compose_spec_schema(rendered):
    import jsonschema

    _, _, files = rendered
    doc = yaml.safe_load(files["compose.yaml"].content)
    jsonschema.validate(doc, _compose_schema())
    # and a broken document is caught by the same check (the validation has teeth)
    bad = json.loads(json.dumps(doc))
    bad["services"]["qwen3-4b"]["healthcheck"]["start_periode"] = "30s"  # misspelt key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _compose_schema())


def test_compose_semantics(rendered):
    spec, plan, files = rendered
    doc = yaml.safe_load(files["compose.yaml"].content)
    svcs = doc["services"]
    assert list(svcs) == ["qwen3-next", "qwen3-4b", "litellm"]
    # start chain in plan order, LiteLLM last
    assert "depends_on" not in svcs["qwen3-next"]
    assert svcs["qwen3-4b"]["depends_on"] == {"qwen3-next": {"condition": "service_healthy"}}
    assert svcs["litellm"]["depends_on"] == {"qwen3-4b": {"condition": "service_healthy"}}
    # only the proxy publishes a port
    published = [n for n, s in svcs.items() if s.get("ports")]
    assert published == ["litellm"]
    assert svcs["litellm"]["ports"] == ["0.0.0.0:4000:4000"]
    for name in ("qwen3-next", "qwen3-4b"):
        s = svcs[name]
        assert s["image"] == "vllm/vllm-openai:v0.11.0"
        assert "/health" in " ".join(s["healthcheck"]["test"])
        assert s["ipc"] == "host"
        assert s["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
        assert any(v.endswith(":/root/.cache/huggingface") for v in s["volumes"])
        assert s["entrypoint"] == ["vllm", "serve"]
        assert s["command"][s["command"].index("--served-model-name") + 1] == name
    # big model gets the long start period: 300 + 20*75 = 1800 s; small one 300 + 20*7.5 = 450 s
    assert svcs["qwen3-next"]["healthcheck"]["start_period"] == "1800s"
    assert svcs["qwen3-4b"]["healthcheck"]["start_period"] == "450s"
    assert svcs["qwen3-next"]["environment"]["VLLM_USE_FLASHINFER_SAMPLER"] == "0"
    # the same flag list as the process runtime (one flag builder)
    expect = serve_args(
        spec.models[1], plan.model("qwen3-4b"), vllm_version="0.11.0", port=8000, host="0.0.0.0"
    )
    assert svcs["qwen3-4b"]["command"] == expect
    # the proxy reads the key from .env, never inline
    assert svcs["litellm"]["env_file"] == [".env"]
    assert "sk-" not in files["compose.yaml"].content


def test_compose_local_model_dir_is_mounted(tmp_path):
    model_dir = tmp_path / "toy"
    model_dir.mkdir()
    spec = two_model_spec()
    spec.models[1].model = str(model_dir)
    plan = two_model_plan()
    files = render_files(spec, plan, tmp_path / "out")
    svc = yaml.safe_load(files["compose.yaml"].content)["services"]["qwen3-4b"]
    assert f"{model_dir}:/models/qwen3-4b:ro" in svc["volumes"]
    assert svc["command"][0] == "/models/qwen3-4b"


# ---------------------------------------------------------------- litellm


def test_litellm_config(rendered):
    _, _, files = rendered
    cfg = yaml.safe_load(files["litellm.yaml"].content)
    ml = {e["model_name"]: e for e in cfg["model_list"]}
    assert set(ml) == {"qwen3-next", "qwen3-4b"}
    nxt = ml["qwen3-next"]
    assert nxt["litellm_params"]["model"] == "hosted_vllm/qwen3-next"
    assert nxt["litellm_params"]["api_base"] == "http://qwen3-next:8000/v1"
    assert nxt["model_info"]["max_input_tokens"] == 131072
    assert nxt["model_info"]["supports_function_calling"] is True
    small = ml["qwen3-4b"]["model_info"]
    assert small["max_input_tokens"] == 32768
    assert small["supports_function_calling"] is False  # no parser -> auto tool choice off
    assert small["supports_reasoning"] is True
    assert cfg["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert cfg["general_settings"]["background_health_checks"] is False
    assert cfg["router_settings"]["cooldown_time"] <= 30


# ---------------------------------------------------------------- k8s


def test_k8s_manifests_validate(rendered):
    import kubernetes_validate

    from residency.render.k8s import K8S_VERSION

    _, _, files = rendered
    k8s = {k: v for k, v in files.items() if k.startswith("k8s/")}
    assert set(k8s) == {
        "k8s/qwen3-next.yaml",
        "k8s/qwen3-4b.yaml",
        "k8s/litellm.yaml",
        "k8s/gpu-sharing.yaml",
    }
    kinds = []
    for rel, rf in k8s.items():
        for doc in yaml.safe_load_all(rf.content):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            kinds.append((rel, doc["kind"]))
    assert ("k8s/litellm.yaml", "Secret") in kinds and ("k8s/litellm.yaml", "ConfigMap") in kinds
    # a broken manifest fails the same validation
    dep = next(yaml.safe_load_all(k8s["k8s/qwen3-4b.yaml"].content))
    dep["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def test_k8s_model_deployment_semantics(rendered):
    spec, plan, files = rendered
    dep, svc = list(yaml.safe_load_all(files["k8s/qwen3-4b.yaml"].content))
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
    # startup budget = start period 450 s / 10 s period = 45 failures
    assert c["startupProbe"]["failureThreshold"] == 45
    assert c["args"] == serve_args(
        spec.models[1], plan.model("qwen3-4b"), vllm_version="0.11.0", port=8000, host="0.0.0.0"
    )
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    # the second model waits for the first one's /health
    assert "qwen3-next" in pod["initContainers"][0]["command"][-1]
    assert svc["spec"]["type"] == "ClusterIP"
    first = next(yaml.safe_load_all(files["k8s/qwen3-next.yaml"].content))
    assert "initContainers" not in first["spec"]["template"]["spec"]
    sharing = files["k8s/gpu-sharing.yaml"].content
    assert "time-slicing" in sharing.lower() and "MPS" in sharing
    assert "replicas: 2" in sharing  # two pods share the one GPU
    # the secret manifest holds a placeholder, never the key
    key = read_env_value_from(files[".env"].content)
    assert key not in files["k8s/litellm.yaml"].content
    assert "${LITELLM_MASTER_KEY}" in files["k8s/litellm.yaml"].content


def read_env_value_from(text: str) -> str:
    return text.strip().splitlines()[-1].split("=", 1)[1]


# ---------------------------------------------------------------- agents.md


def test_agents_md(rendered):
    _, _, files = rendered
    md = files["agents.md"].content
    assert "http://localhost:4000/v1" in md
    assert "| `qwen3-next` | 131072 |" in md
    assert "| `qwen3-4b` | 32768 |" in md
    assert "sk-" not in md


# ---------------------------------------------------------------- writer


def test_writer_env_mode_key_kept_and_diff_refused(tmp_path, capsys):
    spec, plan = two_model_spec(), two_model_plan()
    out = tmp_path / "out"
    rep = write_files(out, render_files(spec, plan, out), force=False)
    assert ".env" in rep.created and "compose.yaml" in rep.created
    env = out / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    key = read_env_value(env, "LITELLM_MASTER_KEY")
    assert key and key.startswith("sk-") and len(key) > 40
    # re-render: same key, nothing changes
    rep2 = write_files(out, render_files(spec, plan, out), force=False)
    assert rep2.created == [] and rep2.changed == [] and ".env" in rep2.unchanged
    # a changed plan: diff shown, refused without --force, nothing written
    plan.models[0] = mplan("qwen3-4b", "Qwen/Qwen3-4B-Instruct-2507", 0.25, weights=7.5, kv=12.0)
    before = (out / "compose.yaml").read_text()
    capsys.readouterr()
    with pytest.raises(ChangedFilesError, match="--force"):
        write_files(out, render_files(spec, plan, out), force=False)
    shown = capsys.readouterr().out
    assert "-    - '0.2'\n" in shown and "+    - '0.25'\n" in shown
    assert (out / "compose.yaml").read_text() == before
    # rotating the key: .env reported as changed but its content never shown
    files = render_files(spec, plan, out, rotate_key=True)
    new_key = read_env_value_from(files[".env"].content)
    assert new_key != key
    with pytest.raises(ChangedFilesError):
        write_files(out, files, force=False)
    shown = capsys.readouterr().out
    assert ".env: would change" in shown
    assert key not in shown and new_key not in shown
    rep3 = write_files(out, files, force=True)
    assert ".env" in rep3.changed and "compose.yaml" in rep3.changed
    assert read_env_value(env, "LITELLM_MASTER_KEY") == new_key
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_writer_loose_env_mode_counts_as_change(tmp_path):
    spec, plan = two_model_spec(), two_model_plan()
    out = tmp_path / "out"
    write_files(out, render_files(spec, plan, out), force=False)
    (out / ".env").chmod(0o644)
    with pytest.raises(ChangedFilesError):
        write_files(out, render_files(spec, plan, out), force=False)
    write_files(out, render_files(spec, plan, out), force=True)
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600


def test_k8s_secret_placeholder_warns_before_it_overwrites_a_created_secret(rendered):
    # `kubectl create secret ... --from-env-file` then `kubectl apply -f k8s/` would put the placeholder back
    text = rendered[2]["k8s/litellm.yaml"].content
    head = text.split("apiVersion:", 1)[0]
    assert "--from-env-file=../.env" in head and "puts the placeholder back" in head
    assert "LITELLM_MASTER_KEY: ${LITELLM_MASTER_KEY}" in text  # the placeholder
