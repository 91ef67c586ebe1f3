"""Start and stop the real test stack (vLLM CPU build + LiteLLM proxy + toy models).

Plain module (no pytest needed), so tests, benches and scripts can share it:

    from tests.e2e.stackkit import require_stack, start_vllm, start_litellm

    require_stack()
    srv = start_vllm("toy-hermes", "toy-hermes", ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"])
    proxy = start_litellm([{"model_name": "toy-hermes",
                            "litellm_params": {"model": "hosted_vllm/toy-hermes", "api_base": srv.base_url}}])
    ...
    proxy.stop(); srv.stop()

The stack is installed by ``scripts/install-test-stack`` under ``$RESIDENCY_STACK_DIR``
(default ``~/.cache/residency-stack``). Servers listen on 127.0.0.1 only, each in its own
process group; ``stop()`` signals that group by PID (never by process name). Logs go to
``$RESIDENCY_STACK_LOGS`` (default: a fresh temp dir per process).
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

MODELS = ("toy-hermes", "toy-xml", "toy-chat")

#: vLLM flags that suit the toy models on a 2-core CPU machine (the toy_stack fixture uses them).
CPU_VLLM_ARGS = [
    "--max-model-len", "4096", "--max-num-seqs", "4", "--dtype", "bfloat16",
    "--kv-cache-memory-bytes", str(128 << 20),  # 128 MiB: ~170k tokens of toy KV cache
]
#: The tool the toy models were trained to call (scripts/build_toy_models.py TOOLS["get_weather"], same text:
#: a greedy toy answers the prompt it learned).
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"],
        },
    },
}


def cpu_total_gib() -> float:
    """This machine's RAM in GiB: the device total of a spec for vLLM's CPU build."""
    import psutil

    return round(psutil.virtual_memory().total / (1 << 30), 2)


def cpu_device() -> dict[str, Any]:
    """A spec's `device:` for the CPU backend: this machine's RAM, which vLLM's CPU build treats as unified."""
    return {"name": "cpu", "total_gib": cpu_total_gib(), "unified": True}


TOOL_ARGS_HERMES = ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]

#: Environment for every vLLM server started here (callers can override any of it).
VLLM_ENV = {
    # GiB of KV cache per server (whole GiB, allocated up front). Overrides --kv-cache-memory-bytes,
    # so start_vllm drops it when that flag is given (CPU_VLLM_ARGS does: 128 MiB).
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # do not pin threads: several servers share 2 cores
    # vLLM's own CPU CI switch: no warm-up run (vllm/v1/worker/cpu_worker.py:191@0.32.0), and dynamo
    # with the eager backend instead of inductor when compiling (TORCH_COMPILE_DISABLE below: not at all)
    "VLLM_CPU_CI_ENV": "1",
    # EngineCore runs the model itself instead of spawning a worker process (the GPU topology at
    # tensor_parallel_size 1): one torch+vLLM import less per start, ~10 s on this box. The engine
    # core keeps its own process (AsyncLLM always spawns it), so a server is still a 2-process tree.
    # vllm/platforms/cpu.py:333-341@0.32.0 forces the "mp" executor only while this is 1.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    # no torch.compile at all (compilation mode NONE, vllm/config/vllm.py:1710@0.32.0): no dynamo trace
    # on a server's first request, and plain eager decodes the toy ~3x faster than dynamo's eager
    # backend (200 tokens: 1.1 s against 3.4-4.2 s). With the line above: start 43 s -> 27 s.
    "TORCH_COMPILE_DISABLE": "1",
    "OMP_NUM_THREADS": "1",
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

#: VLLM_ENV for engines that `residency up` starts from a spec's `env:`: the spec sets the KV bytes itself.
SPEC_VLLM_ENV = {k: v for k, v in VLLM_ENV.items() if k != "VLLM_CPU_KVCACHE_SPACE"}

#: Environment for every LiteLLM proxy started here: offline, no telemetry.
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
    "DISABLE_SCHEMA_UPDATE": "True",
    "NO_DOCS": "True",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
}

#: servers started side by side by start_parallel (the session toy stack): a start is mostly one
#: single-threaded import after another, so two fill this box's 2 cores
STACK_PARALLEL = int(os.environ.get("RESIDENCY_STACK_PARALLEL", "2"))

VLLM_START_TIMEOUT = float(os.environ.get("RESIDENCY_VLLM_START_TIMEOUT", "300"))
LITELLM_START_TIMEOUT = float(os.environ.get("RESIDENCY_LITELLM_START_TIMEOUT", "120"))


class StackNotInstalled(RuntimeError):
    """The test stack is missing: run scripts/install-test-stack."""


class ServerStartError(RuntimeError):
    """A server exited or did not become ready; the message carries its log tail."""


# ----------------------------------------------------------------------------- paths
def stack_dir() -> Path:
    return Path(os.environ.get("RESIDENCY_STACK_DIR") or Path.home() / ".cache" / "residency-stack")


def vllm_bin() -> Path:
    return stack_dir() / "vllm" / "bin" / "vllm"


def litellm_bin() -> Path:
    return stack_dir() / "litellm" / "bin" / "litellm"


def model_path(model: str) -> Path:
    """Folder of a toy model ("toy-hermes", ...); any other value is returned as a Path."""
    if model in MODELS:
        return stack_dir() / "models" / model
    return Path(model)


def require_stack(models: tuple[str, ...] | list[str] = MODELS) -> Path:
    """Raise StackNotInstalled (not a skip) unless the venvs and the toy models are there."""
    missing = []
    if not os.access(vllm_bin(), os.X_OK):
        missing.append(str(vllm_bin()))
    if not os.access(litellm_bin(), os.X_OK):
        missing.append(str(litellm_bin()))
    for m in models:
        p = model_path(m)
        if not (p / "model.safetensors").exists() or not (p / "config.json").exists():
            missing.append(str(p))
    if missing:
        raise StackNotInstalled(
            "residency test stack is not installed (missing: " + ", ".join(missing) + "). "
            "Run scripts/install-test-stack (RESIDENCY_STACK_DIR=" + str(stack_dir()) + ")."
        )
    return stack_dir()


def log_dir() -> Path:
    with _log_dir_lock:  # servers start from several threads (start_parallel): one folder for all
        return _log_dir()


def _log_dir() -> Path:
    global _LOG_DIR
    if _LOG_DIR is None:
        env = os.environ.get("RESIDENCY_STACK_LOGS")
        if env:
            _LOG_DIR = Path(env)
            _LOG_DIR.mkdir(parents=True, exist_ok=True)
        else:
            _LOG_DIR = Path(tempfile.mkdtemp(prefix="residency-stack-logs-"))
    return _LOG_DIR


_LOG_DIR: Path | None = None
_log_dir_lock = threading.Lock()


# ----------------------------------------------------------------------------- ports
_given_ports: set[int] = set()
_port_lock = threading.Lock()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never handed out twice by this process)."""
    with _port_lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _given_ports:
                _given_ports.add(port)
                return port
    raise RuntimeError("no free loopback port found")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ----------------------------------------------------------------------------- processes
def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


_live: list[_Proc] = []  # everything started by this process, for atexit cleanup


@dataclass
class _Proc:
    name: str
    port: int
    log_path: Path
    popen: subprocess.Popen = field(repr=False)
    started_s: float = 0.0  # seconds from spawn to ready

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group (by PID), then SIGKILL what is left."""
        pgid = self.popen.pid  # start_new_session=True: the group id is the leader's pid
        if self.popen.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # children (vLLM's engine core / workers) may outlive the leader: kill the group
        _signal_group(pgid, signal.SIGKILL)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self in _live:
            _live.remove(self)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def _stop_all() -> None:
    for p in list(_live):
        try:
            p.stop(timeout=5)
        except Exception:
            pass


def _spawn(name: str, cmd: list[str], env: dict[str, str], port: int) -> tuple[subprocess.Popen, Path]:
    log_path = log_dir() / f"{name}-{port}.log"
    fh = open(log_path, "ab")
    fh.write(("$ " + " ".join(cmd) + "\n").encode())
    fh.flush()
    popen = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        cwd=str(log_dir()),
    )
    fh.close()
    return popen, log_path


def _wait_ready(proc: _Proc, path: str, timeout: float, headers: dict | None = None) -> None:
    t0 = time.monotonic()
    deadline = t0 + timeout
    last = ""
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if not proc.alive():
                proc.stop(timeout=5)  # reap what is left of its process group
                raise ServerStartError(
                    f"{proc.name} (pid {proc.pid}) exited with code {proc.popen.returncode} before it was ready; "
                    f"log {proc.log_path}:\n{proc.log_tail()}"
                )
            try:
                r = client.get(proc.url + path, headers=headers)
                if r.status_code == 200:
                    proc.started_s = time.monotonic() - t0
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                last = type(e).__name__
            time.sleep(0.5)
    tail = proc.log_tail()
    proc.stop()
    raise ServerStartError(
        f"{proc.name} (pid {proc.pid}) not ready on {proc.url}{path} after {timeout:.0f}s (last: {last}); "
        f"log {proc.log_path}:\n{tail}"
    )


# ----------------------------------------------------------------------------- vLLM
@dataclass
class VllmServer(_Proc):
    served_name: str = ""
    model: str = ""  # the path given to `vllm serve` (what /v1/models reports as "root")
    model_name: str = ""  # what the caller passed ("toy-hermes", or a path)
    args: list[str] = field(default_factory=list)


def start_vllm(
    model: str,
    served_name: str,
    args: list[str],
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> VllmServer:
    """Start ``<stack>/vllm/bin/vllm serve MODEL --served-model-name NAME --host 127.0.0.1 --port P *args``.

    ``model`` is a toy model name ("toy-hermes", "toy-xml", "toy-chat") or a path. Blocks until
    GET /health answers 200 (default timeout 300 s, $RESIDENCY_VLLM_START_TIMEOUT), raising
    ServerStartError with the log tail when the process dies or times out.
    """
    require_stack(models=[model] if model in MODELS else [])
    port = port or free_port()
    if _port_in_use(port):
        raise ServerStartError(f"port {port} on 127.0.0.1 is already in use")
    full_env = {**os.environ, **VLLM_ENV, **(env or {})}
    if any(a.startswith("--kv-cache-memory-bytes") for a in args) and "VLLM_CPU_KVCACHE_SPACE" not in (env or {}):
        # on CPU the (legacy) env var silently overrides the flag
        full_env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    cmd = [
        str(vllm_bin()), "serve", str(model_path(model)),
        "--served-model-name", served_name,
        "--host", "127.0.0.1", "--port", str(port),
        *args,
    ]
    popen, log_path = _spawn(f"vllm-{served_name}", cmd, full_env, port)
    srv = VllmServer(
        name=f"vllm[{served_name}]", port=port, log_path=log_path, popen=popen,
        served_name=served_name, model=str(model_path(model)), model_name=model, args=list(args),
    )
    _live.append(srv)
    _wait_ready(srv, "/health", timeout or VLLM_START_TIMEOUT)
    return srv


# ----------------------------------------------------------------------------- LiteLLM
@dataclass
class LitellmProxy(_Proc):
    master_key: str = ""
    config_path: Path | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.master_key}"}


def litellm_model_entry(served_name: str, base_url: str, **params: Any) -> dict:
    """A model_list entry routing ``served_name`` to a vLLM server (hosted_vllm provider)."""
    return {
        "model_name": served_name,
        "litellm_params": {"model": f"hosted_vllm/{served_name}", "api_base": base_url, "api_key": "none", **params},
    }


def start_litellm(
    model_list: list[dict] | None = None,
    config_path: Path | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    master_key: str | None = None,
    timeout: float | None = None,
) -> LitellmProxy:
    """Start ``<stack>/litellm/bin/litellm --config CFG --host 127.0.0.1 --port P``.

    Pass either ``model_list`` (a config is written with a generated master key) or an existing
    ``config_path`` (its ``general_settings.master_key`` is used if set, else $LITELLM_MASTER_KEY
    is set to a generated key). Waits until /health/liveliness answers 200 and the models are
    listed on /v1/models.
    """
    require_stack(models=[])
    if (model_list is None) == (config_path is None):
        raise ValueError("pass exactly one of model_list or config_path")
    port = port or free_port()
    key = master_key or "sk-residency-" + secrets.token_hex(12)
    if model_list is not None:
        cfg = {
            "model_list": model_list,
            "general_settings": {"master_key": key},
            "litellm_settings": {"telemetry": False, "drop_params": False, "num_retries": 0},
        }
        config_path = log_dir() / f"litellm-{port}.yaml"
        config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    else:
        config_path = Path(config_path)
        try:
            cfg = yaml.safe_load(config_path.read_text()) or {}
            key = (cfg.get("general_settings") or {}).get("master_key") or key
        except (OSError, yaml.YAMLError):
            pass
        if isinstance(key, str) and key.startswith("os.environ/"):
            key = os.environ.get(key.split("/", 1)[1], "") or (env or {}).get(key.split("/", 1)[1], "")
    full_env = {**os.environ, **LITELLM_ENV, "LITELLM_MASTER_KEY": key, **(env or {})}
    cmd = [str(litellm_bin()), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
    popen, log_path = _spawn("litellm", cmd, full_env, port)
    proxy = LitellmProxy(
        name="litellm", port=port, log_path=log_path, popen=popen, master_key=key, config_path=config_path
    )
    _live.append(proxy)
    _wait_ready(proxy, "/health/liveliness", timeout or LITELLM_START_TIMEOUT)
    # readiness: the router has loaded the model list
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            try:
                r = client.get(proxy.base_url + "/models", headers=proxy.headers)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    return proxy


# ----------------------------------------------------------------------------- several at once
T = TypeVar("T")


def start_parallel(starts: dict[str, Callable[[], T]], parallel: int | None = None) -> dict[str, T]:
    """Run the start callables (each blocks until its server is ready) `parallel` at a time.

    Returns {name: result} in the given order. If any start fails, the servers that did start are
    stopped and the first failure is raised once every start has finished."""
    with ThreadPoolExecutor(max_workers=max(1, parallel or STACK_PARALLEL)) as ex:
        futs = {name: ex.submit(fn) for name, fn in starts.items()}
    errors = [f.exception() for f in futs.values() if f.exception() is not None]
    if errors:
        for f in futs.values():
            if f.exception() is None and isinstance(f.result(), _Proc):
                f.result().stop()
        raise errors[0]
    return {name: f.result() for name, f in futs.items()}


# ----------------------------------------------------------------------------- the toy stack
@dataclass
class ToyStack:
    servers: dict[str, VllmServer]
    proxy: LitellmProxy
    startup_s: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        self.proxy.stop()
        for s in self.servers.values():
            s.stop()

    def all_procs(self) -> list[_Proc]:
        return [*self.servers.values(), self.proxy]


#: name -> (model, extra vLLM args); served name == name.
TOY_STACK_SERVERS: dict[str, tuple[str, list[str]]] = {
    "hermes": ("toy-hermes", TOOL_ARGS_HERMES),
    "xml": ("toy-xml", TOOL_ARGS_HERMES),
    "chat": ("toy-chat", TOOL_ARGS_HERMES),
    "noauto": ("toy-hermes", []),
}


def start_toy_stack(names: tuple[str, ...] | None = None, parallel: int | None = None) -> ToyStack:
    """Start the toy vLLM servers and a LiteLLM proxy in front of them, `parallel` at a time (the
    proxy does not need its backends up to start: it is given their ports)."""
    require_stack()
    names = names or tuple(TOY_STACK_SERVERS)
    ports = {name: free_port() for name in names}
    starts: dict[str, Callable[[], _Proc]] = {}
    for name in names:
        model, extra = TOY_STACK_SERVERS[name]
        starts[name] = lambda m=model, n=name, a=[*CPU_VLLM_ARGS, *extra]: start_vllm(m, n, a, port=ports[n])
    entries = [litellm_model_entry(n, f"http://127.0.0.1:{ports[n]}/v1") for n in names]
    starts["litellm"] = lambda: start_litellm(entries)
    procs = start_parallel(starts, parallel)
    proxy = procs.pop("litellm")
    assert isinstance(proxy, LitellmProxy)
    servers = {n: p for n, p in procs.items() if isinstance(p, VllmServer)}
    startup = {n: p.started_s for n, p in [*servers.items(), ("litellm", proxy)]}
    return ToyStack(servers=servers, proxy=proxy, startup_s=startup)
