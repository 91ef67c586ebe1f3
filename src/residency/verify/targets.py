"""Where verify sends requests: the proxy, each model's backend, and the key.

Two sources: a stack spec (plus `up`'s state file when present) or explicit URLs. The key is kept
out of every repr; report code passes all text through a Redactor built from `Targets.secrets`.
"""

from __future__ import annotations

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


def targets_from_spec(
    spec_path: str | Path,
    key: str | None = None,
    models: list[str] | None = None,
    direct: list[str] | None = None,
) -> Targets:
    from residency.spec import load_spec

    path = Path(spec_path)
    spec = load_spec(path)
    from residency.runtime.state import read_state, state_dir

    state = read_state(path)  # where `up` started each model (the ports it chose), when it did
    started = {e.model_name: e for e in (state.models() if state is not None else []) if e.replica == 0}
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
        e = started.get(m.name)
        host = hosts.get(m.host or "", "127.0.0.1")
        port = e.port if e is not None and e.port else m.port
        url = d.get(m.name) or (f"http://{_local(host)}:{port}/v1" if port else None)
        be = None
        reason = None
        if url:
            be = Backend(
                url,
                served_name=m.name,
                tool_call_parser=m.tool_call_parser,
                reasoning_parser=m.reasoning_parser,
                auto_tool_choice=m.auto_tool_choice,
                # what `up` really started with, else the spec
                max_model_len=(e.flag_int("--max-model-len") if e else None) or m.max_model_len,
                max_num_seqs=(e.flag_int("--max-num-seqs") if e else None) or m.max_num_seqs,
                model_id=m.model,
                known_config=True,
            )
        else:
            reason = f"backend port unknown: set models[{m.name}].port, run `residency up`, or pass --direct"
        mts.append(ModelTarget(m.name, be, reason))
    pe = state.proxy() if state is not None else None
    proxy_url = (
        f"http://{_local(spec.proxy.host)}:{pe.port if pe is not None and pe.port else spec.proxy.port}/v1"
    )
    from residency.runtime.keys import key_file_hint

    sdir = state_dir(path)
    env_files = [f for f in (key_file_hint(sdir), sdir / ".env", path.parent / ".env") if f is not None]
    return Targets(
        models=mts,
        proxy_url=proxy_url,
        key=resolve_key(key, spec.proxy.master_key_env, env_files),
        source=str(path),
        agent_kinds=list(spec.agents.clients) if spec.agents else [],
        agent_max_tokens=spec.agents.max_tokens if spec.agents else None,
    )
