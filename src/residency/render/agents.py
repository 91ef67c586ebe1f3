"""What the agent clients read: agents.md, hermes/config.yaml (Hermes Agent), clawrium.sh (Clawrium).

Key names and file shapes are Hermes Agent's and Clawrium's own (see residency.agents.clients for
the versions they were read from): hermes/config.yaml is ONE document that replaces
$HERMES_HOME/config.yaml; clawrium.sh runs `clawctl` with the key on stdin, never in argv.
"""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from residency.agents import plan as agent_plan
from residency.agents.clients import CLAWRIUM_ROLES, CLIENTS, HERMES_VERSION
from residency.render.common import Member, service_name
from residency.spec import StackSpec

# The checks agents.md reports per model when verify has run (ids of residency verify).
MEASURED = (
    ("T1", "tool call (auto)"),
    ("T2", "tool call (auto, streamed)"),
    ("A1", "context window >= client minimum"),
    ("A2", "client max_tokens accepted"),
    ("A3", "Hermes-shaped streamed tool call"),
)


def proxy_url(spec: StackSpec, host: str | None = None) -> str:
    h = host or spec.proxy.host
    if h in ("0.0.0.0", "::", ""):
        h = "localhost"
    return f"http://{h}:{spec.proxy.port}"


def _windows(mems: list[Member]) -> dict[str, int | None]:
    """Served context window per model name (first instance; replicas share the settings)."""
    out: dict[str, int | None] = {}
    for m in mems:
        out.setdefault(m.spec.name, m.plan.max_model_len or m.spec.max_model_len or None)
    return out


def hermes_max_tokens(spec: StackSpec, mems: list[Member]) -> int | None:
    """One model.max_tokens for every model Hermes may use: the smallest window decides."""
    wins = [w for w in _windows(mems).values() if w]
    return agent_plan.max_tokens_for(spec, min(wins)) if wins else None


def provider_name(model: str) -> str:
    """A Clawrium provider name (^[a-zA-Z][a-zA-Z0-9_-]{0,63}$, clawrium core/providers/storage.py:56)."""
    return ("residency-" + service_name(model))[:64].rstrip("-")


# ------------------------------------------------------------------------------------ Hermes


def hermes_config(spec: StackSpec, mems: list[Member], host: str | None = None) -> dict[str, Any]:
    url = proxy_url(spec, host) + "/v1"
    env = spec.proxy.master_key_env
    wins = _windows(mems)
    roles = agent_plan.roles(spec) or {"primary": next(iter(wins))}
    primary = roles["primary"]
    model: dict[str, Any] = {
        "provider": "custom",
        "base_url": url,
        "api_key": f"${{{env}}}",
        "default": primary,
        "api_mode": "chat_completions",
    }
    if wins[primary]:
        model["context_length"] = wins[primary]
    mt = hermes_max_tokens(spec, mems)
    if mt:
        model["max_tokens"] = mt
    cfg: dict[str, Any] = {
        "model": model,
        "custom_providers": [
            {
                "name": "residency",
                "base_url": url,
                "key_env": env,
                "api_mode": "chat_completions",
                "model": primary,
                "models": {n: ({"context_length": w} if w else {}) for n, w in wins.items()},
            }
        ],
    }
    aux = {}
    for role, name in roles.items():
        if role == "primary":
            continue
        block: dict[str, Any] = {
            "provider": "custom",
            "base_url": url,
            "api_key": f"${{{env}}}",
            "model": name,
        }
        if wins.get(name):
            block["context_length"] = wins[name]
        aux[role] = block
    if aux:
        cfg["auxiliary"] = aux
    return cfg


def hermes_yaml(spec: StackSpec, mems: list[Member], host: str | None = None) -> str:
    env = spec.proxy.master_key_env
    head = (
        f"# Hermes Agent config ({HERMES_VERSION}), rendered by `residency render`: ONE document.\n"
        "# Use it as $HERMES_HOME/config.yaml (default ~/.hermes/config.yaml), or merge its blocks\n"
        "# into yours. The key is not in this file: Hermes expands ${%s} from the environment or\n"
        "# from $HERMES_HOME/.env; residency keeps it in the .env of the render folder (this file's\n"
        "# parent folder, mode 0600). From that folder:\n"
        "#   grep '^%s=' .env >> ~/.hermes/.env && chmod 600 ~/.hermes/.env\n"
        "# context_length is vLLM's --max-model-len (Hermes needs >= 64,000); max_tokens keeps prompt +\n"
        "# output within it (without it Hermes sends 65,536).\n"
    ) % (env, env)
    return head + yaml.safe_dump(hermes_config(spec, mems, host), sort_keys=False, width=120)


# ------------------------------------------------------------------------------------ Clawrium


def clawrium_sh(spec: StackSpec, mems: list[Member], host: str | None = None) -> str:
    q = shlex.quote
    url = proxy_url(spec, host)
    env = spec.proxy.master_key_env
    wins = _windows(mems)
    roles = agent_plan.roles(spec) or {"primary": next(iter(wins))}
    lines = [
        "#!/bin/sh",
        "# Clawrium providers for this stack, rendered by `residency render`. One litellm provider per",
        "# model (clawctl provider registry create, or edit when it exists), then, with an agent name,",
        "# the Hermes roles (clawctl agent provider attach --role). The key is read from the .env next",
        "# to this script (or $RESIDENCY_ENV_FILE) and given on stdin: never in argv or this file.",
        "#   sh clawrium.sh            # providers only",
        "#   sh clawrium.sh AGENT      # providers, then attach them to AGENT; then: clawctl agent sync AGENT",
        "# Clawrium renders Hermes's config with context_length and no max_tokens, so Hermes sends its",
        "# default 65,536: every model's --context-window here is its max_model_len, planned for that.",
        "set -eu",
        'here=$(cd "$(dirname "$0")" && pwd)',
        'env_file="${RESIDENCY_ENV_FILE:-$here/.env}"',
        'agent="${1:-}"',
        f'key() {{ sed -n "s/^{env}=//p" "$env_file" | head -n 1; }}',
        f'[ -n "$(key)" ] || {{ echo "clawrium.sh: no {env}= in $env_file (run residency render)" >&2; exit 1; }}',
        "provider() {  # NAME MODEL WINDOW",
        '  if clawctl provider registry describe "$1" >/dev/null 2>&1; then verb=edit; else verb=create; fi',
        '  if [ "$verb" = create ]; then',
        f'    key | clawctl provider registry create "$1" --type litellm --litellm-url {q(url)} \\',
        '      --model "$2" --api-key-stdin --context-window "$3"',
        "  else",
        f'    key | clawctl provider registry edit "$1" --litellm-url {q(url)} \\',
        '      --model "$2" --api-key-stdin --context-window "$3"',
        "  fi",
        "}",
    ]
    for name, w in wins.items():
        if not w:
            lines.append(f"# {name}: no planned context window; set models[].max_model_len and re-render")
            continue
        lines.append(f"provider {q(provider_name(name))} {q(name)} {w}")
    lines.append('if [ -n "$agent" ]; then')
    for role, name in roles.items():
        if role not in CLAWRIUM_ROLES:
            lines.append(f"  # {role} -> {name}: not a role Clawrium attaches; set it in Hermes's config")
            continue
        lines.append(
            f'  clawctl agent provider attach {q(provider_name(name))} --agent "$agent" --role {q(role)}'
        )
    lines += [
        '  echo "attached; now run: clawctl agent sync $agent"',
        "fi",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ agents.md


def _cell(measured: dict[str, Any] | None, model: str, cid: str) -> str:
    if not measured:
        return "not measured"
    entry = (measured.get("models") or {}).get(model, {}).get(cid)
    if not isinstance(entry, dict):
        return "not run"
    return str(entry.get("status", "?"))


def agents_md(
    spec: StackSpec,
    mems: list[Member],
    host: str | None = None,
    *,
    measured: dict[str, Any] | None = None,
    files: tuple[str, ...] = (),
) -> str:
    url = proxy_url(spec, host)
    key_env = spec.proxy.master_key_env
    wins = _windows(mems)
    kinds = agent_plan.kinds(spec)
    mt = hermes_max_tokens(spec, mems)
    seqs = {}
    for m in mems:
        seqs.setdefault(m.spec.name, m.plan.max_num_seqs or m.spec.max_num_seqs or "engine default")
    lines = [
        "# Provider settings for agents",
        "",
        "Rendered by `residency render` from the plan. All models are reached through one",
        "OpenAI-compatible LiteLLM proxy.",
        "",
        f"- **base_url**: `{url}/v1`",
        f"- **api_key**: the value of `{key_env}` in the `.env` file of this folder (mode 0600; never",
        "  commit it). `residency up` uses the same key (it reads this `.env`; `--env-file` overrides).",
        "- **API style**: OpenAI chat completions",
    ]
    if kinds:
        lines.append(
            "- **clients served**: " + ", ".join(f"{CLIENTS[k].title} ({CLIENTS[k].package})" for k in kinds)
        )
    roles = agent_plan.roles(spec)
    if roles:
        lines.append("- **roles**: " + ", ".join(f"{r} → `{n}`" for r, n in roles.items()))
    lines += [
        "",
        "| model | context window (tokens) | concurrent sequences | tool-call parser (configured) | reasoning |",
        "|---|---:|---:|---|---|",
    ]
    for name in wins:
        m = next(x for x in mems if x.spec.name == name)
        parser = m.spec.tool_call_parser if m.spec.auto_tool_choice and m.spec.tool_call_parser else "none"
        lines.append(
            f"| `{name}` | {wins[name] or 'engine default'} | {seqs[name]} | {parser} | {m.spec.reasoning_parser or 'no'} |"
        )
    lines += ["", "## Measured by `residency verify`", ""]
    if measured:
        lines.append(
            f"From the verify run of {measured.get('at', '?')} (re-render after the next run to refresh)."
        )
        lines.append("")
        lines.append("| model | " + " | ".join(f"{t} ({c})" for c, t in MEASURED) + " |")
        lines.append("|---|" + "---|" * len(MEASURED))
        for name in wins:
            lines.append(f"| `{name}` | " + " | ".join(_cell(measured, name, c) for c, _ in MEASURED) + " |")
    else:
        lines.append(
            "Not measured yet: the configured parser above is intent, not proof. Run `residency up SPEC`,"
        )
        lines.append(
            "`residency verify SPEC`, then `residency render` again to show the measured results here."
        )
    lines += [
        "",
        "The context window is vLLM's `--max-model-len`: give it to the agent as its context length so",
        "prompts are not silently truncated or rejected.",
        "",
        "## OpenAI Python SDK",
        "",
        "```python",
        "import os",
        "from openai import OpenAI",
        "",
        f'client = OpenAI(base_url="{url}/v1", api_key=os.environ["{key_env}"])',
        "```",
        "",
        "## OpenAI Agents SDK",
        "",
        "The proxy speaks chat completions, not the Responses API, and there is no OpenAI tracing",
        "endpoint behind it: use the chat-completions model and turn tracing off.",
        "",
        "```python",
        "import os",
        "from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled",
        "from openai import AsyncOpenAI",
        "",
        "set_tracing_disabled(True)",
        f'client = AsyncOpenAI(base_url="{url}/v1", api_key=os.environ["{key_env}"])',
        f'model = OpenAIChatCompletionsModel(model="{(roles or {"primary": next(iter(wins))})["primary"]}", '
        "openai_client=client)",
        'agent = Agent(name="assistant", instructions="You are helpful.", model=model)',
        'print(Runner.run_sync(agent, "Hello").final_output)',
        "```",
        "",
    ]
    if "hermes/config.yaml" in files:
        lines += [
            "## Hermes Agent",
            "",
            "`hermes/config.yaml` in this folder is one complete config: the primary `model:` block",
            f"(with `context_length` and `max_tokens` {mt}), `custom_providers:` listing every model, and",
            "the `auxiliary:` roles. Install it and the key:",
            "",
            "```sh",
            "mkdir -p ~/.hermes && cp hermes/config.yaml ~/.hermes/config.yaml",
            f"grep '^{key_env}=' .env >> ~/.hermes/.env && chmod 600 ~/.hermes/.env",
            "```",
            "",
        ]
    if "clawrium.sh" in files:
        lines += [
            "## Clawrium",
            "",
            "`clawrium.sh` registers one `litellm` provider per model (with its context window) and, given",
            "an agent name, attaches them to the Hermes roles; the key goes to `clawctl` on stdin.",
            "",
            "```sh",
            "sh clawrium.sh my-agent && clawctl agent sync my-agent",
            "```",
            "",
            "Clawrium renders Hermes's config without `max_tokens`, so Hermes sends 65,536: the models",
            "are planned with a context of at least that.",
            "",
        ]
    return "\n".join(lines)


def agent_files(
    spec: StackSpec, mems: list[Member], measured: dict[str, Any] | None = None
) -> dict[str, str]:
    """Relative path -> content of every agent file for this spec."""
    kinds = set(agent_plan.kinds(spec))
    out: dict[str, str] = {}
    if kinds & {"hermes", "clawrium"}:
        out["hermes/config.yaml"] = hermes_yaml(spec, mems)
    if "clawrium" in kinds:
        out["clawrium.sh"] = clawrium_sh(spec, mems)
    out["agents.md"] = agents_md(spec, mems, measured=measured, files=tuple(out))
    return out
