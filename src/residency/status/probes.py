"""What status asks the machine: processes (ps), listening sockets (ss), docker and HTTP health."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from residency.status.targets import LOCAL

if TYPE_CHECKING:
    import httpx

    from residency.spec import StackSpec


@dataclass
class ProxyStatus:
    url: str
    state: Literal["ready", "alive", "down"]
    liveliness: int | None = None  # HTTP status of /health/liveliness (None: no answer)
    readiness: int | None = None  # HTTP status of /health/readiness
    detail: str = ""


def listening_pids(ports: set[int]) -> dict[int, int]:
    """port -> pid of the local process listening on it (spec-only operation: no state file)."""
    import psutil

    out: dict[int, int] = {}
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return out
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports and c.pid:
            out.setdefault(c.laddr.port, c.pid)
    return out


def container_pid(
    container: str, project: str | None = None, run: Callable[..., Any] | None = None
) -> int | None:
    """Host pid of a container's main process (docker runtime), None when docker cannot say.

    `container` is a compose service (with `project`) or a container name/id. NVML reports host
    pids, so this pid's process tree is what holds the model's GPU memory."""
    import shutil
    import subprocess

    if run is None:
        if shutil.which("docker") is None:
            return None
        run = subprocess.run
    try:
        ref = container
        if project:  # by compose's labels, which both compose implementations set
            from residency.runtime.docker import find_cmd

            r = run(find_cmd(project, container), capture_output=True, text=True, timeout=5)
            ids = (r.stdout or "").split() if r.returncode == 0 else []
            ref = ids[0] if ids else container
        r = run(["docker", "inspect", "-f", "{{.State.Pid}}", ref], capture_output=True, text=True, timeout=5)
        pid = int((r.stdout or "0").strip() or 0) if r.returncode == 0 else 0
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return pid or None  # 0: the container is not running


def probe_health(client: httpx.Client, url: str, timeout: float = 2.0) -> tuple[int | None, str]:
    """(HTTP status, detail). Status None: no answer (refused, timeout)."""
    import httpx

    try:
        r = client.get(url, timeout=timeout)
        return r.status_code, f"/health {r.status_code}"
    except httpx.ConnectError:
        return None, "connection refused"
    except httpx.TimeoutException:
        return None, "no answer (timeout)"
    except httpx.HTTPError as e:
        return None, f"{type(e).__name__}"


def probe_proxy(
    client: httpx.Client, spec: StackSpec, timeout: float = 2.0, port: int | None = None
) -> ProxyStatus:
    """LiteLLM's unauthenticated health endpoints: /health/liveliness and /health/readiness.
    `port`: where `up` started it (state file), else the spec's proxy port."""
    host = spec.proxy.host if spec.proxy.host not in ("0.0.0.0", "::", "") else LOCAL
    url = f"http://{host}:{port or spec.proxy.port}"
    live, ld = probe_health(client, url + "/health/liveliness", timeout)
    if live is None:
        return ProxyStatus(url=url, state="down", detail=ld)
    ready, rd = probe_health(client, url + "/health/readiness", timeout)
    state: Literal["ready", "alive", "down"] = (
        "ready" if ready == 200 else ("alive" if live == 200 else "down")
    )
    return ProxyStatus(
        url=url,
        state=state,
        liveliness=live,
        readiness=ready,
        detail=f"liveliness {live}, readiness {ready or rd}",
    )
