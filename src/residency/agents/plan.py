"""The planner's side of the agent clients: the context each model must serve, and the verdict.

Every model of a stack with `agents:` serves every client kind listed there (the rendered Hermes
config lists every model, and Hermes can switch its primary to any of them).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from residency.agents.clients import CLIENTS, Need, context_needs, hermes_max_tokens, strictest

if TYPE_CHECKING:
    from residency.memory.engine import EngineSettings
    from residency.spec import ModelSpec, StackSpec

# Planned windows are rounded up to this many tokens (64,000 -> 65,536): a whole number of KV
# blocks for every block size vLLM uses, and the figure users recognise.
ROUND_TO = 8192
MEANING = (
    "The agent client refuses a model whose context window is below its minimum, or vLLM answers 400 "
    "to the max_tokens the client sends; no agent can use this model as planned."
)


def roles(spec: StackSpec) -> dict[str, str]:
    """role -> model name; primary defaults to the first model."""
    if spec.agents is None:
        return {}
    out = dict(spec.agents.roles)
    out.setdefault("primary", spec.models[0].name)
    return out


def needs(spec: StackSpec) -> list[Need]:
    return context_needs(spec.agents.clients) if spec.agents is not None else []


def planned_window(need: Need) -> int:
    return -(-need.tokens // ROUND_TO) * ROUND_TO


def plan_context(
    spec: StackSpec, m: ModelSpec, es: EngineSettings, notes: list[str]
) -> tuple[EngineSettings, list[str]]:
    """A model whose spec is silent on max_model_len is planned at the smallest window every client
    accepts (instead of vLLM's default, the model's whole max_position_embeddings): the memory goes
    to concurrency. An explicit max_model_len is kept; `client_error` judges it."""
    need = strictest(needs(spec))
    if need is None or m.max_model_len is not None:
        return es, notes
    window = planned_window(need)
    if es.max_model_len <= window:  # the model's own limit is the most vLLM serves: judged later
        return es, notes
    kept = [n for n in notes if not n.startswith("max_model_len ")]
    kept.append(
        f"max_model_len {window}: planned for the agents ({need.why}); vLLM's default would be "
        f"{es.max_model_len}"
    )
    return replace(es, max_model_len=window), kept


def client_error(spec: StackSpec, index: int, m: ModelSpec, max_model_len: int) -> tuple[str, str] | None:
    """(message, fix) when max_model_len is below what a client of this stack needs."""
    need = strictest(needs(spec))
    mt = spec.agents.max_tokens if spec.agents is not None else None
    if mt is not None and mt > max_model_len:
        return (
            f"agents.max_tokens {mt:,} exceeds {m.name}'s max_model_len {max_model_len:,}: vLLM answers 400 "
            f"'max_tokens={mt} cannot be greater than max_model_len={max_model_len}'",
            f"lower agents.max_tokens to at most {max_model_len} (or remove it: residency then plans it)",
        )
    if need is None or max_model_len >= need.tokens:
        return None
    c = need.client
    msg = (
        f"{m.name} is planned with max_model_len {max_model_len:,}, below what {c.title} accepts: {need.why} "
        f"({c.package})"
    )
    fix = f"set models[{index}:{m.name}].max_model_len to {planned_window(need)}"
    if m.max_model_len is None:
        fix += (
            " (the model's own limit is lower: serve a model with a longer context, or drop it from agents)"
        )
    return msg, fix


def plan_notes(spec: StackSpec, max_model_len: int, kv_cache_gib: float, kv_cache_tokens: int) -> list[str]:
    """What the agents' window costs (KV cache of one full-length sequence) and the max_tokens rendered."""
    if spec.agents is None:
        return []
    out = []
    if kv_cache_tokens > 0 and kv_cache_gib > 0:
        per_seq = kv_cache_gib / kv_cache_tokens * max_model_len
        out.append(
            f"agents: one {max_model_len:,}-token sequence holds {per_seq:.2f} GiB of KV cache "
            f"({kv_cache_tokens // max(1, max_model_len)} fit in the {kv_cache_gib:.2f} GiB pool)"
        )
    mt = max_tokens_for(spec, max_model_len)
    if mt is not None:
        how = "agents.max_tokens" if spec.agents.max_tokens else "the window Hermes leaves before compressing"
        out.append(f"agents: Hermes max_tokens {mt:,} ({how})")
    return out


def respect_clients(spec: StackSpec, fix: str) -> str:
    """Drop a "lower max_model_len to N" alternative from a memory fix when N is below what the
    agent clients accept: the model would load and then be refused by every agent."""
    need = strictest(needs(spec))
    if need is None:
        return fix
    parts = [p for p in fix.split(", or ") if not _too_short(p, need.tokens)]
    if len(parts) == len(fix.split(", or ")):
        return fix
    kept = ", or ".join(parts) or "raise gpu_memory_utilization"
    return f"{kept} (not a shorter max_model_len: {need.why})"


def _too_short(part: str, need: int) -> bool:
    m = re.match(r"lower max_model_len to (\d+)", part.strip())
    return bool(m) and int(m.group(1)) < need


def max_tokens_for(spec: StackSpec, max_model_len: int) -> int | None:
    """Hermes's model.max_tokens as rendered: agents.max_tokens, else the share the window leaves."""
    if spec.agents is None or not {"hermes", "clawrium"} & set(spec.agents.clients):
        return None
    if spec.agents.max_tokens is not None:
        return spec.agents.max_tokens
    return hermes_max_tokens(max_model_len)


def kinds(spec: StackSpec) -> list[str]:
    return list(spec.agents.clients) if spec.agents is not None else []


__all__ = [
    "CLIENTS",
    "roles",
    "needs",
    "plan_context",
    "client_error",
    "plan_notes",
    "max_tokens_for",
    "kinds",
]
