"""The checks. Ids and meanings follow ../shared/reference/toolcalls.md §7.

Each check is a small function. `scope` says how it runs:
  stack  once per run (P1), copied to every model;
  model  once per model (P2, L1, C1, G1);
  hop    once per hop, directly against the backend and through the proxy, then combined;
  direct the backend only (P4).
A check returns an Outcome or raises RequestFailed (turned into a fail with the reason).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from residency.verify import prompts as P
from residency.verify.classify import (
    Format,
    classify_text,
    diagnose_text_call,
    missing_flags_error,
    missing_flags_fix,
    parser_for_family,
    parser_from_template,
)
from residency.verify.client import (
    Hop,
    RequestFailed,
    Streamed,
    chat,
    get_json,
    render_prompt,
    request,
    stream_chat,
    tokenize,
)
from residency.verify.redact import Redactor
from residency.verify.targets import ModelTarget, Targets

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
_RANK = {SKIP: 0, PASS: 1, WARN: 2, FAIL: 3}


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


# -- P: proxy and backend health ---------------------------------------------------------------------


def p1_proxy(ctx: ModelCtx) -> Outcome:
    hop = ctx.hops.get("proxy")
    if hop is None:
        return Outcome(SKIP, ctx.hop_skip.get("proxy", "no proxy"))
    bad = []
    for path in ("/health/liveliness", "/health/readiness"):
        r = request(hop, "GET", hop.root + path, timeout=min(hop.timeout, 15), auth=False)
        if r.status != 200:
            bad.append(f"{path} → {r.status} {r.message[:120]}")
        elif isinstance(r.body, dict) and r.body.get("status") == "shutting_down":
            bad.append(f"{path} → shutting_down")
    if bad:
        return Outcome(
            FAIL, "; ".join(bad), "start/restart LiteLLM; check the DB/Redis settings readiness shows"
        )
    return Outcome(PASS, "liveliness and readiness 200")


def p2_inventory(ctx: ModelCtx) -> Outcome:
    notes: list[str] = []
    status = PASS
    fix = None
    hop = ctx.hops.get("proxy")
    if hop is not None:
        names = ctx.stack.get("proxy_models")
        if isinstance(names, RequestFailed):
            return failure(names, ctx, hop)
        if names is not None and ctx.name not in names:
            return Outcome(
                FAIL, f"proxy /v1/models does not list {ctx.name!r} (it lists {', '.join(names[:8]) or 'nothing'})",
                f"add a model_list entry with model_name: {ctx.name} to the LiteLLM config",
            )  # fmt: skip
        notes.append("proxy lists it")
        info = ctx.proxy_info()
        if info is not None:
            lm = str((info.get("litellm_params") or {}).get("model", ""))
            provider_id = lm.split("/", 1)[1] if "/" in lm else lm
            if lm.startswith("ollama"):
                status, fix = (
                    WARN,
                    "use the hosted_vllm/ (or openai/) prefix for vLLM, not ollama/ (LiteLLM #35711)",
                )
            be_hop = ctx.hops.get("direct")
            if be_hop is not None and provider_id and provider_id != be_hop.model:
                status = FAIL
                fix = f"set `litellm_params.model: hosted_vllm/{be_hop.model}` for {ctx.name} (the backend's id)"
                notes.append(f"proxy routes to {provider_id!r} but the backend serves {be_hop.model!r}")
    hop = ctx.hops.get("direct")
    if hop is not None:
        ctx.backend_card()
        err = ctx.memo.get("card_error")
        if err is not None:
            return failure(err, ctx, hop)
        ids = ctx.memo.get("backend_ids") or []
        if hop.model not in ids:
            return Outcome(
                FAIL, f"backend serves {ids} but not {hop.model!r}",
                f"start vLLM with `--served-model-name {hop.model}`",
            )  # fmt: skip
        notes.append(f"backend serves {hop.model!r}")
    if not notes:
        return Outcome(SKIP, "no proxy and no backend address")
    return Outcome(status, "; ".join(notes), fix)


def p3_generate(ctx: ModelCtx, hop: Hop) -> Outcome:
    notes = []
    if hop.kind == "direct":
        r = request(hop, "GET", hop.root + "/health", timeout=min(hop.timeout, 15))
        if r.status != 200:
            return Outcome(
                FAIL, f"/health → {r.status} {r.message[:120]}",
                "engine dead or starting: restart the vLLM server; check its log for EngineDeadError / CUDA errors",
            )  # fmt: skip
        notes.append("/health 200")
    t0 = time.monotonic()
    try:
        resp = chat(hop, {"messages": P.user(P.PLAIN_PROMPT), "max_tokens": 1, "temperature": 0})
    except RequestFailed as e:
        out = failure(e, ctx, hop)
        if e.kind == "timeout" and notes:
            out.detail += " while /health is 200 (wedged engine)"
        return out
    usage = resp.get("usage") or {}
    n = usage.get("completion_tokens")
    notes.append(f"1-token generation in {time.monotonic() - t0:.1f}s")
    if n not in (None, 0, 1):
        return Outcome(WARN, "; ".join(notes) + f"; but completion_tokens={n} with max_tokens=1")
    return Outcome(PASS, "; ".join(notes))


def p4_metrics(ctx: ModelCtx, hop: Hop) -> Outcome:
    r = request(hop, "GET", hop.root + "/metrics", timeout=min(hop.timeout, 15))
    if r.status != 200:
        return Outcome(
            WARN, f"/metrics → {r.status}", "metrics unavailable: status and watch need vLLM /metrics"
        )
    from prometheus_client.parser import text_string_to_metric_families

    try:
        fams = {
            f.name: f for f in text_string_to_metric_families(r.text if len(r.text) < 4000 else _full(hop))
        }
    except ValueError as e:
        return Outcome(WARN, f"/metrics is not Prometheus text: {e}")

    def val(name: str) -> float | None:
        f = fams.get(name)
        if not f:
            return None
        return sum(s.value for s in f.samples if s.name == name)

    running, waiting = val("vllm:num_requests_running"), val("vllm:num_requests_waiting")
    kv = val("vllm:kv_cache_usage_perc")
    if kv is None:
        kv = val("vllm:gpu_cache_usage_perc")  # vLLM < 0.11 name (deprecated by PR #18354)
    missing = [
        n
        for n, v in (
            ("num_requests_running", running),
            ("num_requests_waiting", waiting),
            ("kv_cache_usage_perc", kv),
        )
        if v is None
    ]
    if missing:
        return Outcome(WARN, f"missing metrics: {', '.join(missing)}")
    detail = f"running={running:g} waiting={waiting:g} kv_cache={kv:.0%}"
    if waiting and waiting > 0:
        return Outcome(WARN, detail + " (requests waiting at idle)")
    return Outcome(PASS, detail)


def _full(hop: Hop) -> str:
    r = hop.client().get(hop.root + "/metrics", headers=hop.headers())
    return r.text


# -- M: plain chat -------------------------------------------------------------------------------------


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
    if len(s.arrival) > 4 and s.arrival[-1] - s.arrival[0] < 0.002 and hop.kind == "proxy":
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


# -- T: tools ------------------------------------------------------------------------------------------


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


# -- R: reasoning --------------------------------------------------------------------------------------


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


# -- J, L, C, G --------------------------------------------------------------------------------------


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


_CTX_ERR = re.compile(
    r"maximum context length|longer than the maximum model length|longer than the model's context length"
    r"|ContextWindowExceeded|context_length_exceeded|is too large: \d+",
    re.I,
)


def l1_context(ctx: ModelCtx) -> Outcome:
    notes, status, fix = [], PASS, None
    card = ctx.backend_card()
    served = card.get("max_model_len") if card else None
    spec = ctx.backend.max_model_len if ctx.backend and ctx.backend.known_config else None
    if served:
        notes.append(f"backend max_model_len={served}")
    if spec and served and spec != served:
        status, fix = (
            FAIL,
            f"the spec says max_model_len={spec} but the backend serves {served}: restart it with the spec's settings",
        )
        notes.append(f"spec says {spec}")
    if "proxy" in ctx.hops:
        info = (ctx.proxy_info() or {}).get("model_info") or {}
        declared = info.get("max_input_tokens") or info.get("max_tokens")
        limit = served or spec
        if not declared:
            status = WARN if status == PASS else status
            notes.append("proxy declares no max_input_tokens")
            fix = fix or (
                f"set `model_info.max_input_tokens: {limit}` for {ctx.name} in the LiteLLM config"
                if limit
                else None
            )
        else:
            notes.append(f"proxy declares {declared}")
            if limit and declared > limit:
                status = WARN if status == PASS else status
                fix = (
                    fix
                    or f"LiteLLM declares more than the backend serves: set `model_info.max_input_tokens: {limit}`"
                )
    if not notes:
        return Outcome(SKIP, "no backend /v1/models and no proxy model info")
    return Outcome(status, "; ".join(notes), fix)


def _overlength_messages(ctx: ModelCtx, limit: int) -> list[dict]:
    """A prompt of at least limit + 64 tokens, sized with /tokenize when the backend is reachable."""
    target = limit + 64
    words = target
    hop = ctx.hops.get("direct")
    if hop is not None:
        try:
            n = tokenize(hop, {"messages": P.user("hello " * 200)}).get("count") or 0
            per = max(n - 10, 1) / 200  # tokens per repetition (the template adds ~10)
            words = int(target / per) + 64
        except RequestFailed:
            words = 2 * target
    else:
        words = 2 * target
    return P.user("hello " * words)


def l2_overlength(ctx: ModelCtx, hop: Hop) -> Outcome:
    limit = ctx.max_model_len()
    if not limit:
        return Outcome(SKIP, "max_model_len unknown (no backend /v1/models, spec value or proxy model info)")
    msgs = ctx.memo.get("overlength") or _overlength_messages(ctx, limit)
    ctx.memo["overlength"] = msgs
    label = f"prompt > {limit} tokens"
    r = request(
        hop,
        "POST",
        f"{hop.base_url}/chat/completions",
        {"messages": msgs, "max_tokens": 16, "model": hop.model},
    )
    fix = "agents rely on a 400 context error to compress history: check the LiteLLM exception mapping / vLLM version"
    if r.status == 200:
        return Outcome(
            FAIL, f"{label} → 200 (silent truncation, or the server's max_model_len is not {limit})", fix
        )
    if not (r.status == 400 and _CTX_ERR.search(r.message)):
        return Outcome(FAIL, f"{label} → {r.status}: {r.message[:160]}", fix)
    notes = [f"{label} → 400 context error"]
    # Info only: a short prompt with max_tokens = max_model_len. vLLM <= 0.1x answers 400
    # ("'max_tokens' ... is too large"); vLLM 0.32 (measured on the CPU build) accepts it and caps
    # generation at the context end.
    r2 = request(hop, "POST", f"{hop.base_url}/chat/completions",
                 {"messages": P.user(P.PLAIN_PROMPT), "max_tokens": limit, "model": hop.model})  # fmt: skip
    if r2.status == 400 and _CTX_ERR.search(r2.message):
        notes.append(f"max_tokens={limit} → 400")
    elif r2.status == 200:
        notes.append(f"max_tokens={limit} → 200 (capped by the server)")
    else:
        return Outcome(
            WARN, "; ".join(notes) + f"; max_tokens={limit} → {r2.status}: {r2.message[:120]}", fix
        )
    return Outcome(PASS, "; ".join(notes))


def c1_burst(ctx: ModelCtx) -> Outcome:
    hop = ctx.hops.get("proxy") or ctx.hops.get("direct")
    if hop is None:
        return Outcome(SKIP, "no endpoint")
    be = ctx.backend
    seqs = be.max_num_seqs if be and be.max_num_seqs else None
    k = ctx.targets.concurrency or (min(seqs, 60) + 4 if seqs else 8)
    body = {"messages": P.user(P.PLAIN_PROMPT), "max_tokens": 8, "temperature": 0}

    def one(_: int) -> tuple[str, float]:
        t0 = time.monotonic()
        try:
            resp = chat(hop, body)
            ok = isinstance(_message(resp)[0].get("content"), str)
            return ("ok" if ok else "no content"), time.monotonic() - t0
        except RequestFailed as e:
            return (f"{e.status}" if e.status else e.kind), time.monotonic() - t0

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=k) as pool:
        results = list(pool.map(one, range(k)))
    wall = time.monotonic() - t0
    bad = [r for r, _ in results if r != "ok"]
    lat = sorted(t for _, t in results)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    detail = f"{k} concurrent via {hop.kind}" + (
        f" (max_num_seqs {seqs} + 4)" if seqs and not ctx.targets.concurrency else ""
    )
    detail += f": {k - len(bad)}/{k} ok in {wall:.1f}s, p95 {p95:.1f}s"
    if bad:
        kinds = sorted(set(bad))
        fix = "raise LiteLLM `request_timeout` or lower load; see the server log"
        if "429" in kinds:
            fix = "LiteLLM rpm/tpm/max_parallel_requests limit (key or deployment)"
        elif "timeout" in kinds:
            fix = "requests timed out: raise LiteLLM `request_timeout`/--timeout, or lower --max-num-seqs × context (KV preemption)"
        return Outcome(FAIL, detail + f"; failures: {', '.join(kinds)}", fix)
    return Outcome(PASS, detail)


def g1_capabilities(ctx: ModelCtx) -> Outcome:
    if "proxy" not in ctx.hops:
        return Outcome(SKIP, ctx.hop_skip.get("proxy", "no proxy"))
    entry = ctx.proxy_info()
    if entry is None:
        return Outcome(WARN, "no /model/info entry for this model", "check the key has access to /model/info")
    info = entry.get("model_info") or {}
    measured_tools = None
    outs = [ctx.memo.get(f"{c}.proxy") for c in ("T1", "T2")]
    outs = [o for o in outs if isinstance(o, Outcome) and o.status != SKIP]
    if outs:
        measured_tools = all(o.status in (PASS, WARN) for o in outs)
    notes, mismatch = [], []
    declared = info.get("supports_function_calling")
    if measured_tools is not None:
        notes.append(f"supports_function_calling={declared} vs measured {measured_tools}")
        # Declaring false for a broken model is not the fix (T1/T2 name it); flag only a wrong promise
        # or a working model that clients reading /model/info would not send tools to.
        if measured_tools and declared is not True:
            mismatch.append("supports_function_calling: true")
        elif not measured_tools and declared is True:
            mismatch.append("supports_function_calling: false (until T1/T2 pass)")
    r1 = ctx.memo.get("R1.proxy")
    if isinstance(r1, Outcome) and r1.status != SKIP:
        dr = info.get("supports_reasoning")
        meas = r1.status in (PASS, WARN)
        notes.append(f"supports_reasoning={dr} vs measured {meas}")
        if dr is not meas:
            mismatch.append(f"supports_reasoning: {str(meas).lower()}")
    if not notes:
        return Outcome(SKIP, "nothing measured to compare (T1/T2 not run)")
    if mismatch:
        return Outcome(
            WARN,
            "; ".join(notes),
            f"set in the LiteLLM config for {ctx.name}: model_info: {{{', '.join(mismatch)}}}",
        )
    return Outcome(PASS, "; ".join(notes))


CHECKS: tuple[Check, ...] = (
    Check("P1", "proxy alive/ready", True, "stack", p1_proxy),
    Check("P2", "model inventory", True, "model", p2_inventory),
    Check("P3", "health + 1-token generation", True, "hop", p3_generate),
    Check("P4", "metrics", False, "direct", p4_metrics),
    Check("M1", "plain chat", True, "hop", m1_chat),
    Check("M2", "plain chat, streaming", True, "hop", m2_stream),
    Check("T1", "tool call, auto (no tool_choice)", True, "hop", t1_auto),
    Check("T2", "tool call, auto, streaming", True, "hop", t2_auto_stream),
    Check("T3", "tool_choice required", True, "hop", t3_required),
    Check("T4", "named tool_choice", True, "hop", t4_named),
    Check("T5", "no spurious call on small talk", False, "hop", t5_no_spurious),
    Check("T6", "tool-result round trip", True, "hop", t6_round_trip),
    Check("T7", "parallel calls / parallel_tool_calls=false", False, "hop", t7_parallel),
    Check("T8", "agent-shaped request (20 tools, streaming)", True, "hop", t8_agent),
    Check("T9", "edge validation (empty tools, allowed_tools)", False, "hop", t9_edges),
    Check("R1", "reasoning kept out of content", False, "hop", r1_separation),
    Check("R2", "thinking toggle passthrough", False, "hop", r2_toggle),
    Check("R3", "reasoning + tools", False, "hop", r3_reasoning_tools),
    Check("J1", "response_format json_schema enforced", False, "hop", j1_json_schema),
    Check("L1", "served context length consistent", False, "model", l1_context),
    Check("L2", "over-length prompt rejected with 400", True, "hop", l2_overlength),
    Check("C1", "concurrency burst completes", True, "model", c1_burst),
    Check("G1", "LiteLLM capability flags match", False, "model", g1_capabilities),
)
CHECK_IDS = tuple(c.id for c in CHECKS)


def combine(ctx: ModelCtx, check: Check, per_hop: dict[str, Outcome]) -> Outcome:
    """Merge direct and proxied outcomes into one cell, saying whose fault a failure is."""
    if len(per_hop) == 1:
        kind, o = next(iter(per_hop.items()))
        other = "proxy" if kind == "direct" else "direct"
        if check.scope == "hop" and other in ctx.hop_skip and o.status != SKIP:
            return Outcome(o.status, f"{kind}: {o.detail}", o.fix, o.data)
        return o
    d, p = per_hop.get("direct"), per_hop.get("proxy")
    assert d is not None and p is not None
    status = max((d, p), key=lambda o: _RANK[o.status]).status
    if d.status == p.status and (d.detail == p.detail or (d.status == FAIL and d.fix == p.fix)):
        detail = f"direct+proxy: {d.detail}"
    else:
        detail = f"direct: {d.status} {d.detail} | proxy: {p.status} {p.detail}"
    fix = None
    if d.status == FAIL:
        fix = d.fix
        if p.status == FAIL and fix:
            fix = f"backend fault (fails directly too): {fix}"
    elif p.status == FAIL:
        how = "passes" if d.status == PASS else "only warns" if d.status == WARN else "is skipped"
        fix = f"proxy fault (direct to vLLM {how}): {p.fix or 'check the LiteLLM config and log'}"
    else:
        fix = d.fix or p.fix
    return Outcome(status, detail, fix, {**p.data, **d.data})


def refine(ctx: ModelCtx, results: dict[str, Outcome]) -> None:
    """Cross-check hints once every check has run (e.g. auto fails in prose but required works)."""
    t3 = results.get("T3")
    for cid in ("T1", "T2", "T8"):
        o = results.get(cid)
        if o is None or o.status != FAIL or not o.data.get("prose"):
            continue
        if t3 is not None and t3.status in (PASS, WARN):
            o.fix = (
                "the model can call tools (tool_choice=required works) but auto mode does not trigger: "
                + (o.fix or "check the chat template renders tools and the system prompt")
            )
