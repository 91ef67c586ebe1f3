"""Checks for what the agent clients of the spec's `agents:` need (ids A1-A3, same report format).

A1  the context window the proxy advertises (LiteLLM /model/info max_input_tokens, else the
    backend's max_model_len) >= each client's minimum;
A2  a request with the max_tokens each client sends (Hermes: the rendered model.max_tokens;
    Clawrium's Hermes: 65,536, it cannot be configured) is accepted;
A3  a Hermes-shaped request (streamed, tools offered, a system prompt, no temperature, no
    tool_choice) yields a structured streamed tool call whose arguments parse as a JSON object that
    fits the called tool's schema (required keys, property types): Hermes runs the tool with them.

Client facts come from residency.agents.clients; the checks are skipped when the spec declares no
agents (or verify runs with --url).
"""

from __future__ import annotations

import json

import httpx

from residency.agents.clients import CLIENTS, Client, hermes_max_tokens
from residency.verify import prompts as P
from residency.verify.checks.base import FAIL, PASS, SKIP, ModelCtx, Outcome, failure, schema_problems
from residency.verify.checks.tools import _stream_calls
from residency.verify.client import Hop, RequestFailed, Streamed, error_message, stream_chat

# A3 offers the tools and shape Hermes does but bounds the output: a model that answers in prose
# instead of calling would otherwise generate up to max_tokens (A2 covers max_tokens itself).
A3_MAX_TOKENS = 512


def _kinds(ctx: ModelCtx) -> list[Client]:
    return [CLIENTS[k] for k in getattr(ctx.targets, "agent_kinds", None) or []]


def _no_agents() -> Outcome:
    return Outcome(SKIP, "no agents: section in the spec (or --url): client needs unknown")


def _advertised(ctx: ModelCtx) -> tuple[int | None, str]:
    info = (ctx.proxy_info() or {}).get("model_info") or {}
    if isinstance(info.get("max_input_tokens"), int):
        return info["max_input_tokens"], "proxy model_info.max_input_tokens"
    n = ctx.max_model_len()
    return n, "backend max_model_len"


def _stack_window(ctx: ModelCtx) -> int | None:
    """The smallest window the proxy advertises: the rendered Hermes model.max_tokens follows it."""
    infos = ctx.stack.get("model_info")
    wins = []
    if isinstance(infos, list):
        for e in infos:
            n = ((e or {}).get("model_info") or {}).get("max_input_tokens") if isinstance(e, dict) else None
            if isinstance(n, int) and n > 0:
                wins.append(n)
    return min(wins) if wins else _advertised(ctx)[0]


def sent_max_tokens(ctx: ModelCtx, c: Client) -> int | None:
    """The max_tokens this client sends with residency's rendered config."""
    if c.default_max_tokens is None:
        return None
    if not c.max_tokens_configurable:
        return c.default_max_tokens
    explicit = getattr(ctx.targets, "agent_max_tokens", None)
    if explicit:
        return explicit
    win = _stack_window(ctx)
    return hermes_max_tokens(win) if win else c.default_max_tokens


def a1_context(ctx: ModelCtx) -> Outcome:
    clients = [c for c in _kinds(ctx) if c.min_context is not None]
    if not _kinds(ctx):
        return _no_agents()
    if not clients:
        return Outcome(SKIP, "no client of this spec has a context minimum")
    n, where = _advertised(ctx)
    if n is None:
        return Outcome(
            FAIL, "no context window advertised", f"set models[{ctx.name}].max_model_len and re-render"
        )
    low = [c for c in clients if n < (c.min_context or 0)]
    if low:
        c = low[0]
        return Outcome(
            FAIL,
            f"{where} is {n:,}, below the {c.min_context:,} {c.title} requires ({c.package})",
            f"set models[{ctx.name}].max_model_len to 65536 (>= {c.min_context}), re-render and restart",
        )
    return Outcome(PASS, f"{where} {n:,} >= " + ", ".join(f"{c.title} {c.min_context:,}" for c in clients))


def _accepted(hop: Hop, max_tokens: int) -> tuple[bool, str]:
    """Open a streamed request with this max_tokens and close it at the first event: vLLM refuses
    a too-large max_tokens before generating, so the status line decides, at the cost of one token."""
    payload = {
        "model": hop.model,
        "messages": P.user(P.PLAIN_PROMPT),
        "max_tokens": max_tokens,
        "stream": True,
    }
    url = f"{hop.base_url}/chat/completions"
    try:
        with hop.client().stream("POST", url, json=payload, headers=hop.headers(), timeout=hop.timeout) as r:
            if r.status_code != 200:
                r.read()
                try:
                    body = r.json()
                except ValueError:
                    body = None
                return False, hop.redact(f"HTTP {r.status_code}: {error_message(body, r.text)[:300]}")
            for line in r.iter_lines():
                if line.startswith("data:"):
                    return True, "accepted (stream opened, closed after the first event)"
    except httpx.HTTPError as e:
        raise RequestFailed("connect", hop.redact(f"{type(e).__name__} on {url}: {e}")) from None
    return True, "accepted (empty stream)"


def a2_max_tokens(ctx: ModelCtx, hop: Hop) -> Outcome:
    clients = [c for c in _kinds(ctx) if c.default_max_tokens is not None]
    if not _kinds(ctx):
        return _no_agents()
    if not clients:
        return Outcome(SKIP, "no client of this spec sends max_tokens by default")
    done: list[str] = []
    for c in clients:
        mt = sent_max_tokens(ctx, c)
        assert mt is not None
        ok, detail = _accepted(hop, mt)
        if not ok:
            fix = (
                f"raise models[{ctx.name}].max_model_len to at least {mt} ({c.title} sends max_tokens {mt}; "
                "Clawrium cannot lower it)"
                if not c.max_tokens_configurable
                else f"lower agents.max_tokens below models[{ctx.name}].max_model_len and re-render hermes/config.yaml"
            )
            return Outcome(FAIL, f"{c.title}'s max_tokens {mt}: {detail}", fix)
        done.append(f"{c.title} max_tokens {mt:,}")
    return Outcome(PASS, "; ".join(done) + " accepted")


def a3_hermes_stream(ctx: ModelCtx, hop: Hop) -> Outcome:
    if not _kinds(ctx):
        return _no_agents()
    if not any(c.kind in ("hermes", "clawrium") for c in _kinds(ctx)):
        return Outcome(SKIP, "no Hermes client in agents.clients")
    body = {
        "messages": [{"role": "system", "content": P.AGENT_SYSTEM}, *P.user(P.WEATHER_PROMPT)],
        "tools": P.TOOLS,
        "max_tokens": A3_MAX_TOKENS,  # Hermes sends no temperature and no tool_choice
    }
    try:
        s = stream_chat(hop, body)
    except RequestFailed as e:
        return failure(e, ctx, hop)
    out = _stream_calls(ctx, hop, s, P.TOOL_NAMES, "Hermes-shaped (no temperature)", None)
    if out.status != FAIL and s.result.tool_calls():
        out = _a3_arguments(ctx, s, out)
    if out.status == FAIL and out.fix:
        out.fix += f" (Hermes sees no tool call from models[{ctx.name}] until this passes)"
    return out


def _a3_arguments(ctx: ModelCtx, s: Streamed, out: Outcome) -> Outcome:
    """A3's arguments check: each call's arguments (a JSON object, or _stream_calls failed already) fit
    its tool's schema."""
    params = {t["function"]["name"]: t["function"]["parameters"] for t in P.TOOLS}
    bad = []
    for c in s.result.tool_calls():
        args = json.loads(c.arguments)  # _stream_calls failed the check unless each is a JSON object
        if c.name in params and (probs := schema_problems(args, params[c.name])):
            bad.append(f"call {c.index} {c.name}({c.arguments[:60]}): " + ", ".join(probs))
    if not bad:
        return out
    return Outcome(
        FAIL,
        "; ".join(bad),
        f"models[{ctx.name}] fills the tool's parameters wrongly: check that --tool-call-parser matches the "
        "model's chat template (a mismatched parser mistypes or drops values), else use a larger model",
    )
