"""verify against a tiny threaded fake OpenAI server on 127.0.0.1: good answers, text tool calls,
the missing-flags 400, malformed JSON, broken SSE, 5xx, a refused port and a wrong key.

The fake speaks just enough of vLLM's / LiteLLM's API; the real servers are in tests/e2e."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from residency.verify.runner import run_verify, select_checks
from residency.verify.targets import targets_from_url

MAX_LEN = 256
XML_CALL = (
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"
)
AUTO_400 = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'


def _words(body: dict) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))


class Fake(BaseHTTPRequestHandler):
    mode = "good"
    key: str | None = None
    proxy = False

    def log_message(self, *a):  # quiet
        pass

    def _send(self, status: int, body, ctype: str = "application/json") -> None:
        data = (
            body
            if isinstance(body, bytes)
            else (body if isinstance(body, str) else json.dumps(body)).encode()
        )
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _err(self, status: int, msg: str) -> None:
        self._send(status, {"error": {"message": msg, "type": "BadRequestError", "code": status}})

    def _authorized(self) -> bool:
        if self.key is None:
            return True
        got = self.headers.get("Authorization", "")
        if got != f"Bearer {self.key}":
            self._err(401, f"Authentication Error, invalid key: {got}")  # echoes the key like some proxies do
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        if self.path in ("/health/liveliness", "/health/readiness"):
            return (
                self._send(200, '"I\'m alive!"') if self.proxy else self._send(404, {"detail": "Not Found"})
            )
        if self.mode == "500":
            return self._err(500, "boom")
        if self.path == "/health":
            return self._send(200, b"")
        if self.path == "/metrics":
            txt = 'vllm:num_requests_running{model_name="fake"} 0.0\nvllm:num_requests_waiting{model_name="fake"} 0.0\n'
            txt += 'vllm:kv_cache_usage_perc{model_name="fake"} 0.0\n'
            return self._send(200, txt, "text/plain")
        if self.path == "/v1/models":
            if not self._authorized():
                return
            return self._send(
                200,
                {"object": "list", "data": [{"id": "fake", "owned_by": "vllm", "max_model_len": MAX_LEN}]},
            )
        if self.path in ("/model/info", "/v1/model/info"):
            if not self._authorized():
                return
            return self._send(200, {"data": [{"model_name": "fake", "litellm_params": {"model": "hosted_vllm/fake"},
                                              "model_info": {"max_input_tokens": MAX_LEN, "supports_function_calling": True}}]})  # fmt: skip
        self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/tokenize":
            n = _words(body) + 10
            return self._send(200, {"count": n, "max_model_len": MAX_LEN, "tokens": list(range(n))})
        if self.path == "/detokenize":
            return self._send(
                200,
                {
                    "prompt": '<tool_call>\n{"name": <function-name>, "arguments": <args>}\n</tool_call> get_weather'
                },
            )
        if not self._authorized():
            return
        if self.mode == "500":
            return self._err(500, "EngineCore died")
        if self.mode == "badjson":
            return self._send(200, b'{"id": "x", "choices": [ {oops')
        if _words(body) + 10 > MAX_LEN:
            return self._err(
                400,
                f"This model's maximum context length is {MAX_LEN} tokens. However, your prompt is too long.",
            )
        if (body.get("max_tokens") or 0) >= MAX_LEN:
            return self._err(
                400, f"'max_tokens' or 'max_completion_tokens' is too large: {body['max_tokens']}."
            )
        tools = body.get("tools") or []
        choice = body.get("tool_choice", "auto" if tools else None)
        if tools and choice == "auto" and self.mode == "noauto":
            return self._err(400, AUTO_400)
        last = body["messages"][-1]
        msg: dict = {"role": "assistant", "content": None}
        finish = "stop"
        text = str(last.get("content") or "")
        if last.get("role") == "tool":
            msg["content"] = "It is 18 degrees and sunny in Paris."
        elif tools and "weather" in text and choice != "none":
            if self.mode == "xml" and choice == "auto":
                msg["content"] = XML_CALL
            elif self.mode == "strcalls" and not body.get("stream"):
                msg["tool_calls"] = ['get_weather({"city": "Paris"})']  # a list holding a plain string
                finish = "tool_calls"
            else:
                msg["tool_calls"] = [{"id": "chatcmpl-tool-abc123def", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]  # fmt: skip
                finish = "tool_calls"
        elif body.get("response_format"):
            msg["content"] = '{"city": "Paris", "temperature_c": 21}'
        else:
            msg["content"] = "OK"
        if body.get("stream"):
            return self._stream(msg, finish)
        usage = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
        self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body.get("model"),
                         "choices": [{"index": 0, "message": msg, "finish_reason": finish}], "usage": usage})  # fmt: skip

    def _stream(self, msg: dict, finish: str) -> None:
        def chunk(delta: dict, fr: str | None = None) -> str:
            c = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "fake",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": fr}]}  # fmt: skip
            return f"data: {json.dumps(c)}\n\n"

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if self.mode == "brokensse":
            self.wfile.write(b'data: {"id": "c", "choices": [\n\n')
            self.wfile.flush()
            return
        out = [chunk({"role": "assistant", "content": ""})]
        if msg.get("content"):
            c = msg["content"]
            out += [chunk({"content": c[: len(c) // 2]}), chunk({"content": c[len(c) // 2 :]})]
        for i, tc in enumerate(msg.get("tool_calls") or []):
            out.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": tc["id"],
                                "type": "function",
                                "function": {"name": tc["function"]["name"]},
                            }
                        ]
                    }
                )
            )
            a = tc["function"]["arguments"]
            out += [chunk({"tool_calls": [{"index": i, "function": {"arguments": a[:5]}}]}),
                    chunk({"tool_calls": [{"index": i, "function": {"arguments": a[5:]}}]})]  # fmt: skip
        out.append(chunk({}, finish))
        out.append(
            "data: "
            + json.dumps({"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
            + "\n\n"
        )
        out.append("data: [DONE]\n\n")
        self.wfile.write("".join(out).encode())
        self.wfile.flush()


@pytest.fixture
def fake():
    servers = []

    def start(mode: str = "good", key: str | None = None, proxy: bool = False) -> str:
        handler = type("H", (Fake,), {"mode": mode, "key": key, "proxy": proxy})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _by_id(report) -> dict:
    assert len(report.models) == 1
    return {c.id: c for c in report.models[0].checks}


def _verify(url: str, **kw):
    return run_verify(
        targets_from_url(url, kw.pop("key", None), kw.pop("models", None)),
        select_checks(kw.pop("only", None)),
        timeout=10,
    )


def test_good_bare_vllm_passes_and_skips_proxy_checks(fake):
    rep = _verify(fake("good"))
    c = _by_id(rep)
    assert rep.ok, [(x.id, x.status, x.detail) for x in c.values() if x.status == "fail"]
    for cid in ("P3", "M1", "M2", "T1", "T2", "T3", "T4", "T6", "T8", "L2", "C1"):
        assert c[cid].status == "pass", (cid, c[cid].detail)
    assert c["P1"].status == "skip" and "bare vLLM" in c["P1"].detail
    assert c["G1"].status == "skip"
    assert "200" not in c["L2"].detail and "400 context error" in c["L2"].detail
    assert c["R1"].status == "skip"  # not a reasoning model


def test_xml_under_hermes_is_diagnosed_as_qwen3_coder(fake):
    rep = _verify(fake("xml"), only="T1,T2,T3")
    c = _by_id(rep)
    assert not rep.ok
    for cid in ("T1", "T2"):
        assert c[cid].status == "fail"
        assert "Qwen3-Coder XML" in c[cid].detail
        assert "--tool-call-parser qwen3_coder" in c[cid].fix
    assert c["T3"].status == "pass"  # required uses guided decoding, not the parser


def test_missing_auto_flags_400_names_the_flags(fake):
    c = _by_id(_verify(fake("noauto"), only="T1"))
    assert c["T1"].status == "fail"
    assert "400" in c["T1"].detail
    # the fake's template render teaches hermes JSON, so the fix names hermes
    assert "--enable-auto-tool-choice --tool-call-parser hermes" in c["T1"].fix


@pytest.mark.parametrize(
    ("mode", "cid", "needle"),
    [
        ("badjson", "M1", "malformed JSON"),
        ("brokensse", "M2", "broken stream"),
        ("500", "M1", "HTTP 500"),
        ("500", "P3", "500"),
    ],
)
def test_hostile_server_fails_the_check_and_run_goes_on(fake, mode, cid, needle):
    rep = run_verify(targets_from_url(fake(mode), None, ["fake"]), select_checks(), timeout=10)
    c = _by_id(rep)
    assert c[cid].status == "fail" and needle in c[cid].detail, c[cid].detail
    assert all(x.status in ("pass", "warn", "fail", "skip") for x in c.values())
    assert len(c) == len(select_checks())


def test_tool_calls_holding_a_string_is_a_server_defect(fake):
    """Issue 13.15: was 'unexpected ValueError: too many values to unpack' / 'report this as a verify bug'."""
    c = _by_id(_verify(fake("strcalls"), only="T1,T3,T4"))
    for cid in ("T1", "T3", "T4"):
        assert c[cid].status == "fail", (cid, c[cid].detail)
        assert "not a tool-call object" in c[cid].detail and "malformed response" in c[cid].fix, c[cid]
        assert "verify bug" not in c[cid].fix


def test_refused_port_fails_every_hop_check_with_the_reason():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens
    rep = run_verify(
        targets_from_url(f"http://127.0.0.1:{port}", None, ["m"]), select_checks("P3,M1,T1"), timeout=5
    )
    c = _by_id(rep)
    for cid in ("P3", "M1", "T1"):
        assert c[cid].status == "fail" and "cannot connect" in c[cid].detail
    assert not rep.ok


def test_wrong_key_fails_with_401_and_never_prints_the_key(fake):
    from residency.verify.report import to_json

    url = fake("good", key="right-key-123", proxy=True)
    secret = "sk-wrongsecret-987654"
    rep = run_verify(targets_from_url(url, secret, ["fake"]), select_checks("P1,P2,M1,T1"), timeout=10)
    c = _by_id(rep)
    assert c["P1"].status == "pass"
    assert c["M1"].status == "fail" and "401" in c["M1"].detail
    assert "key" in c["M1"].fix
    dumped = json.dumps(to_json(rep))
    assert secret not in dumped and "wrongsecret" not in dumped
    assert "***" in dumped  # the echoed key was redacted, not dropped silently


def test_proxy_with_right_key_runs_both_hops(fake):
    backend = fake("good")
    proxy = fake("good", key="k-123456", proxy=True)
    t = targets_from_url(proxy, "k-123456", ["fake"], [f"fake={backend}"])
    c = _by_id(run_verify(t, select_checks("P1,P2,T1,G1"), timeout=10))
    assert c["P1"].status == "pass"
    assert set(c["T1"].hops) == {"direct", "proxy"} and c["T1"].status == "pass"
    assert c["G1"].status == "pass", c["G1"].detail
