"""T: tool calls as agents send them (T1-T9)."""

from __future__ import annotations

import re
from typing import Any

from residency.verify import prompts as P
from residency.verify.checks.base import (
    _CTX_ERR,
    _RANK,
    FAIL,
    PASS,
    WARN,
    ModelCtx,
    Outcome,
    _check_calls,
    _describe_calls,
    _max_tokens,
    _message,
    _no_call_outcome,
    _reasoning,
    _tool_body,
    failure,
)
from residency.verify.checks.chat import _broken_stream
from residency.verify.classify import classify_text
from residency.verify.client import Hop, RequestFailed, Streamed, chat, request, stream_chat


def _auto_nonstream(
    ctx: ModelCtx,
    hop: Hop,
    messages: list[dict],
    tools: list[dict],
    offered: set[str],
    mode: str,
    **extra: Any,
) -> Outcome:
    try:
        resp = chat(hop, _tool_body(messages, tools, max_tokens=_max_tokens(ctx, 256), **extra))
    except RequestFailed as e:
        return failure(e, ctx, hop)
    msg, finish = _message(resp)
    calls = msg.get("tool_calls") or []
    content = msg.get("content")
    reasoning = _reasoning(msg)
    if not calls:
        return _no_call_outcome(ctx, content, reasoning, finish, mode)
    errs, warns, args = _check_calls(calls, offered, P.WEATHER_CITY)
    if errs:
        return Outcome(
            FAIL,
            "; ".join(errs),
            # vLLM #22885: hermes streaming lost the final "}" until the hermes rewrite (PR #53638)
            "malformed tool call: a known parser bug (e.g. vLLM #22885 hermes); upgrade vLLM",
        )
    if content and classify_text(content):
        warns.append("tool markup also left in content")
    if finish != "tool_calls":
        warns.append(f"finish_reason={finish!r}, not 'tool_calls'")
    detail = f"{_describe_calls(calls)}"
    data = {"args": args}
    if warns:
        return Outcome(WARN, detail + "; " + "; ".join(warns), None, data)
    return Outcome(PASS, detail, None, data)


def t1_auto(ctx: ModelCtx, hop: Hop) -> Outcome:
    return _auto_nonstream(ctx, hop, P.user(P.WEATHER_PROMPT), P.TOOLS, P.TOOL_NAMES, "auto (no tool_choice)")


def _stream_calls(
    ctx: ModelCtx, hop: Hop, s: Streamed, offered: set[str], mode: str, expect: list[dict] | None
) -> Outcome:
    r = s.result
    if bad := _broken_stream(ctx, r, "check the server log and any proxy in between"):
        return bad
    calls = r.tool_calls()
    finish = r.finish_reasons[-1] if r.finish_reasons else None
    if not calls:
        if not r.content.strip() and not r.reasoning.strip():
            return _swallowed(ctx, hop, finish, mode)
        return _no_call_outcome(ctx, r.content, r.reasoning, finish, mode + ", streaming")
    errs, warns = [], []
    for c in calls:
        if not c.ids:
            errs.append(f"call {c.index}: id never sent")
        elif len(set(c.ids)) > 1:
            errs.append(f"call {c.index}: id changes between deltas {sorted(set(c.ids))[:2]}")
        elif len(c.ids) > 1:
            warns.append(f"call {c.index}: id repeated in {len(c.ids)} deltas")
        if not c.names:
            errs.append(f"call {c.index}: name never sent")
        elif len(c.names) > 1:
            errs.append(
                f"call {c.index}: name sent {len(c.names)} times (a concatenating client sees {c.name!r}, hermes-agent #6841)"
            )
        if len(c.fragments) > 1 and len(set(c.fragments)) == 1 and c.fragments[0].strip().startswith("{"):
            errs.append(f"call {c.index}: the full arguments are repeated in every delta")
    e2, w2, args = _check_calls(
        [(c.id, c.names[0] if len(c.names) == 1 else c.name, c.arguments) for c in calls],
        offered,
        P.WEATHER_CITY,
    )
    errs += e2
    warns += w2
    if classify_text(r.content):
        errs.append("tool markup leaked into delta.content")
    if len(r.finish_reasons) != 1:
        errs.append(f"{len(r.finish_reasons)} chunks with a finish_reason (expected 1)")
    elif finish != "tool_calls":
        warns.append(f"finish_reason={finish!r}, not 'tool_calls'")
    if expect and args and expect != args:
        warns.append(f"streamed arguments {args} differ from non-streaming {expect}")
    if hop.kind == "proxy" and len(s.arrival) > 6:
        frag_chunks = [n for c in calls for n in c.fragment_chunks]
        if len(frag_chunks) > 1 and min(frag_chunks) >= r.chunks - 2:
            warns.append("argument deltas arrive only at the end through the proxy (LiteLLM #38926)")
    desc = ", ".join(f"{c.name}({c.arguments[:60]})" for c in calls[:3])
    if errs:
        fix = "streaming tool-call bug: upgrade vLLM / switch qwen3_coder ↔ qwen3_xml; disable speculative decoding to confirm"
        if hop.kind == "proxy" and "direct" in ctx.hops:
            fix = "if direct streaming passes: LiteLLM stream re-chunking bug (#39796), upgrade LiteLLM"
        return Outcome(FAIL, "; ".join(errs), fix)
    if warns:
        return Outcome(WARN, desc + "; " + "; ".join(warns))
    return Outcome(PASS, f"{desc}; {r.chunks} chunks, id and name once")


def _swallowed(ctx: ModelCtx, hop: Hop, finish: str | None, mode: str) -> Outcome:
    """A stream with neither tool calls nor content: the streaming parser held the markup back.

    Seen with vLLM 0.32's hermes parser on Qwen3-Coder XML: it waits for JSON after <tool_call>
    and never emits anything. The non-streaming answer (T1, same hop) shows what the model wrote."""
    t1 = ctx.memo.get(f"T1.{hop.kind}")
    detail = f"{mode}, streaming: no tool call and no content (finish_reason={finish}): the streaming parser swallowed the output"
    if isinstance(t1, Outcome) and t1.data.get("format"):
        return Outcome(FAIL, f"{detail}; non-streaming shows: {t1.detail}", t1.fix, dict(t1.data))
    return Outcome(
        FAIL, detail, "run T1 (non-streaming) to see the raw text; likely a parser/format mismatch: check "
        "`--tool-call-parser` against the format the chat template teaches",
    )  # fmt: skip


def t2_auto_stream(ctx: ModelCtx, hop: Hop) -> Outcome:
    try:
        s = stream_chat(hop, _tool_body(P.user(P.WEATHER_PROMPT), P.TOOLS, max_tokens=_max_tokens(ctx, 256)))
    except RequestFailed as e:
        return failure(e, ctx, hop)
    prev = ctx.memo.get(f"T1.{hop.kind}")
    expect = prev.data.get("args") if isinstance(prev, Outcome) else None
    return _stream_calls(ctx, hop, s, P.TOOL_NAMES, "auto", expect)


def _forced(ctx: ModelCtx, hop: Hop, tool_choice: Any, label: str, exactly_one: bool) -> Outcome:
    try:
        resp = chat(
            hop,
            _tool_body(
                P.user(P.WEATHER_PROMPT), P.TOOLS, tool_choice=tool_choice, max_tokens=_max_tokens(ctx, 256)
            ),
        )
    except RequestFailed as e:
        out = failure(e, ctx, hop)
        if e.status == 400 and re.search(r"Invalid JSON|validation error for list", e.message):
            out.fix = "forced-call path broken with thinking/reasoning output: disable thinking for forced calls or upgrade vLLM (#20470)"
        elif e.status == 400 and "structured" in e.message.lower():
            out.fix = "check the structured-outputs backend (`--structured-outputs-config`)"
        return out
    msg, finish = _message(resp)
    calls = msg.get("tool_calls") or []
    if not calls:
        c = (msg.get("content") or "")[:80]
        return Outcome(
            FAIL,
            f"{label}: no tool_calls (content {c!r})",
            "guided tool choice not applied: upgrade vLLM (>= 0.8.3 for required)",
        )
    errs, warns, _ = _check_calls(calls, P.TOOL_NAMES, P.WEATHER_CITY)
    if exactly_one:
        if len(calls) != 1:
            errs.append(f"{len(calls)} calls, expected exactly 1")
        elif (calls[0].get("function") or {}).get("name") != "get_weather":
            errs.append(f"called {(calls[0].get('function') or {}).get('name')!r}, not the named get_weather")
    if errs:
        return Outcome(FAIL, "; ".join(errs), "upgrade vLLM; check the structured-outputs backend")
    if finish != "tool_calls":
        warns.append(f"finish_reason={finish!r} (older vLLM leaves the engine's reason on this path)")
    detail = _describe_calls(calls)
    return Outcome(WARN if warns else PASS, detail + ("; " + "; ".join(warns) if warns else ""))


def t3_required(ctx: ModelCtx, hop: Hop) -> Outcome:
    return _forced(ctx, hop, "required", "required", exactly_one=False)


def t4_named(ctx: ModelCtx, hop: Hop) -> Outcome:
    return _forced(
        ctx, hop, {"type": "function", "function": {"name": "get_weather"}}, "named", exactly_one=True
    )


def t5_no_spurious(ctx: ModelCtx, hop: Hop) -> Outcome:
    resp = chat(hop, _tool_body(P.user(P.SMALL_TALK), P.TOOLS, max_tokens=_max_tokens(ctx, 64)))
    msg, finish = _message(resp)
    calls = msg.get("tool_calls") or []
    content = msg.get("content") or ""
    if calls:
        return Outcome(
            WARN,
            f"spurious call on small talk: {_describe_calls(calls)}",
            "over-eager model or template; agents may loop",
        )
    found = classify_text(content)
    if found and found.format.parser:
        return Outcome(WARN, f"tool markup in a small-talk answer ({found.format.label})")
    if not content.strip():
        return Outcome(WARN, f"empty content (finish_reason={finish})")
    return Outcome(PASS, f"answered in text ({len(content)} chars), no call")


def t6_round_trip(ctx: ModelCtx, hop: Hop) -> Outcome:
    body = _tool_body(P.ROUND_TRIP_MESSAGES, P.TOOLS, max_tokens=_max_tokens(ctx, 128))
    try:
        resp = chat(hop, body)
    except RequestFailed as e:
        out = failure(e, ctx, hop)
        if e.status == 400 and not out.data.get("missing_flags"):
            out.fix = "the chat template rejects tool results (role `tool` / assistant tool_calls): use vLLM's tool template for this family"
        return out
    msg, finish = _message(resp)
    content = msg.get("content") or ""
    if msg.get("tool_calls"):
        return Outcome(FAIL, f"called a tool again instead of answering: {_describe_calls(msg['tool_calls'])}",
                       "the template does not render tool results (role `tool`): fix the chat template")  # fmt: skip
    if not content.strip():
        return Outcome(
            FAIL,
            f"empty answer after the tool result (finish_reason={finish})",
            "check the chat template's tool-result rendering",
        )
    try:
        s = stream_chat(hop, body)
        sr = s.result
        stream_note = (
            ""
            if not (sr.problems or sr.error or sr.tool_calls())
            else "; streaming variant broke or called again"
        )
    except RequestFailed as e:
        stream_note = f"; streaming variant failed: {e.message[:80]}"
    uses = all(w in content.lower() for w in P.TOOL_RESULT_WORDS)
    detail = f"answered {content.strip()[:60]!r}" + stream_note
    if stream_note:
        return Outcome(FAIL, detail, "check the server log for the streaming round trip")
    if not uses:
        return Outcome(WARN, detail + "; the answer does not use the tool result (18 degrees, sunny)")
    return Outcome(PASS, detail)


def t7_parallel(ctx: ModelCtx, hop: Hop) -> Outcome:
    resp = chat(hop, _tool_body(P.user(P.PARALLEL_PROMPT), P.TOOLS, max_tokens=_max_tokens(ctx, 256)))
    msg, _ = _message(resp)
    calls = msg.get("tool_calls") or []
    ids = {c.get("id") for c in calls}
    notes = [f"{len(calls)} call(s) for two cities"]
    status = PASS
    fix = None
    if len(calls) < 2:
        status = WARN
        notes.append("no parallel calls (info only for Llama 3.x / Mistral 7B / small models)")
    elif len(ids) != len(calls):
        status, fix = FAIL, "parallel calls share an id: upgrade vLLM"
        notes.append("duplicate ids")
    resp = chat(
        hop,
        _tool_body(
            P.user(P.PARALLEL_PROMPT), P.TOOLS, parallel_tool_calls=False, max_tokens=_max_tokens(ctx, 256)
        ),
    )
    msg, _ = _message(resp)
    n = len(msg.get("tool_calls") or [])
    notes.append(f"parallel_tool_calls=false → {n} call(s)")
    if n > 1:
        status = FAIL if status == FAIL else WARN
        fix = fix or "vLLM older than PR #26233 (~0.11) ignores parallel_tool_calls=false: upgrade"
    return Outcome(status, "; ".join(notes), fix)


def t8_agent(ctx: ModelCtx, hop: Hop) -> Outcome:
    messages = [{"role": "system", "content": P.AGENT_SYSTEM}, *P.user(P.WEATHER_PROMPT)]
    results = {}
    for variant, tools in (("plain", P.AGENT_TOOLS), ("strict", P.strict_tools(P.AGENT_TOOLS))):
        try:
            s = stream_chat(hop, _tool_body(messages, tools, max_tokens=_max_tokens(ctx, 256)))
            results[variant] = _stream_calls(ctx, hop, s, P.AGENT_TOOL_NAMES, f"20 tools, {variant}", None)
        except RequestFailed as e:
            results[variant] = failure(e, ctx, hop)
            if e.status == 400 and _CTX_ERR.search(e.message):
                return Outcome(
                    WARN, f"the 20-tool agent prompt does not fit: {ctx.redact(e.message)[:160]}",
                    f"agents with many tools need more context than max_model_len={ctx.max_model_len()}: raise it",
                )  # fmt: skip
    plain, strict = results["plain"], results["strict"]
    worst = max((plain, strict), key=lambda o: _RANK[o.status])
    if plain.status == strict.status:
        detail = (
            plain.detail if plain.detail.startswith("20 tools") else f"20 tools, streaming: {plain.detail}"
        )
        return Outcome(worst.status, detail, plain.fix, plain.data)
    detail = (
        f"plain schemas: {plain.status} ({plain.detail}); strict schemas: {strict.status} ({strict.detail})"
    )
    fix = worst.fix
    if hop.kind == "proxy":
        fix = (
            fix + "; " if fix else ""
        ) + "LiteLLM strips `strict`/`additionalProperties` for hosted_vllm, so results differ from direct"
    return Outcome(worst.status, detail, fix)


def t9_edges(ctx: ModelCtx, hop: Hop) -> Outcome:
    """Info level: how the hop answers shapes some clients send. A clear 4xx is fine; 5xx is not."""
    notes, status, fixes = [], PASS, []
    allowed = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "auto",
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        },
    }
    for label, extra, advice in (
        ("tools: []", {"tools": []}, "clients or the proxy must omit an empty tools list"),
        ("allowed_tools tool_choice", {"tools": P.TOOLS, "tool_choice": allowed}, "pydantic-ai's allowed_tools tool_choice is not supported: configure the client to send auto"),
    ):  # fmt: skip
        body = {
            "messages": P.user(P.WEATHER_PROMPT),
            "max_tokens": 16,
            "temperature": 0,
            **extra,
            "model": hop.model,
        }
        r = request(hop, "POST", f"{hop.base_url}/chat/completions", body)
        if r.status >= 500:
            status = WARN
            notes.append(f"{label} → {r.status} (should be a 400): {r.message[:80]}")
            fixes.append(advice)
        elif r.status >= 400:
            notes.append(f"{label} → {r.status} ({advice})")
        else:
            notes.append(f"{label} → {r.status}")
    return Outcome(status, "; ".join(notes), "; ".join(fixes) or None)
