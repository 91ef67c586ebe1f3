"""Where verify sends requests: the proxy, each model's backend, and the key.

Two sources: a stack spec (plus `up`'s state file when present) or explicit URLs. The key is kept
out of every repr; report code passes all text through a Redactor built from `Targets.secrets`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from residency.errors import SpecError


@dataclass
class Backend:
    """One vLLM server, addressed directly."""

    base_url: str  # .../v1
    served_name: str | None = None  # id in its /v1/models; discovered when None
    tool_call_parser: str | None = None  # as configured (None: unknown or none)
    reasoning_parser: str | None = None
    auto_tool_choice: bool | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    model_id: str | None = None  # HF id, for family hints
    known_config: bool = False  # parsers above come from a spec (None means "not set")

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")


@dataclass
class ModelTarget:
    name: str  # the name agents send (proxy model_name; the served name for a bare server)
    backend: Backend | None = None
    direct_skip_reason: str | None = None


@dataclass
class Targets:
    models: list[ModelTarget]
    proxy_url: str | None = None  # .../v1 of LiteLLM
    proxy_skip_reason: str | None = None
    key: str | None = field(default=None, repr=False)
    source: str = ""
    concurrency: int | None = None  # burst size override for C1
    url_mode: bool = False  # --url: the URL may be a proxy or a bare vLLM server (see runner.discover)
    agent_kinds: list[str] = field(default_factory=list)  # the spec's agents.clients (A1-A3)
    agent_max_tokens: int | None = None  # the spec's agents.max_tokens

    @property
    def proxy_root(self) -> str | None:
        return self.proxy_url.removesuffix("/v1") if self.proxy_url else None

    @property
    def secrets(self) -> list[str | None]:
        return [self.key]


def normalize_url(url: str, what: str = "--url") -> str:
    """'http://h:8000' / 'http://h:8000/' / 'http://h:8000/v1/' -> 'http://h:8000/v1'."""
    u = url.strip().rstrip("/")
    if not u.startswith(("http://", "https://")):
        raise SpecError(what, f"{url!r} is not an http(s) URL", "give e.g. http://127.0.0.1:8000/v1")
    if not u.endswith("/v1"):
        u += "/v1"
    return u


def parse_direct(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise SpecError(
                "--direct", f"{item!r} is not NAME=URL", "e.g. --direct qwen=http://127.0.0.1:8001/v1"
            )
        out[name] = normalize_url(url, "--direct")
    return out


def _read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, _, v = line.partition("=")
                out[k.strip().removeprefix("export ").strip()] = v.strip().strip("'\"")
    except OSError:
        pass
    return out


def resolve_key(
    explicit: str | None, env_name: str = "LITELLM_MASTER_KEY", env_files: list[Path] = ()
) -> str | None:
    """--key, else the environment variable, else the rendered .env file(s)."""
    if explicit:
        return explicit
    if os.environ.get(env_name):
        return os.environ[env_name]
    for f in env_files:
        val = _read_env_file(f).get(env_name)
        if val:
            return val
    return None


def targets_from_url(
    url: str, key: str | None = None, models: list[str] | None = None, direct: list[str] | None = None
) -> Targets:
    """`--url` mode. Whether URL is a LiteLLM proxy or a bare vLLM server is decided by `discover`."""
    base = normalize_url(url)
    d = parse_direct(direct or [])
    names = list(models or [])
    for n in d:
        if n not in names and models:
            raise SpecError("--direct", f"{n!r} is not among --model", "name a model given with --model")
    mts = [ModelTarget(n, Backend(d[n]) if n in d else None) for n in names]
    for n, u in d.items():
        if n not in names:
            mts.append(ModelTarget(n, Backend(u)))
    return Targets(models=mts, proxy_url=base, key=resolve_key(key), source=base, url_mode=True)


def _local(host: str | None) -> str:
    return "127.0.0.1" if host in (None, "", "0.0.0.0", "::") else host


def _state_path(spec_path: Path) -> Path:
    return spec_path.parent / ".residency" / spec_path.stem / "state.json"


def _load_state(spec_path: Path) -> dict:
    """`up`'s state: JSON; tolerated shapes documented in the report. Missing/broken → {}."""
    p = _state_path(spec_path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _state_models(state: dict) -> dict[str, dict]:
    ms = state.get("models") or state.get("services") or {}
    if isinstance(ms, list):
        return {m.get("name"): m for m in ms if isinstance(m, dict) and m.get("name")}
    return {k: v for k, v in ms.items() if isinstance(v, dict)} if isinstance(ms, dict) else {}


def _url_from(entry: dict, host: str = "127.0.0.1") -> str | None:
    for k in ("base_url", "url", "api_base"):
        if isinstance(entry.get(k), str) and entry[k].startswith("http"):
            return normalize_url(entry[k])
    port = entry.get("port")
    if isinstance(port, int):
        return f"http://{_local(entry.get('host', host))}:{port}/v1"
    return None


def targets_from_spec(
    spec_path: str | Path,
    key: str | None = None,
    models: list[str] | None = None,
    direct: list[str] | None = None,
) -> Targets:
    from residency.spec import load_spec

    path = Path(spec_path)
    spec = load_spec(path)
    state = _load_state(path)
    smodels = _state_models(state)
    d = parse_direct(direct or [])
    wanted = set(models or [])
    unknown = wanted - {m.name for m in spec.models}
    if unknown:
        raise SpecError("--model", f"not in the spec: {', '.join(sorted(unknown))}", "use a models[].name")
    hosts = {h.name: h.address for h in spec.hosts or []}
    mts: list[ModelTarget] = []
    for m in spec.models:
        if wanted and m.name not in wanted:
            continue
        st = smodels.get(m.name, {})
        host = hosts.get(m.host or "", "127.0.0.1")
        url = d.get(m.name) or _url_from(st, host)
        if url is None and m.port:
            url = f"http://{_local(host)}:{m.port}/v1"
        be = None
        reason = None
        if url:
            be = Backend(
                url,
                served_name=st.get("served_name") or st.get("served_model_name") or m.name,
                tool_call_parser=m.tool_call_parser,
                reasoning_parser=m.reasoning_parser,
                auto_tool_choice=m.auto_tool_choice,
                max_model_len=st.get("max_model_len") or m.max_model_len,
                max_num_seqs=st.get("max_num_seqs") or m.max_num_seqs,
                model_id=m.model,
                known_config=True,
            )
        else:
            reason = f"backend port unknown: set models[{m.name}].port, run `residency up`, or pass --direct"
        mts.append(ModelTarget(m.name, be, reason))
    pstate = state.get("proxy") if isinstance(state.get("proxy"), dict) else {}
    proxy_url = _url_from(pstate) if pstate else None
    proxy_url = proxy_url or f"http://{_local(spec.proxy.host)}:{spec.proxy.port}/v1"
    from residency.runtime.keys import key_file_hint

    sdir = path.resolve().parent / ".residency" / path.stem
    env_files = [f for f in (key_file_hint(sdir), sdir / ".env", path.parent / ".env") if f is not None]
    return Targets(
        models=mts,
        proxy_url=proxy_url,
        key=resolve_key(key, spec.proxy.master_key_env, env_files),
        source=str(path),
        agent_kinds=list(spec.agents.clients) if spec.agents else [],
        agent_max_tokens=spec.agents.max_tokens if spec.agents else None,
    )
