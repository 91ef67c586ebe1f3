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

A `Budget` bounds a whole operation of several requests (the Hub resolve: huggingface_hub's HEADs,
GETs and retries): each request's deadline is the smaller of its timeout and what is left, and when
the budget ends a request fails with `DeadlineExceeded`, which huggingface_hub does not retry.
`deadline_transport(module, budget)` builds the transport for httpx or for huggingface_hub's own
httpx2 fork (same API, its own classes).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from functools import cache
from types import ModuleType
from typing import Any

import httpx


class DeadlineExceeded(Exception):
    """A `Budget` ran out. Deliberately not an httpx error: HTTP clients must not retry it."""


class Budget:
    """The time left for a whole multi-request operation (monotonic clock)."""

    def __init__(self, total_s: float) -> None:
        self.total = total_s
        self._end = time.monotonic() + total_s

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"total deadline of {self.total:g}s passed")


class _Guard:
    def __init__(
        self,
        total: float | None,
        mod: ModuleType = httpx,
        budget: Budget | None = None,
        budget_bound: bool = False,
    ) -> None:
        self.total = total
        self._mod = mod
        self._budget = budget
        self.budget_bound = budget_bound  # the budget's end, not the request's timeout, set `total`
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

    def timeout_error(self, request: Any) -> Exception:
        if self._budget is not None:  # under a budget a deadline ends the operation, no retry
            if not self.budget_bound:
                return DeadlineExceeded(f"request deadline of {self.total:g}s passed")
            return self._budget.exceeded()
        err: Exception = self._mod.ReadTimeout(f"total deadline of {self.total:g}s passed", request=request)
        return err


def _total(request: Any) -> float | None:
    t = (request.extensions.get("timeout") or {}).get("read")
    return t if t is not None and 0 < t < 1e6 else None  # a Timer cannot wait inf/nan/1e300 s


@cache
def _classes(mod: ModuleType) -> tuple[type, type]:
    """The guarded stream and the transport for one httpx-compatible module (httpx, httpx2)."""

    class _GuardedStream(mod.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, guard: _Guard, request: Any) -> None:
            self._inner = inner
            self._guard = guard
            self._request = request

        def __iter__(self) -> Iterator[bytes]:
            try:
                yield from self._inner
            except mod.TransportError:
                if self._guard.fired:
                    raise self._guard.timeout_error(self._request) from None
                raise
            if self._guard.fired:  # the shutdown read as a clean end of body: still a timeout
                raise self._guard.timeout_error(self._request)

        def close(self) -> None:
            self._guard.cancel()
            self._inner.close()

    class _Transport(mod.BaseTransport):  # type: ignore[name-defined,misc]
        """mod.HTTPTransport with a total deadline per request (see the module docstring)."""

        def __init__(self, limits: Any = None, budget: Budget | None = None, **kwargs: Any) -> None:
            base = limits or mod.Limits()
            limits = mod.Limits(max_connections=base.max_connections, max_keepalive_connections=0)
            self._inner = mod.HTTPTransport(limits=limits, **kwargs)
            self._budget = budget

        def handle_request(self, request: Any) -> Any:
            total = _total(request)
            bound = False
            if self._budget is not None:
                left = self._budget.remaining()
                if left <= 0:
                    raise self._budget.exceeded()
                bound = total is None or left <= total
                total = left if bound else total
            guard = _Guard(total, mod, self._budget, bound)
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
            except mod.TransportError:
                guard.cancel()
                if guard.fired:
                    raise guard.timeout_error(request) from None
                raise
            assert isinstance(resp.stream, mod.SyncByteStream)
            return mod.Response(
                status_code=resp.status_code,
                headers=resp.headers,
                stream=_GuardedStream(resp.stream, guard, request),
                extensions=resp.extensions,
            )

        def close(self) -> None:
            self._inner.close()

    return _GuardedStream, _Transport


DeadlineTransport = _classes(httpx)[1]


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP(S)_PROXY / ALL_PROXY, minus NO_PROXY). httpx
    reads them itself only when it builds its own transport: a client given a transport must be told."""
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def deadline_transport(mod: ModuleType = httpx, budget: Budget | None = None, **kwargs: Any) -> Any:
    """A transport of `mod` (httpx or huggingface_hub's httpx2) with total deadlines (module docstring)."""
    return _classes(mod)[1](budget=budget, **kwargs)


def deadline_client(timeout: float, limits: httpx.Limits | None = None) -> httpx.Client:
    """An httpx client whose every request ends at a total deadline of its timeout (verify, status, up)."""
    return httpx.Client(timeout=timeout, transport=DeadlineTransport(limits=limits))


def deadline_get(url: str, timeout: float, headers: dict[str, str] | None = None) -> httpx.Response:
    """One GET under a total deadline (the body read in full), for callers without a client."""
    with deadline_client(timeout) as c:
        return c.get(url, headers=headers or {})
