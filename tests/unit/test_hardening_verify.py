"""Issue 13.5/13.15: verify requests end at a total deadline on servers that drip bytes; a tool_calls
list holding a plain string is a server defect, not a verify bug.

The drip servers listen on 127.0.0.1, send at most a bounded number of bytes and stop themselves.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import pytest

from residency.deadline import deadline_client
from residency.errors import RequestFailed
from residency.verify.client import Hop, chat, request, stream_chat


@contextmanager
def drip_server(head: bytes, drip: bytes = b"x", every: float = 0.2, max_bytes: int = 300):
    """Accepts connections; sends `head` at once, then one byte of `drip` every `every` s (bounded)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)
                conn.sendall(head)
                for i in range(max_bytes):
                    if stop.wait(every):
                        return
                    conn.sendall(drip[i % len(drip) : i % len(drip) + 1])
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(5)
        srv.close()


def _hop(url: str, timeout: float = 1.0) -> Hop:
    return Hop("direct", url + "/v1", "m", None, timeout, http=deadline_client(timeout))


HEADERS_DRIP = b"HTTP/1.1 200 OK\r\n"  # then the header block drips forever
BODY_DRIP = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{"
SSE_DRIP = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.mark.timeout(30)  # a hang guard: each request below must end near its 1 s deadline
@pytest.mark.parametrize("head", [HEADERS_DRIP, BODY_DRIP], ids=["headers", "body"])
def test_raw_request_ends_at_total_deadline(head):
    with drip_server(head, drip=b"X-a: b\r\n" if head == HEADERS_DRIP else b" ") as url:
        t0 = time.monotonic()
        with pytest.raises(RequestFailed) as ei:
            request(_hop(url), "GET", url + "/v1/models")
        assert ei.value.kind == "timeout" and "total deadline" in str(ei.value)
        assert time.monotonic() - t0 < 10


@pytest.mark.timeout(30)
def test_chat_ends_at_total_deadline():
    with drip_server(BODY_DRIP, drip=b" ") as url:
        with pytest.raises(RequestFailed) as ei:
            chat(
                Hop("direct", url + "/v1", "m", None, 1.0), {"messages": [{"role": "user", "content": "hi"}]}
            )
        assert ei.value.kind == "timeout"


@pytest.mark.timeout(30)
def test_stream_without_newlines_ends_at_total_deadline():
    # chunk "1\r\nx\r\n" repeated: bytes arrive, but never a line end, so a per-line check never runs
    with drip_server(SSE_DRIP, drip=b"1\r\nx\r\n") as url:
        with pytest.raises(RequestFailed) as ei:
            stream_chat(_hop(url), {"messages": [{"role": "user", "content": "hi"}]})
        assert ei.value.kind == "timeout"


def test_fast_server_unaffected():
    body = b'{"data": []}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    with drip_server(head, max_bytes=0) as url:
        r = request(_hop(url, 5.0), "GET", url + "/v1/models")
        assert r.status == 200 and r.body == {"data": []}


@pytest.mark.timeout(30)
def test_up_health_gate_and_status_metrics_end_at_total_deadline():
    from residency.runtime.process import http_ok
    from residency.status.metrics import scrape_metrics

    with drip_server(HEADERS_DRIP, drip=b"X-a: b\r\n") as url:
        t0 = time.monotonic()
        assert http_ok(url + "/health", timeout=1.0) is False
        assert scrape_metrics(url, timeout=1.0) is None
        assert time.monotonic() - t0 < 15
