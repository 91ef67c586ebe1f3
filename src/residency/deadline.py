"""A total deadline per HTTP request (connect + headers + body), which httpx's timeouts are not.

Every HTTP request residency makes to a server it does not control (verify, status, up's health
gates) goes through `deadline_client` / `deadline_get`.

httpx's timeouts are per phase and per socket operation: a server that drips one byte every 2 s never
trips a 5 s read timeout, so a request could run for minutes. `DeadlineTransport` arms a timer per
request; when it fires it shuts the request's socket down, which ends any blocked read at once, and the
request fails with httpx.ReadTimeout ("total deadline of N s passed"). The deadline is the request's
timeout (the read timeout httpx passes down, i.e. `verify --timeout`).

Connections are not kept alive: the socket is taken from the connect event (httpcore's trace
extension), which a reused connection does not emit.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx


class _Guard:
    def __init__(self, total: float | None) -> None:
        self.total = total
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        if self.total is not None:
            self._timer = threading.Timer(self.total, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def arm(self, stream: Any) -> None:
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._sock = sock
            if self.fired:
                self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def timeout_error(self, request: httpx.Request) -> httpx.ReadTimeout:
        return httpx.ReadTimeout(f"total deadline of {self.total:g}s passed", request=request)


class _GuardedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, guard: _Guard, request: httpx.Request) -> None:
        self._inner = inner
        self._guard = guard
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except httpx.TransportError:
            if self._guard.fired:
                raise self._guard.timeout_error(self._request) from None
            raise
        if self._guard.fired:  # the shutdown read as a clean end of body: still a timeout
            raise self._guard.timeout_error(self._request)

    def close(self) -> None:
        self._guard.cancel()
        self._inner.close()


def _total(request: httpx.Request) -> float | None:
    t = (request.extensions.get("timeout") or {}).get("read")
    return t if t is not None and 0 < t < 1e6 else None  # a Timer cannot wait inf/nan/1e300 s


class DeadlineTransport(httpx.BaseTransport):
    """httpx.HTTPTransport with a total deadline per request (see the module docstring)."""

    def __init__(self, limits: httpx.Limits | None = None, **kwargs: Any) -> None:
        base = limits or httpx.Limits()
        limits = httpx.Limits(max_connections=base.max_connections, max_keepalive_connections=0)
        self._inner = httpx.HTTPTransport(limits=limits, **kwargs)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        guard = _Guard(_total(request))
        prev = request.extensions.get("trace")

        def trace(name: str, info: dict[str, Any]) -> None:
            if name == "connection.connect_tcp.complete":
                guard.arm(info.get("return_value"))
            if prev is not None:
                prev(name, info)

        request.extensions = {**request.extensions, "trace": trace}
        guard.start()
        try:
            resp = self._inner.handle_request(request)
        except httpx.TransportError:
            guard.cancel()
            if guard.fired:
                raise guard.timeout_error(request) from None
            raise
        assert isinstance(resp.stream, httpx.SyncByteStream)
        return httpx.Response(
            status_code=resp.status_code,
            headers=resp.headers,
            stream=_GuardedStream(resp.stream, guard, request),
            extensions=resp.extensions,
        )

    def close(self) -> None:
        self._inner.close()


def deadline_client(timeout: float, limits: httpx.Limits | None = None) -> httpx.Client:
    """An httpx client whose every request ends at a total deadline of its timeout (verify, status, up)."""
    return httpx.Client(timeout=timeout, transport=DeadlineTransport(limits=limits))


def deadline_get(url: str, timeout: float, headers: dict[str, str] | None = None) -> httpx.Response:
    """One GET under a total deadline (the body read in full), for callers without a client."""
    with deadline_client(timeout) as c:
        return c.get(url, headers=headers or {})
