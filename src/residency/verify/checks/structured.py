"""J: response_format json_schema is enforced (J1)."""

from __future__ import annotations

import json

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
from residency.verify.client import Hop, chat


def j1_json_schema(ctx: ModelCtx, hop: Hop) -> Outcome:
    resp = chat(hop, {"messages": P.user(P.JSON_PROMPT), "max_tokens": _max_tokens(ctx, 256), "temperature": 0,
                      "response_format": P.RESPONSE_FORMAT})  # fmt: skip
    msg, finish = _message(resp)
    content = (msg.get("content") or "").strip()
    try:
        obj = json.loads(content)
    except ValueError:
        if content.startswith("{") and finish == "length":
            return Outcome(
                WARN, f"JSON started but was cut at max_tokens: {content[:60]!r}",
                "structured outputs are applied, but the model loops inside the grammar (whitespace); "
                "small models do this: raise max_tokens or check with a larger model",
            )  # fmt: skip
        if _reasoning(msg).strip().startswith("{"):
            return Outcome(
                FAIL,
                "JSON only inside reasoning",
                "thinking + structured output (#50948): disable thinking for JSON calls",
            )
        return Outcome(FAIL, f"content is not JSON (finish_reason={finish}): {content[:60]!r}",
                       "structured outputs not applied: check vLLM version/backend (legacy guided_json is ignored since 0.12)")  # fmt: skip
    ok = (
        isinstance(obj, dict)
        and isinstance(obj.get("city"), str)
        and isinstance(obj.get("temperature_c"), int)
    )
    extra = set(obj) - {"city", "temperature_c"} if isinstance(obj, dict) else set()
    if not ok or extra:
        return Outcome(
            FAIL,
            f"JSON does not match the schema: {content[:80]}",
            "structured outputs not enforced: check the vLLM structured-outputs backend",
        )
    return Outcome(PASS, f"schema-valid JSON: {content[:60]}")
