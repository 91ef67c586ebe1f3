"""litellm.yaml: one `hosted_vllm/` deployment per vLLM instance, with capabilities and context window.

Settings hold for LiteLLM proxy >= 1.50 (checked against 1.108 in the e2e tests).
"""

from __future__ import annotations

from typing import Any

from residency.render.common import Member, yaml_dump
from residency.spec import StackSpec

# Local backends: a request either finishes or the engine is down, so retry once quickly and
# cool a failing deployment down only briefly (a restarted vLLM is back within a minute; a long
# cooldown turns a blip into "No deployments available" for agents).
REQUEST_TIMEOUT_S = 600  # long generations from big models on one GPU
NUM_RETRIES = 1
ALLOWED_FAILS = 3
COOLDOWN_S = 10


def model_entry(m: Member, api_base: str) -> dict[str, Any]:
    ms, mp = m.spec, m.plan
    tools = bool(ms.auto_tool_choice and ms.tool_call_parser)
    max_len = mp.max_model_len or ms.max_model_len
    info: dict[str, Any] = {"mode": "chat"}
    if max_len:
        # The served context window, so agents and LiteLLM's pre-call checks learn it.
        info["max_input_tokens"] = max_len
        info["max_tokens"] = max_len
    info.update(
        {
            "supports_function_calling": tools,
            "supports_tool_choice": tools,
            "supports_parallel_function_calling": tools,
            "supports_reasoning": ms.reasoning_parser is not None,
        }
    )
    return {
        "model_name": ms.name,
        "litellm_params": {
            # hosted_vllm, not openai/ or ollama/: keeps vLLM's tool-call streaming intact.
            "model": f"hosted_vllm/{ms.name}",
            "api_base": api_base,
            "api_key": "none",  # vLLM runs without --api-key behind the proxy
            "timeout": REQUEST_TIMEOUT_S,
        },
        "model_info": info,
    }


def render_litellm_config(spec: StackSpec, mems: list[Member], api_bases: dict[str, str]) -> dict[str, Any]:
    """The config as a dict; `api_bases` maps each member key to its `http://host:port/v1`."""
    return {
        "model_list": [model_entry(m, api_bases[m.key]) for m in mems],
        "litellm_settings": {
            "drop_params": False,  # never drop tools/tool_choice silently
            "request_timeout": REQUEST_TIMEOUT_S,
            "num_retries": NUM_RETRIES,
        },
        "router_settings": {
            "num_retries": NUM_RETRIES,
            "timeout": REQUEST_TIMEOUT_S,
            "allowed_fails": ALLOWED_FAILS,
            "cooldown_time": COOLDOWN_S,
            "retry_after": 1,
        },
        "general_settings": {
            "master_key": f"os.environ/{spec.proxy.master_key_env}",
            # LiteLLM's /health makes a real completion to every deployment; keep it off the
            # background loop. Liveness: /health/liveliness; backends: vLLM /health.
            "background_health_checks": False,
        },
    }


HEADER = """\
# LiteLLM proxy config rendered by `residency render` from the plan. Do not edit by hand:
# re-render instead. The master key comes from the environment ({env}), see .env.
# Each model_info carries the served context window (max_input_tokens = vLLM --max-model-len)
# and whether vLLM was started with --enable-auto-tool-choice and a --tool-call-parser.
"""


def litellm_yaml(spec: StackSpec, mems: list[Member], api_bases: dict[str, str]) -> str:
    body = yaml_dump(render_litellm_config(spec, mems, api_bases))
    return HEADER.format(env=spec.proxy.master_key_env) + body
