"""The Hub path of resolve_model against a local HTTP server speaking enough of the HF API.

huggingface_hub (2.x) makes these requests for what residency asks:
  * hf_hub_download: HEAD then GET {endpoint}/{repo}/resolve/{rev}/{file}; the HEAD answer must
    carry X-Repo-Commit, ETag and Content-Length; a missing file is 404 + X-Error-Code EntryNotFound,
    a missing repo 404 + X-Error-Code RepoNotFound;
  * get_safetensors_metadata (single-file repos): HEAD model.safetensors, then a ranged GET
    (Range: bytes=0-100000) of the header;
  * model_info: GET /api/models/{repo}/revision/{rev} (served for completeness).
The server records every request so the test can check that no weights were downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_resolve_helpers import TINY_BYTES, TINY_CONFIG, safetensors_bytes, tiny_tensors

from residency.errors import SpecError
from residency.memory import resolve
from residency.memory.resolve import resolve_model
from residency.spec import ModelSpec

SHA = "c" * 40


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []


def _handler(hub: FakeHub):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _send(self, code: int, body: bytes, headers: dict[str, str], head: bool) -> None:
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _serve(self, head: bool) -> None:
            hub.requests.append((self.command, self.path, dict(self.headers)))
            path = re.sub(r"^https?://[^/]+", "", self.path.split("?")[0])  # absolute form: via a proxy
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path)
            if m:
                repo = m.group(1)
                if repo not in hub.repos:
                    return self._send(
                        404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"}, head
                    )
                info = {"id": repo, "sha": SHA, "siblings": [{"rfilename": f} for f in hub.repos[repo]]}
                return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if not m:
                return self._send(404, b"not found", {}, head)
            repo, _rev, fname = m.groups()
            if repo not in hub.repos:
                return self._send(404, b"Repository not found", {"X-Error-Code": "RepoNotFound"}, head)
            files = hub.repos[repo]
            if "__gated__" in files:
                return self._send(
                    403, b"Access to this repo is restricted", {"X-Error-Code": "GatedRepo"}, head
                )
            if fname not in files:
                return self._send(404, b"Entry not found", {"X-Error-Code": "EntryNotFound"}, head)
            body = files[fname]
            if "__drip__" in files and fname == "config.json" and not head:
                return self._drip(body)
            headers = {"X-Repo-Commit": SHA, "ETag": '"' + hashlib.sha1(body).hexdigest() + '"'}
            rng = self.headers.get("Range") or self.headers.get("range")
            if rng and not head:
                a, b = (int(x) for x in rng.removeprefix("bytes=").split("-"))
                part = body[a : b + 1]
                headers["Content-Range"] = f"bytes {a}-{a + len(part) - 1}/{len(body)}"
                return self._send(206, part, headers, head)
            return self._send(200, body, headers, head)

        def _drip(self, body: bytes) -> None:
            """A stalled download: the headers promise the body, which then comes one byte per 0.1 s."""
            etag = '"' + hashlib.sha1(body).hexdigest() + '"'
            self.send_response(200)
            for k, v in {"X-Repo-Commit": SHA, "ETag": etag, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            for i in range(min(len(body), 300)):  # bounded: the server stops by itself
                try:
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)

        def do_HEAD(self):  # noqa: N802
            self._serve(head=True)

        def do_GET(self):  # noqa: N802
            self._serve(head=False)

    return H


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)  # read at import time; another test may have set it
    resolve.clear_cache()
    yield hub
    resolve.clear_cache()
    server.shutdown()
    server.server_close()


def _weights_downloaded(hub: FakeHub) -> list[str]:
    """Full GETs of weight files (ranged header reads are fine)."""
    return [
        p
        for method, p, h in hub.requests
        if method == "GET" and p.endswith(".safetensors") and not (h.get("Range") or h.get("range"))
    ]


def test_hub_sharded_repo_uses_index_total_size(fake_hub):
    cfg = {**TINY_CONFIG, "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}
    fake_hub.repos["acme/sharded"] = {
        "config.json": json.dumps(cfg).encode(),
        "model.safetensors.index.json": json.dumps(
            {"metadata": {"total_size": 999_000}, "weight_map": {}}
        ).encode(),
        "model-00001-of-00001.safetensors": b"\0" * 64,
    }
    f = resolve_model(ModelSpec(name="s", model="acme/sharded"))
    assert f.source == "hub" and f.id == "acme/sharded"
    assert f.checkpoint_bytes == 999_000
    assert f.quantization == "fp8" and f.num_hidden_layers == 2
    assert _weights_downloaded(fake_hub) == []
    # HF_TOKEN is sent
    assert any(
        h.get("authorization") == "Bearer hf_test_token" or h.get("Authorization") == "Bearer hf_test_token"
        for _, _, h in fake_hub.requests
    )


def test_hub_single_file_reads_only_the_header(fake_hub):
    data, total = safetensors_bytes(tiny_tensors())
    assert total == TINY_BYTES
    fake_hub.repos["acme/single"] = {
        "config.json": json.dumps(TINY_CONFIG).encode(),
        "model.safetensors": data,
    }
    f = resolve_model(ModelSpec(name="s", model="acme/single"))
    assert f.source == "hub"
    assert f.checkpoint_bytes == TINY_BYTES  # from the safetensors header via get_safetensors_metadata
    assert _weights_downloaded(fake_hub) == []
    ranged = [p for m, p, h in fake_hub.requests if m == "GET" and (h.get("Range") or h.get("range"))]
    assert ranged and all(p.endswith("model.safetensors") for p in ranged)


def test_hub_then_cache_on_the_second_run(fake_hub):
    fake_hub.repos["acme/single"] = {"config.json": json.dumps(TINY_CONFIG).encode()}
    assert resolve_model(ModelSpec(name="s", model="acme/single")).source == "hub"
    resolve.clear_cache()
    n = len(fake_hub.requests)
    f = resolve_model(ModelSpec(name="s", model="acme/single"))
    assert f.source == "hf-cache"  # config.json landed in HF_HUB_CACHE
    assert len(fake_hub.requests) == n


def test_hub_unknown_repo_is_a_spec_error(fake_hub):
    with pytest.raises(SpecError) as ei:
        resolve_model(ModelSpec(name="ghost", model="acme/ghost"))
    assert ei.value.field == "models[ghost].model"
    assert "unknown model 'acme/ghost'" in ei.value.problem
    assert "no such repository" in ei.value.problem


def test_hub_unreachable_is_a_spec_error(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(SpecError) as ei:
        resolve_model(ModelSpec(name="x", model="acme/elsewhere"))
    assert "could not be reached" in ei.value.problem


def test_hub_gated_repo_says_to_accept_the_licence(fake_hub):
    fake_hub.repos["meta-llama/Secret-1B"] = {"__gated__": b"", "config.json": b"{}"}
    with pytest.raises(SpecError) as ei:
        resolve_model(ModelSpec(name="g", model="meta-llama/Secret-1B"))
    assert ei.value.field == "models[g].model"
    assert "gated" in ei.value.problem and "HF_TOKEN" in ei.value.fix


@pytest.mark.timeout(60)  # a hang guard; the resolve itself must end near its total deadline
def test_hub_stalled_download_ends_at_the_total_deadline(fake_hub, monkeypatch):
    """huggingface_hub's own timeouts are per read (10 s for a download, and it retries): a server that
    drips config.json one byte per 0.1 s would hold `plan` for ~10 s x retries. Under residency's
    budget the whole resolve ends at HUB_TOTAL_S with one line."""
    from huggingface_hub.utils import _http as hf_http

    before = hf_http._GLOBAL_CLIENT_FACTORY
    monkeypatch.setattr(resolve, "HUB_TOTAL_S", 1.5)
    fake_hub.repos["acme/stalled"] = {"config.json": json.dumps(TINY_CONFIG).encode() * 20, "__drip__": b""}
    t0 = time.monotonic()
    with pytest.raises(SpecError) as ei:
        resolve_model(ModelSpec(name="st", model="acme/stalled"))
    took = time.monotonic() - t0
    assert ei.value.field == "models[st].model"
    assert "could not be reached" in ei.value.problem and "total deadline of 1.5s" in ei.value.problem
    assert took < 8, took  # 1.5 s budget; without it, one 10 s read timeout alone
    assert hf_http._GLOBAL_CLIENT_FACTORY is before  # huggingface_hub's client factory restored
    gets = [p for m, p, _ in fake_hub.requests if m == "GET" and p.endswith("config.json")]
    assert len(gets) == 1  # the deadline is final: huggingface_hub did not retry it


def test_hub_requests_go_through_the_deadline_transport(fake_hub, monkeypatch):
    from residency import deadline

    seen = []
    real = deadline.deadline_transport

    def spy(mod, budget=None, **kw):
        seen.append((mod.__name__, budget is not None))
        return real(mod, budget, **kw)

    monkeypatch.setattr(deadline, "deadline_transport", spy)
    fake_hub.repos["acme/ok"] = {"config.json": json.dumps(TINY_CONFIG).encode()}
    assert resolve_model(ModelSpec(name="ok", model="acme/ok")).source == "hub"
    import huggingface_hub.utils._http as hf_http

    flavour = "httpx2" if hasattr(hf_http, "httpx2") else "httpx"
    assert ("httpx", True) in seen  # the probe
    assert (flavour, True) in seen  # huggingface_hub's shared client


def test_hub_requests_honour_the_environment_proxy(fake_hub, monkeypatch):
    """A client given its own transport stops reading HTTP(S)_PROXY itself: residency passes the proxy on.
    The fake hub doubles as the proxy; the endpoint's name does not resolve, so only the proxy reaches it."""
    port = int(os.environ["HF_ENDPOINT"].rsplit(":", 1)[1])
    for k in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    fake_hub.repos["acme/proxied"] = {"config.json": json.dumps(TINY_CONFIG).encode()}
    f = resolve_model(ModelSpec(name="p", model="acme/proxied"))
    assert f.source == "hub" and f.num_hidden_layers == TINY_CONFIG["num_hidden_layers"]
    paths = [p for _, p, _ in fake_hub.requests]
    assert "http://hub.invalid/" in paths  # the probe, through the proxy
    assert any(p.startswith("http://hub.invalid/acme/proxied/resolve/") for p in paths)
    monkeypatch.setenv("NO_PROXY", "hub.invalid")  # bypassed: straight to a name that does not resolve
    resolve.clear_cache()
    with pytest.raises(SpecError) as ei:
        resolve_model(ModelSpec(name="p", model="acme/proxied2"))
    assert "could not be reached" in ei.value.problem
