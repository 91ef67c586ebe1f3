"""M: plain chat, non-streaming and streaming (M1, M2)."""

from __future__ import annotations

import re

from residency.verify import prompts as P
from residency.verify.checks.base import (
    FAIL,
    PASS,
    WARN,
    ModelCtx,
    Outcome,
    _max_tokens,
    _message,
    _reasoning,
)
from residency.verify.client import Hop, chat, stream_chat


def m1_chat(ctx: ModelCtx, hop: Hop) -> Outcome:
    resp = chat(
        hop, {"messages": P.user(P.PLAIN_PROMPT), "max_tokens": _max_tokens(ctx, 64), "temperature": 0}
    )
    msg, finish = _message(resp)
    content = msg.get("content")
    reasoning = _reasoning(msg)
    if reasoning:
        ctx.memo["reasoning_seen"] = True
    if not isinstance(content, str) or not content.strip():
        if reasoning:
            return Outcome(
                FAIL,
                "content empty; the whole answer is in reasoning",
                "raise max_tokens or disable thinking for agents",
            )
        return Outcome(
            FAIL, f"content empty (finish_reason={finish})", "check the vLLM log and the chat template"
        )
    if re.search(r"</?think>", content):
        return Outcome(
            FAIL, "<think> tags in content", "add the model's `--reasoning-parser` (e.g. qwen3, deepseek_r1)"
        )
    if finish not in ("stop", "length"):
        return Outcome(WARN, f"finish_reason={finish!r}")
    if not resp.get("usage"):
        return Outcome(WARN, "no usage in the response")
    return Outcome(PASS, f"{len(content)} chars, finish_reason={finish}")


def _broken_stream(ctx: ModelCtx, r, framing_fix: str) -> Outcome | None:
    """A stream that carried an error event or broke its framing fails; None when it is sound."""
    if r.error:
        return Outcome(
            FAIL, f"error event in the stream: {ctx.redact(r.error)[:200]}", "check the server log"
        )
    if r.problems:
        return Outcome(FAIL, "broken stream: " + "; ".join(r.problems[:3]), framing_fix)
    return None


def m2_stream(ctx: ModelCtx, hop: Hop) -> Outcome:
    s = stream_chat(
        hop, {"messages": P.user(P.PLAIN_PROMPT), "max_tokens": _max_tokens(ctx, 64), "temperature": 0}
    )
    r = s.result
    if bad := _broken_stream(ctx, r, "check what sits between client and server (proxy buffering, framing)"):
        return bad
    if r.reasoning:
        ctx.memo["reasoning_seen"] = True
    errs, warns = [], []
    if r.roles.count("assistant") != 1:
        warns.append(f"role 'assistant' sent {r.roles.count('assistant')} times")
    if len(r.finish_reasons) != 1:
        errs.append(f"{len(r.finish_reasons)} chunks with a finish_reason (expected 1)")
    if not r.content.strip():
        errs.append("no content streamed" + (" (only reasoning)" if r.reasoning else ""))
    if re.search(r"</?think>", r.content):
        errs.append("<think> tags in content")
    if r.usage is None:
        warns.append("no usage chunk with stream_options.include_usage")
    # a short answer (a few tokens) can legitimately come out of one engine step and arrive together: only
    # a stream long enough to span several steps says anything about buffering (CI saw a 2-char answer warn)
    if r.chunks >= 8 and len(s.arrival) > 4 and s.arrival[-1] - s.arrival[0] < 0.002 and hop.kind == "proxy":
        warns.append("all chunks arrived at once (proxy buffering?)")
    detail = f"{r.chunks} chunks, {len(r.content)} chars"
    if errs:
        return Outcome(
            FAIL,
            "; ".join(errs + warns),
            "add the model's `--reasoning-parser`" if "think" in " ".join(errs) else None,
        )
    if warns:
        return Outcome(
            WARN,
            detail + "; " + "; ".join(warns),
            "start vLLM with `--enable-force-include-usage` if clients need usage"
            if r.usage is None
            else None,
        )
    return Outcome(PASS, detail)
