"""Fixtures for end-to-end tests against the real stack (see tests/e2e/stackkit.py).

* ``stack``           (session) -> Path of the installed stack; errors if it is missing.
* ``toy_stack``       (session) -> ToyStack: vLLM servers ``hermes``, ``xml``, ``chat``,
                        ``noauto`` and a LiteLLM proxy in front of all four (model names =
                        served names). Started lazily, once per session, two
                        processes at a time (stackkit.STACK_PARALLEL).
* ``toy_hermes``      (session) -> VllmServer: one toy-hermes server with
                        ``--enable-auto-tool-choice --tool-call-parser hermes`` (the same
                        process as ``toy_stack.servers["hermes"]``).
* ``vllm_factory``    (function) -> start_vllm-like callable; servers stop after the test.
* ``litellm_factory`` (function) -> start_litellm-like callable; proxies stop after the test.

When a test fails, the log tails of every server still running (and of those the test
started itself) are attached to its report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e import stackkit
from tests.e2e.stackkit import (
    CPU_VLLM_ARGS,
    TOOL_ARGS_HERMES,
    TOY_STACK_SERVERS,
    LitellmProxy,
    ToyStack,
    VllmServer,
    litellm_model_entry,
    require_stack,
    start_litellm,
    start_vllm,
)

_shared: dict[tuple, VllmServer] = {}
_recent: list[stackkit._Proc] = []  # started by function-scoped factories of the current test
_startups: list[str] = []  # "name ready after N s" lines for the terminal summary


def _record(proc: stackkit._Proc) -> None:
    _startups.append(f"{proc.name:22s} pid {proc.pid:<7d} ready after {proc.started_s:5.1f}s  log {proc.log_path}")


def _shared_vllm(model: str, name: str, args: list[str], port: int | None = None) -> VllmServer:
    key = (model, name, tuple(args))
    srv = _shared.get(key)
    if srv is None or not srv.alive():
        srv = start_vllm(model, name, args, port=port)
        _record(srv)
        _shared[key] = srv
    return srv


def _shared_port(model: str, name: str, args: list[str]) -> int:
    """The port of the running shared server for these arguments, else a fresh one to start it on."""
    srv = _shared.get((model, name, tuple(args)))
    return srv.port if srv is not None and srv.alive() else stackkit.free_port()


@pytest.fixture(scope="session")
def stack() -> Path:
    return require_stack()


@pytest.fixture(scope="session")
def toy_hermes(stack: Path) -> VllmServer:
    return _shared_vllm("toy-hermes", "hermes", [*CPU_VLLM_ARGS, *TOOL_ARGS_HERMES])


@pytest.fixture(scope="session")
def toy_stack(stack: Path) -> Iterator[ToyStack]:
    # the servers and the proxy start stackkit.STACK_PARALLEL at a time (the proxy only needs the ports)
    args = {n: (model, n, [*CPU_VLLM_ARGS, *extra]) for n, (model, extra) in TOY_STACK_SERVERS.items()}
    ports = {name: _shared_port(*a) for name, a in args.items()}
    starts: dict[str, Callable[[], stackkit._Proc]] = {
        name: (lambda a=a, port=ports[name]: _shared_vllm(*a, port=port)) for name, a in args.items()
    }
    entries = [litellm_model_entry(n, f"http://127.0.0.1:{port}/v1") for n, port in ports.items()]
    starts["litellm"] = lambda: start_litellm(entries)
    procs = stackkit.start_parallel(starts)
    proxy = procs.pop("litellm")
    assert isinstance(proxy, LitellmProxy)
    _record(proxy)
    servers = {n: p for n, p in procs.items() if isinstance(p, VllmServer)}
    ts = ToyStack(servers=servers, proxy=proxy, startup_s={n: s.started_s for n, s in servers.items()})
    ts.startup_s["litellm"] = proxy.started_s
    yield ts
    proxy.stop()


@pytest.fixture(scope="session", autouse=True)
def _stop_shared_servers() -> Iterator[None]:
    yield
    for srv in _shared.values():
        srv.stop()
    _shared.clear()


@pytest.fixture
def vllm_factory(stack: Path) -> Iterator[Callable[..., VllmServer]]:
    started: list[VllmServer] = []

    def factory(model: str, served_name: str, args: list[str], **kw) -> VllmServer:
        try:
            srv = start_vllm(model, served_name, args, **kw)
        except stackkit.ServerStartError:
            raise
        _record(srv)
        started.append(srv)
        _recent.append(srv)
        return srv

    yield factory
    for s in started:
        s.stop()


@pytest.fixture
def litellm_factory(stack: Path) -> Iterator[Callable[..., LitellmProxy]]:
    started: list[LitellmProxy] = []

    def factory(model_list=None, config_path=None, **kw) -> LitellmProxy:
        p = start_litellm(model_list=model_list, config_path=config_path, **kw)
        _record(p)
        started.append(p)
        _recent.append(p)
        return p

    yield factory
    for p in started:
        p.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "setup":
        _recent.clear()
    if report.failed and report.when in ("setup", "call"):
        seen = set()
        for proc in [*_recent, *stackkit._live]:
            if id(proc) in seen:
                continue
            seen.add(id(proc))
            report.sections.append(
                (f"{proc.name} pid {proc.pid} log {proc.log_path} (tail)", proc.log_tail(40))
            )


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # xdist worker: tests/conftest.py prints them
        session.config.workeroutput["residency_startups"] = list(_startups)


def pytest_terminal_summary(terminalreporter):
    if _startups:
        terminalreporter.section("residency test stack: server start-up times")
        for line in _startups:
            terminalreporter.write_line(line)
