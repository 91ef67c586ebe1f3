"""What every check shares: outcomes, the per-model context, the Check record and the helpers
that read chat responses and tool calls."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from residency.verify import prompts as P
from residency.verify.classify import (
    Format,
    diagnose_text_call,
    missing_flags_error,
    missing_flags_fix,
    parser_for_family,
    parser_from_template,
)
from residency.verify.client import Hop, RequestFailed, get_json, render_prompt
from residency.verify.redact import Redactor
from residency.verify.targets import ModelTarget, Targets

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
_RANK = {SKIP: 0, PASS: 1, WARN: 2, FAIL: 3}
# A backend's or LiteLLM's "prompt too long" error (L2 expects it; T8 explains it).
_CTX_ERR = re.compile(
    r"maximum context length|longer than the maximum model length|longer than the model's context length"
    r"|ContextWindowExceeded|context_length_exceeded|is too large: \d+",
    re.I,
)


@dataclass
class Outcome:
    status: str
    detail: str = ""
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # for later checks; never printed


@dataclass
class ModelCtx:
    target: ModelTarget
    targets: Targets
    hops: dict[str, Hop]  # available hops by kind
    hop_skip: dict[str, str]  # why a hop kind is unavailable
    redact: Redactor
    timeout: float
    stack: dict[str, Any]  # shared by all models (P1, proxy /v1/models, /model/info)
    memo: dict[str, Any] = field(default_factory=dict)  # "T1.direct" -> Outcome, ...

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def backend(self):
        return self.target.backend

    @property
    def configured_parser(self) -> str | None:
        be = self.backend
        return be.tool_call_parser if be is not None and be.known_config else None

    @property
    def reasoning_model(self) -> bool:
        be = self.backend
        return bool(be and be.reasoning_parser) or bool(self.memo.get("reasoning_seen"))

    def template_format(self) -> Format | None:
        """V-R1: the format the backend's chat template teaches (rendered through /tokenize)."""
        if "template" not in self.memo:
            hop = self.hops.get("direct")
            text = render_prompt(hop, P.user(P.WEATHER_PROMPT), P.TOOLS) if hop else None
            self.memo["template_text"] = text
            self.memo["template"] = parser_from_template(text)
        return self.memo["template"]

    def family_parser(self) -> str | None:
        be = self.backend
        return parser_for_family(self.name, be.served_name if be else None, be.model_id if be else None)

    def proxy_info(self) -> dict[str, Any] | None:
        """This model's entry in LiteLLM /model/info (None when unavailable)."""
        infos = self.stack.get("model_info")
        if not isinstance(infos, list):
            return None
        for entry in infos:
            if isinstance(entry, dict) and entry.get("model_name") == self.name:
                return entry
        return None

    def backend_card(self) -> dict[str, Any] | None:
        """The backend's /v1/models entry for its served model (cached)."""
        if "card" not in self.memo:
            self.memo["card"] = None
            hop = self.hops.get("direct")
            if hop is not None:
                try:
                    data = get_json(hop, f"{hop.base_url}/models", timeout=min(hop.timeout, 15))
                    cards = [c for c in data.get("data", []) if isinstance(c, dict)]
                    self.memo["card"] = next((c for c in cards if c.get("id") == hop.model), None)
                    self.memo["backend_ids"] = [c.get("id") for c in cards]
                except RequestFailed as e:
                    self.memo["card_error"] = e
        return self.memo["card"]

    def max_model_len(self) -> int | None:
        card = self.backend_card()
        if card and isinstance(card.get("max_model_len"), int):
            return card["max_model_len"]
        if self.backend and self.backend.max_model_len:
            return self.backend.max_model_len
        info = (self.proxy_info() or {}).get("model_info") or {}
        return info.get("max_input_tokens") or None


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    required: bool
    scope: str  # stack | model | hop | direct
    fn: Callable[..., Outcome]


# -- helpers ---------------------------------------------------------------------------------------


def failure(e: RequestFailed, ctx: ModelCtx, hop: Hop | None = None) -> Outcome:
    """A transport/HTTP failure → fail with the reason and the generic fix for it."""
    where = hop.kind if hop else "server"
    who = "LiteLLM proxy" if where == "proxy" else f"vLLM server for {ctx.name}"
    msg = ctx.redact(e.message)
    if e.kind == "connect":
        return Outcome(FAIL, msg, f"start the {who} or check its address/port")
    if e.kind == "timeout":
        return Outcome(
            FAIL, msg, f"the {who} did not answer in time: check its log (a wedged engine answers /health but "
            "never generates, vLLM #39863) or raise --timeout",
        )  # fmt: skip
    if e.kind in ("json", "protocol"):
        return Outcome(FAIL, msg, f"the {who} sent a malformed response: check what listens on that port")
    st = e.status or 0
    detail = f"HTTP {st}: {msg[:300]}"
    if st in (401, 403):
        env = "LITELLM_MASTER_KEY"
        return Outcome(
            FAIL, detail, f"wrong or missing key: pass --key or set {env} (the proxy's master key)"
        )
    if st == 404 or "does not exist" in msg or "model_not_found" in msg:
        return Outcome(
            FAIL, detail, f"model `{hop.model if hop else ctx.name}` is not served here: set LiteLLM "
            "`litellm_params.model: hosted_vllm/<id from the backend /v1/models>` or start vLLM with "
            f"`--served-model-name {ctx.name}`",
        )  # fmt: skip
    if st == 429 or "No deployments available" in msg:
        return Outcome(
            FAIL, detail, "LiteLLM rate limit or cooldown: raise rpm/tpm/max_parallel_requests or `allowed_fails`; "
            "see earlier errors for the cause of the cooldown",
        )  # fmt: skip
    if missing_flags_error(msg):
        fix = missing_flags_fix(ctx.configured_parser, ctx.family_parser(), ctx.template_format())
        return Outcome(FAIL, detail + " (auto tool choice not enabled)", fix, {"missing_flags": True})
    if "Cannot connect to host" in msg or "Server disconnected" in msg:
        return Outcome(FAIL, detail, "LiteLLM cannot reach the backend: check `api_base` and that vLLM is up")
    if st >= 500:
        return Outcome(FAIL, detail, f"server error: check the {who} log")
    return Outcome(FAIL, detail, None)


def _message(resp: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    ch = resp["choices"][0] or {}
    return ch.get("message") or {}, ch.get("finish_reason")


def _reasoning(msg: dict[str, Any]) -> str:
    for k in ("reasoning", "reasoning_content"):
        if isinstance(msg.get(k), str) and msg[k]:
            return msg[k]
    return ""


def _check_calls(
    calls: list[dict[str, Any]] | list[tuple[str | None, str, str]],
    offered: set[str],
    city: str | None = None,
) -> tuple[list[str], list[str], list[dict]]:
    """Validate tool calls the way agent SDKs consume them. Returns (errors, warnings, parsed args).

    calls: message.tool_calls dicts, or (id, name, arguments) tuples from a stream.
    """
    errors: list[str] = []
    warns: list[str] = []
    parsed: list[dict] = []
    for i, c in enumerate(calls):
        if isinstance(c, dict):
            cid, ctype = c.get("id"), c.get("type")
            fn = c.get("function") or {}
            name, args = fn.get("name"), fn.get("arguments")
            if ctype != "function":
                errors.append(f"call {i}: type is {ctype!r}, not 'function'")
        else:
            cid, name, args = c
        if not isinstance(cid, str) or not cid:
            errors.append(f"call {i}: no id")
        if name not in offered:
            (errors if not name else warns).append(
                f"call {i}: name {name!r} is not an offered tool"
                + (" (model hallucinated a tool)" if name else "")
            )
        if not isinstance(args, str):
            errors.append(f"call {i}: arguments are {type(args).__name__}, not a JSON string")
            continue
        try:
            obj = json.loads(args)
        except ValueError as e:
            errors.append(f"call {i}: arguments are not valid JSON ({e.msg}): {args[:80]!r}")
            continue
        if not isinstance(obj, dict):
            errors.append(f"call {i}: arguments are JSON but not an object")
            continue
        parsed.append(obj)
        if city and name == "get_weather" and city not in json.dumps(obj).lower():
            warns.append(f"call {i}: arguments {args[:60]} do not mention {city.title()}")
    return errors, warns, parsed


# JSON Schema "type" -> the Python types json.loads gives for it (bool is not a number here)
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def schema_problems(args: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """How parsed tool-call arguments break the tool's `parameters` schema, as a tool runner (Hermes
    passes them as keyword arguments) would meet it: required keys, top-level property types, and
    keys the schema forbids (additionalProperties false). Empty when they fit."""
    out = [f"required {k!r} missing" for k in params.get("required") or [] if k not in args]
    props = params.get("properties") or {}
    for k, v in args.items():
        spec = props.get(k)
        if spec is None:
            if params.get("additionalProperties") is False:
                out.append(f"{k!r} is not a parameter")
            continue
        want = spec.get("type") if isinstance(spec, dict) else None
        names = [want] if isinstance(want, str) else want if isinstance(want, list) else []
        ok = [t for n in names for t in _JSON_TYPES.get(n, ())]
        if ok and (not isinstance(v, tuple(ok)) or (isinstance(v, bool) and bool not in ok)):
            out.append(f"{k!r} is {type(v).__name__}, the schema says {want}")
    return out


def _describe_calls(calls: list[dict]) -> str:
    out = []
    for c in calls[:3]:
        fn = c.get("function") or {}
        out.append(f"{fn.get('name')}({(fn.get('arguments') or '')[:60]})")
    return ", ".join(out)


def _no_call_outcome(
    ctx: ModelCtx, content: str | None, reasoning: str, finish: str | None, mode: str
) -> Outcome:
    """No structured call where one was expected: classify the text and name the fix."""
    diag = diagnose_text_call(content, reasoning, ctx.configured_parser, finish)
    if diag is not None:
        return Outcome(FAIL, diag.detail, diag.fix, {"format": diag.format, "parser": diag.parser})
    snippet = (content or "").strip().replace("\n", " ")[:80]
    if finish == "length":
        return Outcome(FAIL, f"no tool call; output cut at max_tokens: {snippet!r}", "raise max_tokens")
    tpl = ctx.template_format()
    rendered = ctx.memo.get("template_text")
    fix = (
        "the model answered in prose: check that the chat template renders `tools` (POST /tokenize with tools) "
        "and that the model is trained for tool calls"
    )
    if rendered is not None and "get_weather" not in rendered:
        fix = (
            "the chat template does not render `tools` (get_weather is missing from the prompt built by "
            "/tokenize): use the model's own template or vLLM's examples/tool_chat_template_*.jinja"
        )
    elif tpl is not None and tpl.parser and ctx.configured_parser and tpl.parser != ctx.configured_parser:
        fix = f"the template teaches {tpl.label} but the server runs `{ctx.configured_parser}`: use `--tool-call-parser {tpl.parser}`"
    return Outcome(
        FAIL,
        f"{mode}: no tool call; answered in prose: {snippet!r} (finish_reason={finish})",
        fix,
        {"prose": True},
    )


def _tool_body(messages: list[dict], tools: list[dict], **extra: Any) -> dict[str, Any]:
    return {"messages": messages, "tools": tools, "temperature": 0, "max_tokens": 256, **extra}


def _max_tokens(ctx: ModelCtx, base: int) -> int:
    """Output budget: more for thinking models, and never more than half the served context
    (vLLM 400s when prompt + max_tokens exceeds max_model_len)."""
    n = base * 4 if ctx.reasoning_model else base
    limit = ctx.max_model_len() if ctx.backend is not None or ctx.proxy_info() is not None else None
    return max(8, min(n, limit // 2)) if limit else n
