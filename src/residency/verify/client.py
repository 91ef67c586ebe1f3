"""HTTP as agents see it: the openai client for plain requests, raw httpx where it hides details.

Every failure becomes RequestFailed(kind, status, message) so a check can report it and the run
goes on. Messages pass through the run's Redactor before anyone prints them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from residency.errors import RequestFailed
from residency.verify.redact import Redactor
from residency.verify.sse import StreamResult, parse_sse, reassemble


def error_message(body: Any, text: str = "") -> str:
    """The server's error text from any of the shapes vLLM / LiteLLM / FastAPI use (toolcalls.md §1.4)."""
    msg = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            msg = str(err["message"])
        elif isinstance(err, str):
            msg = err
        elif body.get("message"):
            msg = str(body["message"])
        elif body.get("detail"):
            msg = str(body["detail"])
    return unwrap_litellm(msg if msg is not None else (text or "").strip()[:500] or "(empty body)")


_WRAPPED = re.compile(r"^(litellm\.[\w.]+Error):.*?Exception - (\{.*\})", re.S)


def unwrap_litellm(msg: str) -> str:
    """'litellm.BadRequestError: Hosted_vllmException - {"error": {"message": "X"}}...' -> 'litellm.BadRequestError: X'.

    LiteLLM 1.7x-1.10x wraps the backend's body this way (toolcalls.md §3.2) and appends a
    'LiteLLM: model group ... failed' note; the class name is kept because agents key on it
    (ContextWindowExceededError)."""
    m = _WRAPPED.search(msg)
    if not m:
        return msg.split("\n\nLiteLLM:")[0]
    try:
        inner = json.JSONDecoder().raw_decode(m.group(2))[0]
    except ValueError:
        return msg.split("\n\nLiteLLM:")[0]
    cls = m.group(1)
    if "ContextWindowExceeded" in msg and "ContextWindowExceeded" not in cls:
        cls = "litellm.ContextWindowExceededError"
    return f"{cls}: {error_message(inner)}"


@dataclass
class Hop:
    """One way to reach one model: `direct` (the vLLM backend) or `proxy` (LiteLLM)."""

    kind: str
    base_url: str  # .../v1
    model: str  # the model name to send on this hop
    key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    redact: Redactor = field(default_factory=Redactor, repr=False)
    http: httpx.Client | None = field(default=None, repr=False)

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def client(self) -> httpx.Client:
        if self.http is None:
            from residency.deadline import deadline_client

            self.http = deadline_client(self.timeout)
        return self.http


@dataclass
class HttpResult:
    status: int
    body: Any  # parsed JSON or None
    text: str
    elapsed: float

    @property
    def message(self) -> str:
        return error_message(self.body, self.text)


def _transport_error(e: Exception, url: str, redact: Redactor) -> RequestFailed:
    if isinstance(e, httpx.TimeoutException):
        return RequestFailed("timeout", redact(f"timed out ({e or type(e).__name__}) on {url}"))
    if isinstance(e, httpx.ConnectError):
        return RequestFailed("connect", redact(f"cannot connect to {url}: {e}"))
    if isinstance(e, httpx.RemoteProtocolError):
        return RequestFailed("protocol", redact(f"broken HTTP response from {url}: {e}"))
    return RequestFailed("connect", redact(f"{type(e).__name__} on {url}: {e}"))


def request(
    hop: Hop, method: str, url: str, body: Any = None, timeout: float | None = None, auth: bool = True
) -> HttpResult:
    """Raw request; never raises for HTTP status, only for transport problems."""
    t0 = time.monotonic()
    try:
        r = hop.client().request(
            method, url, json=body, headers=hop.headers() if auth else {}, timeout=timeout or hop.timeout
        )
    except httpx.HTTPError as e:
        raise _transport_error(e, url, hop.redact) from None
    try:
        parsed = r.json()
    except ValueError:
        parsed = None
    return HttpResult(r.status_code, parsed, hop.redact(r.text[:4000]), time.monotonic() - t0)


def get_json(hop: Hop, url: str, timeout: float | None = None, auth: bool = True) -> Any:
    """GET expecting 200 + JSON; anything else raises RequestFailed."""
    r = request(hop, "GET", url, timeout=timeout, auth=auth)
    if r.status != 200:
        raise RequestFailed("http", hop.redact(r.message), r.status, r.body)
    if r.body is None:
        raise RequestFailed("json", f"malformed JSON from {url}: {r.text[:120]!r}", r.status)
    return r.body


def chat(hop: Hop, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Non-streaming chat completion through the openai client, as agents send it.

    Returns the response as a dict (extra fields such as `reasoning` kept). Raises RequestFailed.
    """
    import openai

    body = {**body, "model": hop.model}
    known = {
        "model", "messages", "tools", "tool_choice", "max_tokens", "temperature", "parallel_tool_calls",
        "response_format", "stream", "stream_options", "seed", "stop", "n", "top_p",
    }  # fmt: skip
    kwargs = {k: v for k, v in body.items() if k in known}
    extra = {k: v for k, v in body.items() if k not in known}
    client = openai.OpenAI(
        base_url=hop.base_url,
        api_key=hop.key or "none",
        max_retries=0,
        timeout=timeout or hop.timeout,
        http_client=hop.client(),
    )
    try:
        resp = client.chat.completions.create(**kwargs, extra_body=extra or None)
    except openai.APIStatusError as e:
        raise RequestFailed(
            "http", hop.redact(error_message(e.body, e.message)), e.status_code, e.body
        ) from None
    except openai.APITimeoutError:
        raise RequestFailed("timeout", f"timed out after {timeout or hop.timeout:.0f}s") from None
    except openai.APIConnectionError as e:
        cause = e.__cause__ or e
        raise RequestFailed("connect", hop.redact(f"cannot connect to {hop.base_url}: {cause}")) from None
    except (ValueError, openai.APIResponseValidationError) as e:
        raise RequestFailed("json", hop.redact(f"malformed JSON in the response: {e}")) from None
    if isinstance(resp, str):  # openai returns the text when the body is not JSON
        raise RequestFailed("json", hop.redact(f"malformed JSON in the response: {resp[:120]!r}"))
    data = resp.model_dump(exclude_unset=False, warnings=False)  # a malformed body is diagnosed below
    if not isinstance(data, dict) or not data.get("choices"):
        raise RequestFailed("protocol", "response has no choices (agent SDKs raise on this)")
    _check_tool_calls_shape(data, hop)
    return data


def _check_tool_calls_shape(data: dict[str, Any], hop: Hop) -> None:
    """message.tool_calls must be a list of objects: anything else is a server defect (the openai SDK
    passes it through unvalidated), reported as a malformed response rather than crashing a check."""
    for i, ch in enumerate(data["choices"]):
        msg = ch.get("message") if isinstance(ch, dict) else None
        calls = msg.get("tool_calls") if isinstance(msg, dict) else None
        if calls is None:
            continue
        where = f"choices[{i}].message.tool_calls"
        if not isinstance(calls, list):
            bad = f"{where} is a {type(calls).__name__}, not a list"
        else:
            odd = [(j, c) for j, c in enumerate(calls) if not isinstance(c, dict)]
            if not odd:
                continue
            j, c = odd[0]
            bad = f"{where}[{j}] is a {type(c).__name__} ({str(c)[:60]!r}), not a tool-call object"
        raise RequestFailed(
            "protocol", hop.redact(f"{bad}: the server's response is malformed (agent SDKs reject it)")
        )


@dataclass
class Streamed:
    result: StreamResult
    arrival: list[float]  # seconds since request start, per SSE frame
    status: int


def stream_chat(hop: Hop, body: dict[str, Any], timeout: float | None = None) -> Streamed:
    """Streaming chat completion over raw httpx, so SSE framing stays visible. Raises RequestFailed."""
    url = f"{hop.base_url}/chat/completions"
    payload = {**body, "model": hop.model, "stream": True}
    payload.setdefault("stream_options", {"include_usage": True})
    t0 = time.monotonic()
    deadline = t0 + (timeout or hop.timeout)
    lines: list[str] = []
    arrival: list[float] = []
    try:
        with hop.client().stream(
            "POST", url, json=payload, headers=hop.headers(), timeout=timeout or hop.timeout
        ) as r:
            if r.status_code != 200:
                r.read()
                try:
                    parsed = r.json()
                except ValueError:
                    parsed = None
                raise RequestFailed("http", hop.redact(error_message(parsed, r.text)), r.status_code, parsed)
            for line in r.iter_lines():
                lines.append(line)
                if line == "":
                    arrival.append(time.monotonic() - t0)
                if time.monotonic() > deadline:
                    raise RequestFailed(
                        "timeout", f"stream still running after {timeout or hop.timeout:.0f}s"
                    )
    except httpx.HTTPError as e:
        if lines:  # broken mid-stream: report what arrived
            frames, problems = parse_sse(lines)
            res = reassemble(frames, problems)
            res.problems.append(
                hop.redact(f"stream broke after {len(frames)} events: {type(e).__name__}: {e}")
            )
            return Streamed(res, arrival, 200)
        raise _transport_error(e, url, hop.redact) from None
    frames, problems = parse_sse(lines)
    res = reassemble(frames, problems)
    if not res.done and not res.problems:
        res.problems.append("stream ended without data: [DONE]")
    return Streamed(res, arrival, 200)


def tokenize(hop: Hop, body: dict[str, Any]) -> dict[str, Any]:
    """POST {backend}/tokenize (vLLM only; not proxied by LiteLLM)."""
    r = request(hop, "POST", f"{hop.root}/tokenize", {**body, "model": hop.model})
    if r.status != 200 or not isinstance(r.body, dict):
        raise RequestFailed("http", hop.redact(r.message), r.status, r.body)
    return r.body


def render_prompt(hop: Hop, messages: list[dict], tools: list[dict] | None = None) -> str | None:
    """The prompt the backend's chat template builds (via /tokenize + /detokenize); None if unavailable."""
    try:
        tok = tokenize(hop, {"messages": messages, "tools": tools, "add_generation_prompt": True})
        r = request(
            hop, "POST", f"{hop.root}/detokenize", {"model": hop.model, "tokens": tok.get("tokens", [])}
        )
    except RequestFailed:
        return None
    if r.status == 200 and isinstance(r.body, dict) and isinstance(r.body.get("prompt"), str):
        return r.body["prompt"]
    return None


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
