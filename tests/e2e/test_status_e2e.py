"""`residency status` against the real toy stack: two vLLM CPU servers and LiteLLM.

Reuses the session `toy_stack` (hermes, xml) for the ready/RSS and request-burst checks, and
starts one extra toy server of its own for the killed-mid-watch check (the shared servers must
stay up for the other e2e tests).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from residency.gpu import HostReader
from residency.spec import load_spec
from residency.status.ledger import build_ledger
from tests.e2e.stackkit import cpu_device

pytestmark = pytest.mark.e2e

MiB = 1 << 20


def _write_spec(path: Path, servers: list, proxy_port: int) -> Path:
    """A spec naming the running servers by their served name and port (no state file: status
    finds each pid as the process listening on the port). The CPU runtime is unified memory."""
    spec = {
        "vllm_version": "0.32.0",
        "device": cpu_device(),
        "models": [{"name": s.served_name, "model": s.model, "port": s.port} for s in servers],
        "proxy": {"port": proxy_port},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def _status_json(spec_path: Path, *args: str, timeout: float = 120) -> tuple[int, dict]:
    out = subprocess.run(
        [sys.executable, "-m", "residency.cli", "status", str(spec_path), "--json", "--no-plan", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.returncode, json.loads(out.stdout or "null")


@pytest.fixture(scope="module")
def pair(request):
    """Two toy vLLM servers and a LiteLLM proxy in front of them: the session `toy_stack`'s hermes
    and xml when every toy model is installed, else two toy-chat servers of this module's own."""
    from tests.e2e.stackkit import (
        CPU_VLLM_ARGS,
        StackNotInstalled,
        litellm_model_entry,
        require_stack,
        start_litellm,
        start_vllm,
    )

    try:
        require_stack()
        ts = request.getfixturevalue("toy_stack")
        yield [ts.servers["hermes"], ts.servers["xml"]], ts.proxy
        return
    except StackNotInstalled:
        require_stack(models=["toy-chat"])
    own: list = []
    try:
        for name in ("status-a", "status-b"):
            own.append(start_vllm("toy-chat", name, CPU_VLLM_ARGS))
        proxy = start_litellm([litellm_model_entry(s.served_name, s.base_url) for s in own])
        own.append(proxy)
        yield own[:2], proxy
    finally:
        for p in own:
            p.stop()


@pytest.fixture
def two_models(tmp_path, pair):
    servers, proxy = pair
    return _write_spec(tmp_path / "toy.yaml", servers, proxy.port), servers


def test_status_shows_both_models_ready_with_rss(two_models):
    spec_path, servers = two_models
    rc, d = _status_json(spec_path)
    assert rc == 0, d  # 0: every model ready
    by_name = {m["name"]: m for m in d["models"]}
    for s in servers:
        m = by_name[s.served_name]
        assert m["state"] == "ready", m
        tree = [s.pid] + [c.pid for c in psutil.Process(s.pid).children(recursive=True)]
        # no state file: the pid is the process listening on the port, whose tree holds the memory
        assert m["pid"] in tree and set(m["pids"]) <= set(tree) and len(m["pids"]) >= 2, (m, tree)
        rss = sum(psutil.Process(p).memory_info().rss for p in m["pids"])
        # API server + EngineCore + worker of a CPU vLLM hold far more than 500 MiB (torch alone ~300 MiB
        # per process); the figure is the tree's RSS, so it matches a fresh reading within 10%
        assert m["memory_source"] == "rss" and m["memory_bytes"] > 500 * MiB, m
        assert abs(m["memory_bytes"] - rss) < 0.1 * rss, (m["memory_bytes"], rss)
        assert m["kv_metric"] == "vllm:kv_cache_usage_perc"  # 0.32's only KV usage name
        assert m["kv_cache_usage"] is not None and s.served_name in m["served_names"]
    assert d["proxy"]["state"] == "ready", d["proxy"]
    assert d["device"]["unified"] and d["device"]["reader"] == "host"
    assert 0 < d["device"]["host"]["available_bytes"] <= d["device"]["host"]["total_bytes"]


def test_kv_usage_rises_under_burst_and_falls_after(two_models):
    spec_path, servers = two_models
    srv = servers[0]
    spec = load_spec(spec_path)
    reader = HostReader()

    def sample():
        led = build_ledger(spec, reader, spec_path=spec_path, plan_note="no plan: e2e", discover_pids=False)
        return next(m for m in led.models if m.name == srv.served_name)

    idle = sample()
    assert idle.state == "ready" and idle.kv_cache_usage is not None
    # 8 concurrent generations of 3000 tokens (ignore_eos) against max_num_seqs 4: 4 run, 4 wait.
    # The toy model's KV is small against the server's 128 MiB pool (~175k tokens), so usage stays
    # at a few %, but it is > 0 while sequences hold blocks and returns to idle when they finish.
    prompt = "Write a long story about a lighthouse keeper and the sea. " * 20
    errors: list[BaseException] = []
    client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=16))
    client.get(srv.url + "/health")  # connect before the burst starts

    def one() -> None:
        try:
            r = client.post(
                srv.base_url + "/chat/completions",
                json={
                    "model": srv.served_name,
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": 3000,
                    "ignore_eos": True,
                },
            )
            r.raise_for_status()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    samples = []
    while any(t.is_alive() for t in threads):
        m = sample()
        samples.append((m.state, m.kv_cache_usage, m.requests_running, m.requests_waiting))
        time.sleep(0.2)
    for t in threads:
        t.join()
    client.close()
    assert not errors, errors
    assert all(s[0] == "ready" for s in samples), samples  # busy is not starting
    kvs = [k for _, k, _, _ in samples if k is not None]
    assert kvs and max(kvs) > idle.kv_cache_usage, samples
    assert max((r or 0) for _, _, r, _ in samples) >= 2, samples  # the burst was seen in flight
    after = None
    for _ in range(30):  # the gauge is refreshed on the engine's next stats update
        after = sample().kv_cache_usage
        if after is not None and after < max(kvs):
            break
        time.sleep(0.5)
    assert after is not None and after < max(kvs) and after <= idle.kv_cache_usage + 1e-6, (after, max(kvs))


def test_backend_killed_mid_watch_shows_down(tmp_path, pair):
    from tests.e2e.stackkit import CPU_VLLM_ARGS, start_vllm

    servers, proxy = pair
    keep = servers[0]
    victim = start_vllm("toy-chat", "victim", CPU_VLLM_ARGS)  # our own: the shared servers stay up
    try:
        _watch_and_kill(tmp_path, keep, victim, proxy.port)
    finally:
        victim.stop()


def _watch_and_kill(tmp_path, keep, victim, proxy_port: int) -> None:
    spec_path = _write_spec(tmp_path / "kill.yaml", [keep, victim], proxy_port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "residency.cli", "status", str(spec_path), "--watch", "--json", "--no-plan"]
        + ["--interval", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    states: list[dict[str, str]] = []
    killed_tree: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"watch ended early: rc={proc.poll()} {proc.stderr.read()}"
            d = json.loads(line)
            st = {m["name"]: m["state"] for m in d["models"]}
            states.append(st)
            if not killed_tree and st["victim"] == "ready":
                # kill the server by its PID, children first so no EngineCore outlives it
                killed_tree = [c.pid for c in psutil.Process(victim.pid).children(recursive=True)] + [
                    victim.pid
                ]
                for pid in killed_tree:
                    os.kill(pid, signal.SIGKILL)
            elif killed_tree and st["victim"] == "down":
                break
        assert killed_tree, states
        assert states[-1] == {keep.served_name: "ready", "victim": "down"}, states
        for _ in range(2):  # the watch keeps refreshing after the backend died
            d = json.loads(proc.stdout.readline())
            assert {m["name"]: m["state"] for m in d["models"]}["victim"] == "down"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    err = proc.stderr.read()
    assert rc == 0, err
    assert "Traceback" not in err, err
