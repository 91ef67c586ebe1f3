"""R: reasoning kept apart from content, the thinking toggle, reasoning with tools (R1-R3)."""

from __future__ import annotations

import re

from residency.verify import prompts as P
from residency.verify.checks.base import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    ModelCtx,
    Outcome,
    _message,
    _reasoning,
)
from residency.verify.checks.tools import _auto_nonstream
from residency.verify.client import Hop, chat, stream_chat


def _skip_unless_reasoning(ctx: ModelCtx) -> Outcome | None:
    if not ctx.reasoning_model:
        return Outcome(
            SKIP, "not a reasoning model (no reasoning parser configured, no reasoning field seen)"
        )
    return None


def r1_separation(ctx: ModelCtx, hop: Hop) -> Outcome:
    if (s := _skip_unless_reasoning(ctx)) is not None:
        return s
    body = {"messages": P.user(P.MATH_PROMPT), "max_tokens": 1024, "temperature": 0}
    resp = chat(hop, body)
    msg, finish = _message(resp)
    content, reasoning = msg.get("content") or "", _reasoning(msg)
    if re.search(r"</?think>", content):
        return Outcome(FAIL, "<think> tags in content", "add/fix `--reasoning-parser`")
    if not content.strip():
        return Outcome(FAIL, f"content empty, answer inside reasoning (finish_reason={finish})",
                       "wrong reasoning parser for the template (see the model card) or max_tokens too small")  # fmt: skip
    st = stream_chat(hop, body).result
    notes = [f"reasoning {len(reasoning)} chars, content {content.strip()[:30]!r}"]
    if not reasoning:
        return Outcome(
            WARN,
            "no reasoning field in the answer",
            "check `--reasoning-parser` (or thinking is off by default)",
        )
    if not st.reasoning:
        fix = (
            "upgrade LiteLLM (#20246/#26501: streamed reasoning dropped)"
            if hop.kind == "proxy"
            else "check `--reasoning-parser`"
        )
        return Outcome(FAIL, notes[0] + "; streaming carries no reasoning", fix)
    return Outcome(PASS, notes[0] + "; streaming keeps it separate")


def r2_toggle(ctx: ModelCtx, hop: Hop) -> Outcome:
    if (s := _skip_unless_reasoning(ctx)) is not None:
        return s
    resp = chat(hop, {"messages": P.user(P.MATH_PROMPT), "max_tokens": 256, "temperature": 0,
                      "chat_template_kwargs": {"enable_thinking": False}})  # fmt: skip
    msg, _ = _message(resp)
    if _reasoning(msg):
        fix = "LiteLLM is not forwarding `chat_template_kwargs`: pass it in extra_body or set `--default-chat-template-kwargs` on vLLM"
        return Outcome(
            WARN,
            "reasoning still present with enable_thinking=false",
            fix if hop.kind == "proxy" else "the template ignores enable_thinking",
        )
    return Outcome(PASS, "enable_thinking=false turns reasoning off")


def r3_reasoning_tools(ctx: ModelCtx, hop: Hop) -> Outcome:
    if (s := _skip_unless_reasoning(ctx)) is not None:
        return s
    return _auto_nonstream(ctx, hop, P.user(P.WEATHER_PROMPT), P.TOOLS, P.TOOL_NAMES, "auto with thinking on")
