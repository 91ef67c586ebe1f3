"""What each agent client needs from a served model: ONE table, each fact with where it was read.

Paths are inside the installed package (site-packages), at the version named in `package`.
`../shared/reference/agent-clients.md` summarises them; re-read them when a client's version moves.

The vLLM side of `max_tokens` (vllm 0.32.0): a request whose max_tokens exceeds max_model_len is
refused with 400 "max_tokens=N cannot be greater than max_model_len=M"
(vllm/renderers/params.py:258@0.32.0); within that, the output is clamped to the room the prompt
leaves (vllm/entrypoints/serve/utils/api_utils.py:188@0.32.0). So a client that sends max_tokens T
needs max_model_len >= T.
"""

from __future__ import annotations

from dataclasses import dataclass

HERMES_VERSION = "hermes-agent 0.19.0"
CLAWRIUM_VERSION = "clawrium 26.8.1"
OPENAI_AGENTS_VERSION = "openai-agents 0.24.0"

# Hermes Agent refuses to start below this context for the primary model and the compression
# model (agent/model_metadata.py:194 MINIMUM_CONTEXT_LENGTH = 64_000; enforced in
# agent/agent_init.py:1939 and agent/conversation_compression.py:411).
HERMES_MIN_CONTEXT = 64_000
# The custom OpenAI-compatible provider sends this when model.max_tokens is unset
# (plugins/model-providers/custom/__init__.py:100 default_max_tokens=65536; config read in
# agent/agent_init.py:1702).
HERMES_DEFAULT_MAX_TOKENS = 65_536
# Hermes compresses the conversation once it fills this share of the context: threshold 0.50,
# floored at 0.75 for windows below 512K (hermes_cli/config.py:1466). The prompt can grow to it,
# so an output budget of the rest keeps prompt + max_tokens within max_model_len.
HERMES_COMPRESSION_SHARE = 0.75

# Roles Hermes reads: model: (primary) and auxiliary.<role> (hermes_cli/config.py:1621-1720).
# Only primary and compression carry the context minimum (agent/auxiliary_client.py:4092
# _task_minimum_context_length).
HERMES_ROLES = (
    "primary",
    "compression",
    "vision",
    "web_extract",
    "skills_hub",
    "approval",
    "mcp",
    "title_generation",
    "memory_query_rewrite",
    "tts_audio_tags",
)
HERMES_MIN_CONTEXT_ROLES = frozenset({"primary", "compression"})
# Roles `clawctl agent provider attach --role` accepts (clawrium/core/provider_attachments.py:39-51).
CLAWRIUM_ROLES = frozenset(
    {
        "primary",
        "vision",
        "web_extract",
        "compression",
        "session_search",
        "skills_hub",
        "approval",
        "mcp",
        "title_generation",
        "curator",
    }
)


@dataclass(frozen=True)
class Client:
    kind: str
    title: str
    package: str  # the client version the facts below were read from
    min_context: int | None  # the model's context window must be >= this
    default_max_tokens: int | None  # sent on every request unless configured
    max_tokens_configurable: bool  # can residency's rendered config set max_tokens for it
    streams: bool  # sends stream=true (the streamed tool-call path decides)
    sends_temperature: bool  # False: the server's default sampling applies
    sources: tuple[str, ...]


CLIENTS: dict[str, Client] = {
    "hermes": Client(
        kind="hermes",
        title="Hermes Agent",
        package=HERMES_VERSION,
        min_context=HERMES_MIN_CONTEXT,
        default_max_tokens=HERMES_DEFAULT_MAX_TOKENS,
        max_tokens_configurable=True,  # model.max_tokens in hermes/config.yaml
        streams=True,  # run_agent streams every chat completion
        sends_temperature=False,
        sources=(
            "agent/model_metadata.py:194",
            "agent/agent_init.py:1939",
            "plugins/model-providers/custom/__init__.py:100",
            "hermes_cli/config.py:1466",
        ),
    ),
    "clawrium": Client(
        # Clawrium manages Hermes agents: Hermes's needs hold, but Clawrium renders Hermes's config
        # from clawrium/platform/registry/hermes/templates/hermes-config.canonical.yaml.j2, which
        # writes context_length and no max_tokens, so Hermes sends its 65,536 default.
        kind="clawrium",
        title="Clawrium (Hermes)",
        package=f"{CLAWRIUM_VERSION} managing {HERMES_VERSION}",
        min_context=HERMES_MIN_CONTEXT,
        default_max_tokens=HERMES_DEFAULT_MAX_TOKENS,
        max_tokens_configurable=False,
        streams=True,
        sends_temperature=False,
        sources=(
            "clawrium/platform/registry/hermes/templates/hermes-config.canonical.yaml.j2",
            "clawrium/cli/clawctl/provider.py:239 (--context-window)",
        ),
    ),
    "openai-agents": Client(
        # OpenAIChatCompletionsModel sends max_tokens/temperature only when ModelSettings sets them
        # (agents/models/openai_chatcompletions.py:695-699).
        kind="openai-agents",
        title="OpenAI Agents SDK",
        package=OPENAI_AGENTS_VERSION,
        min_context=None,
        default_max_tokens=None,
        max_tokens_configurable=True,
        streams=False,  # Runner.run; Runner.run_streamed streams
        sends_temperature=False,
        sources=("agents/models/openai_chatcompletions.py:695",),
    ),
    "openai": Client(
        kind="openai",
        title="OpenAI Python SDK",
        package="openai",
        min_context=None,
        default_max_tokens=None,
        max_tokens_configurable=True,
        streams=False,
        sends_temperature=False,
        sources=("sends only what the caller passes",),
    ),
}
CLIENT_KINDS = tuple(CLIENTS)


def hermes_max_tokens(max_model_len: int) -> int:
    """The output budget rendered as Hermes's model.max_tokens for a window of max_model_len.

    The prompt may fill HERMES_COMPRESSION_SHARE of the window before Hermes compresses, so the
    rest is the most the output can take without prompt + max_tokens exceeding the window."""
    room = max_model_len - int(max_model_len * HERMES_COMPRESSION_SHARE)
    return max(1, min(HERMES_DEFAULT_MAX_TOKENS, room))


@dataclass(frozen=True)
class Need:
    """What one client needs of one model's max_model_len, and why."""

    client: Client
    tokens: int
    why: str


def context_needs(kinds: list[str]) -> list[Need]:
    """The max_model_len each client kind needs of a model it is served.

    Every model is listed in Hermes's custom_providers (it can be switched to as primary), so
    the minimum holds for every model a Hermes fleet can reach, whatever its configured role."""
    out: list[Need] = []
    for k in kinds:
        c = CLIENTS[k]
        if c.min_context is not None:
            out.append(Need(c, c.min_context, f"{c.title} needs a context of at least {c.min_context:,}"))
        if c.default_max_tokens is not None and not c.max_tokens_configurable:
            out.append(
                Need(
                    c,
                    c.default_max_tokens,
                    f"{c.title} sends max_tokens {c.default_max_tokens:,} and the config cannot lower it",
                )
            )
    return out


def strictest(needs: list[Need]) -> Need | None:
    return max(needs, key=lambda n: n.tokens, default=None)
