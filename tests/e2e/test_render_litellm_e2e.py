"""The rendered litellm.yaml actually serves: a real LiteLLM with it, in front of the session's real
toy vLLM servers, answers /v1/models, /model/info and a chat (a tool call through the proxy too).
"""

from __future__ import annotations

import httpx
import pytest
import yaml

from residency.planner.result import DevicePlan, ModelPlan, Plan
from residency.render.common import members
from residency.render.litellm import litellm_yaml
from residency.render.writer import new_master_key
from residency.spec import parse_spec
from tests.e2e.stackkit import WEATHER_TOOL

pytestmark = pytest.mark.e2e



def _plan(spec) -> Plan:
    def mp(m):
        return ModelPlan(
            name=m.name, model=m.model, gpu_memory_utilization=0.1, requested_gib=2.3, free_at_start_gib=20.0,
            weights_gib=0.01, activation_gib=0.1, non_torch_gib=0.1, cudagraph_gib=0.0, kv_cache_gib=1.0,
            kv_cache_tokens=100000, max_concurrency=24.0, block_size=128, footprint_gib=1.5, verdict="ok",
            max_model_len=4096, max_num_seqs=4,
        )  # fmt: skip

    return Plan(
        vllm_version="0.32.0",
        device=DevicePlan(name="cpu", total_gib=23.4, unified=True, used_gib=0.0, budget_gib=22.0),
        fits=True,
        utilization_sum=0.2,
        launch_order=[m.name for m in spec.models],
        models=[mp(m) for m in spec.models],
    )


def test_rendered_litellm_config_serves(tmp_path, toy_stack, litellm_factory):
    hermes, chat = toy_stack.servers["hermes"], toy_stack.servers["chat"]
    # the session servers run as "hermes" (hermes parser) and "chat"; the spec says the same
    spec = parse_spec(
        {
            "vllm_version": "0.32.0",
            "device": {"name": "cpu", "total_gib": 23.4, "unified": True},
            "models": [
                {
                    "name": "hermes",
                    "model": "toy-hermes",
                    "max_model_len": 4096,
                    "tool_call_parser": "hermes",
                },
                {"name": "chat", "model": "toy-chat", "max_model_len": 4096},
            ],
        }
    )
    mems = members(spec, _plan(spec))
    cfg_path = tmp_path / "litellm.yaml"
    cfg_path.write_text(litellm_yaml(spec, mems, {"hermes": hermes.base_url, "chat": chat.base_url}))
    cfg = yaml.safe_load(cfg_path.read_text())
    assert cfg["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"

    key = new_master_key()
    proxy = litellm_factory(config_path=cfg_path, env={"LITELLM_MASTER_KEY": key})
    hdr = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", headers=hdr, timeout=120) as c:
        ids = {m["id"] for m in c.get("/v1/models").json()["data"]}
        assert ids == {"hermes", "chat"}
        # the key is really enforced: a wrong key is refused
        assert c.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"}).status_code in (
            400,
            401,
            403,
        )
        # model_info as rendered: context window and tool capability
        info = {d["model_name"]: d["model_info"] for d in c.get("/model/info").json()["data"]}
        assert info["hermes"]["max_input_tokens"] == 4096
        assert info["hermes"]["supports_function_calling"] is True
        assert info["chat"]["supports_function_calling"] is False
        r = c.post(
            "/v1/chat/completions",
            json={
                "model": "chat",
                "messages": [{"role": "user", "content": "Hello, how are you?"}],
                "max_tokens": 16,
                "temperature": 0,  # vLLM samples at 1.0 by default: greedy makes the toy deterministic
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"]
        r = c.post(
            "/v1/chat/completions",
            json={
                "model": "hermes",
                "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                "tools": [WEATHER_TOOL],
                "max_tokens": 64,
                "temperature": 0,  # vLLM samples at 1.0 by default: greedy makes the toy deterministic
            },
        )
        assert r.status_code == 200, r.text
        calls = r.json()["choices"][0]["message"].get("tool_calls") or []
        assert calls and calls[0]["function"]["name"] == "get_weather"
