"""agents.md: what an agent fleet's provider settings need, ready to paste."""

from __future__ import annotations

from residency.render.common import Member
from residency.spec import StackSpec


def proxy_url(spec: StackSpec, host: str | None = None) -> str:
    h = host or spec.proxy.host
    if h in ("0.0.0.0", "::", ""):
        h = "localhost"
    return f"http://{h}:{spec.proxy.port}"


def agents_md(spec: StackSpec, mems: list[Member], host: str | None = None) -> str:
    url = proxy_url(spec, host)
    key_env = spec.proxy.master_key_env
    seen: dict[str, Member] = {}
    for m in mems:
        seen.setdefault(m.spec.name, m)
    lines = [
        "# Provider settings for agents",
        "",
        "Rendered by `residency render` from the plan. All models are reached through one",
        "OpenAI-compatible LiteLLM proxy.",
        "",
        f"- **base_url**: `{url}/v1`",
        f"- **api_key**: the value of `{key_env}` in `.env` (never commit it)",
        "- **API style**: OpenAI chat completions (`openai-completions`)",
        "",
        "| model | context window (tokens) | concurrent sequences | tool calls (auto) | reasoning |",
        "|---|---:|---:|---|---|",
    ]
    for name, m in seen.items():
        ctx = m.plan.max_model_len or m.spec.max_model_len or "engine default"
        seqs = m.plan.max_num_seqs or m.spec.max_num_seqs or "engine default"
        tools = (
            f"yes ({m.spec.tool_call_parser})"
            if m.spec.auto_tool_choice and m.spec.tool_call_parser
            else "no"
        )
        reasoning = m.spec.reasoning_parser or "no"
        lines.append(f"| `{name}` | {ctx} | {seqs} | {tools} | {reasoning} |")
    lines += [
        "",
        "The context window is vLLM's `--max-model-len`: set it as the agent's context length so",
        "prompts are not silently truncated or rejected.",
        "",
        "## OpenAI Python SDK / OpenAI Agents SDK",
        "",
        "```python",
        "import os",
        "from openai import OpenAI",
        "",
        f'client = OpenAI(base_url="{url}/v1", api_key=os.environ["{key_env}"])',
        "```",
        "",
        "## Hermes agent (provider: custom)",
        "",
        "```yaml",
    ]
    for name, m in seen.items():
        ctx = m.plan.max_model_len or m.spec.max_model_len
        lines += [
            "model:",
            "  provider: custom",
            f"  base_url: {url}/v1",
            f"  api_key: ${{{key_env}}}",
            f"  default: {name}",
        ]
        if ctx:
            lines.append(f"  context_length: {ctx}")
        lines.append("---")
    lines[-1] = "```"
    lines += [
        "",
        "## clawrium (provider type `litellm`)",
        "",
        "One provider per model: URL, the master key as bearer key, `--model` and `--context-window`.",
        "",
        "| provider url | model | context window |",
        "|---|---|---:|",
    ]
    for name, m in seen.items():
        ctx = m.plan.max_model_len or m.spec.max_model_len or "engine default"
        lines.append(f"| `{url}` | `{name}` | {ctx} |")
    lines.append("")
    return "\n".join(lines)
