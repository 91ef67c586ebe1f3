"""compose.yaml in host-network mode (`proxy.network: host`) and image overrides (`image:`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_render_helpers import two_model_plan, two_model_spec

from residency.errors import SpecError
from residency.render.stack import render_files
from residency.spec import parse_spec


def _schema():
    import check_jsonschema

    p = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(p.read_text())


def _render(tmp_path, spec):
    files = render_files(spec, two_model_plan(), tmp_path)
    return files, yaml.safe_load(files["compose.yaml"].content)["services"]


def test_host_mode_services_ports_api_bases_and_healthchecks(tmp_path):
    import jsonschema

    spec = two_model_spec(network="host", port=4100, host="127.0.0.1")
    files, svcs = _render(tmp_path, spec)
    jsonschema.validate({"services": svcs}, _schema())
    assert all(s["network_mode"] == "host" for s in svcs.values())
    assert not any("ports" in s or "expose" in s for s in svcs.values())  # nothing to publish on the host
    # each engine on its own port (8000 + its index in the spec), on loopback only
    for name, port in (("qwen3-next", 8000), ("qwen3-4b", 8001)):
        cmd = svcs[name]["command"]
        assert cmd[cmd.index("--port") + 1] == str(port) and cmd[cmd.index("--host") + 1] == "127.0.0.1"
        assert f"http://127.0.0.1:{port}/health" in " ".join(svcs[name]["healthcheck"]["test"])
    lite = svcs["litellm"]
    assert lite["command"][-4:] == ["--port", "4100", "--host", "127.0.0.1"]
    assert "http://127.0.0.1:4100/health/liveliness" in " ".join(lite["healthcheck"]["test"])
    bases = {e["model_name"]: e["litellm_params"]["api_base"] for e in yaml.safe_load(files["litellm.yaml"].content)["model_list"]}  # fmt: skip
    assert bases == {"qwen3-next": "http://127.0.0.1:8000/v1", "qwen3-4b": "http://127.0.0.1:8001/v1"}
    # the start chain is the same as on a bridge
    assert svcs["qwen3-4b"]["depends_on"] == {"qwen3-next": {"condition": "service_healthy"}}
    assert svcs["litellm"]["depends_on"] == {"qwen3-4b": {"condition": "service_healthy"}}
    assert "Host network" in files["compose.yaml"].content.splitlines()[4]
    # Kubernetes still reaches each engine through its Service
    k8s_lite = "\n".join(f.content for k, f in files.items() if k.startswith("k8s/"))
    assert "http://qwen3-next:8000/v1" in k8s_lite and "127.0.0.1:8000" not in k8s_lite


def test_host_mode_explicit_ports_and_collisions(tmp_path):
    spec = two_model_spec(network="host")
    spec.models[1].port = 9100
    _, svcs = _render(tmp_path, spec)
    cmd = svcs["qwen3-4b"]["command"]
    assert cmd[cmd.index("--port") + 1] == "9100"
    spec.models[1].port = 8000  # the first model's default port
    with pytest.raises(SpecError, match=r"models\[qwen3-4b\]\.port: port 8000 is also used by qwen3-next"):
        _render(tmp_path / "b", spec)
    spec.models[1].port = 4000  # the proxy's
    with pytest.raises(SpecError, match="proxy.port"):
        _render(tmp_path / "c", spec)


def test_bridge_mode_unchanged_and_labels(tmp_path):
    _, svcs = _render(tmp_path, two_model_spec())
    assert not any("network_mode" in s for s in svcs.values())
    assert svcs["litellm"]["ports"] == ["0.0.0.0:4000:4000"]
    assert svcs["qwen3-4b"]["expose"] == ["8000"]
    assert svcs["qwen3-4b"]["labels"] == {
        "io.residency.kind": "vllm",
        "io.residency.model": "qwen3-4b",
        "io.residency.replica": "0",
    }
    assert svcs["litellm"]["labels"] == {"io.residency.kind": "proxy"}
    # Debian's docker-compose 1.29 rejects start_interval: the file must not carry it
    assert not any("start_interval" in s["healthcheck"] for s in svcs.values())


def test_image_overrides_and_cpu_device(tmp_path):
    spec = two_model_spec(image="registry.local/litellm:1.0")
    spec.models[0].image = "nvcr.io/nvidia/vllm:25.09-py3"
    _, svcs = _render(tmp_path, spec)
    assert svcs["qwen3-next"]["image"] == "nvcr.io/nvidia/vllm:25.09-py3"
    assert svcs["qwen3-4b"]["image"] == "vllm/vllm-openai:v0.11.0"  # default
    assert svcs["litellm"]["image"] == "registry.local/litellm:1.0"
    assert "deploy" in svcs["qwen3-4b"]  # a GPU device: GPUs reserved
    spec.device.name = "cpu"  # vLLM's CPU backend: nothing to reserve
    _, svcs = _render(tmp_path / "cpu", spec)
    assert not any("deploy" in s for s in svcs.values())


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"proxy": {"network": "overlay"}}, "proxy.network"),
        ({"proxy": {"image": "bad image;rm"}}, "proxy.image"),
        ({"models": [{"name": "a", "model": "x/y", "image": "-x"}]}, "models[0:a].image"),
        ({"models": [{"name": "a", "model": "x/y", "image": "a" * 256}]}, "models[0:a].image"),
    ],
)
def test_bad_network_and_image_name_the_field(raw, field):
    base = {"device": {"total_gib": 24}, "models": [{"name": "a", "model": "x/y"}]}
    with pytest.raises(SpecError) as ei:
        parse_spec({**base, **raw})
    assert str(ei.value).startswith(field)


def test_host_network_is_for_one_box():
    with pytest.raises(SpecError, match="proxy.network host is for one box"):
        parse_spec(
            {
                "hosts": [{"name": "h", "device": {"total_gib": 24}}],
                "models": [{"name": "a", "model": "x/y"}],
                "proxy": {"network": "host"},
            }
        )
