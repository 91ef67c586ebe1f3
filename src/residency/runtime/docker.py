"""`--runtime docker`: the rendered compose.yaml, started one service at a time.

Compose creates and removes containers (`up -d --no-deps SERVICE`, `down`); everything else reads
the containers themselves through `docker` (ps by label, inspect, logs), which answers the same
whichever compose started them: the v2 plugin (`docker compose`) or Debian's `docker-compose` 1.29,
whose `ps` has no JSON output. Command lines come from pure functions (tested without an engine).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from residency.errors import ResidencyError
from residency.render.common import HEALTH_PATH, Member, service_name
from residency.render.compose import PROXY_SERVICE, host_network, vllm_args, vllm_port
from residency.runtime.state import ProcEntry, StackState, StateStore
from residency.spec import StackSpec

Runner = Callable[..., subprocess.CompletedProcess]

PROJECT_LABEL = "com.docker.compose.project"  # set by both compose implementations
SERVICE_LABEL = "com.docker.compose.service"

# `up` may pull an image (tens of GiB for vLLM): a long deadline; every other call is quick.
UP_TIMEOUT_S = 3600.0
CALL_TIMEOUT_S = 120.0
INSPECT_TTL_S = 0.5  # one poll asks alive, healthy and memory: one `docker inspect` answers all three


def project_name(spec_path: Path) -> str:
    """Compose project names: lowercase letters, digits, dashes and underscores."""
    stem = re.sub(r"[^a-z0-9_-]+", "-", Path(spec_path).stem.lower()).strip("-") or "stack"
    return f"residency-{stem}"


def _run(cmd: list[str], timeout: float = CALL_TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ResidencyError(
            f"`{cmd[0]}` is not on PATH: install Docker and compose (the v2 plugin, or docker-compose), "
            "or use --runtime process"
        ) from None
    except subprocess.TimeoutExpired:
        raise ResidencyError(f"`{' '.join(cmd[:4])} ...` did not answer within {timeout:.0f} s") from None


def compose_cli(run: Runner = _run) -> list[str]:
    """`docker compose` when the v2 plugin answers, else `docker-compose` (v1, e.g. Debian's 1.29)."""
    try:
        if run(["docker", "compose", "version"]).returncode == 0:
            return ["docker", "compose"]
    except ResidencyError:
        pass
    return ["docker-compose"]


# ---------------------------------------------------------------------------- command lines
def compose_base(cli: list[str], compose_file: Path, project: str) -> list[str]:
    return [*cli, "-f", str(compose_file), "-p", project]


def up_service_cmd(cli: list[str], compose_file: Path, project: str, service: str) -> list[str]:
    # --no-deps: residency itself waits for the previous service (health, init line, memory)
    return [*compose_base(cli, compose_file, project), "up", "-d", "--no-deps", service]


def down_cmd(cli: list[str], compose_file: Path, project: str, grace_s: float = 30) -> list[str]:
    # --remove-orphans: containers of services no longer in the file; images are kept
    return [
        *compose_base(cli, compose_file, project),
        "down",
        "--remove-orphans",
        "--timeout",
        str(int(grace_s)),
    ]


def find_cmd(project: str, service: str | None = None) -> list[str]:
    cmd = ["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={project}"]
    if service is not None:
        cmd += ["--filter", f"label={SERVICE_LABEL}={service}"]
    return cmd


def inspect_cmd(ids: list[str]) -> list[str]:
    return ["docker", "inspect", "--type", "container", *ids]


def logs_cmd(container: str) -> list[str]:
    return ["docker", "logs", container]


def stop_cmds(container: str, grace_s: float) -> list[list[str]]:
    return [
        ["docker", "stop", "--time", str(int(grace_s)), container],
        ["docker", "rm", "--force", container],
    ]


# ---------------------------------------------------------------------------- reading containers
def container_view(info: dict[str, Any]) -> dict[str, Any]:
    """The few facts residency reads from one `docker inspect` record."""
    state = info.get("State") or {}
    labels = (info.get("Config") or {}).get("Labels") or {}
    return {
        "id": info.get("Id", ""),
        "name": str(info.get("Name", "")).lstrip("/"),
        "service": labels.get(SERVICE_LABEL),
        "status": state.get("Status"),  # created, running, restarting, exited, dead, ...
        "health": (state.get("Health") or {}).get("Status"),  # starting, healthy, unhealthy; None: no check
        "pid": state.get("Pid") or None,
        "exit_code": state.get("ExitCode"),
        "started_at": state.get("StartedAt"),
        "labels": labels,
    }


def find_containers(project: str, service: str | None = None, run: Runner = _run) -> list[dict[str, Any]]:
    """The project's containers (one service's, when given), as container_view records."""
    r = run(find_cmd(project, service))
    ids = (r.stdout or "").split() if r.returncode == 0 else []
    if not ids:
        return []
    r = run(inspect_cmd(ids))
    if r.returncode != 0:  # a container removed between ps and inspect
        return []
    return [container_view(x) for x in json.loads(r.stdout or "[]")]


def container_pid(project: str, service: str, run: Runner = _run) -> int | None:
    """Host pid of a running service's main process (NVML and psutil report host pids)."""
    rows = [c for c in find_containers(project, service, run) if c["status"] == "running"]
    return rows[0]["pid"] if rows else None


class DockerCompose:
    def __init__(self, compose_file: Path, project: str, runner: Runner | None = None) -> None:
        self.file = Path(compose_file)
        self.project = project
        self.run = runner or _run
        self._cli: list[str] | None = None
        self._seen: dict[str, tuple[float, dict[str, Any] | None]] = {}

    @property
    def cli(self) -> list[str]:
        if self._cli is None:
            self._cli = compose_cli(self.run)
        return self._cli

    def _check(self, cmd: list[str], timeout: float = CALL_TIMEOUT_S) -> str:
        r = self.run(cmd, timeout=timeout) if timeout != CALL_TIMEOUT_S else self.run(cmd)
        if r.returncode != 0:
            raise ResidencyError(f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()[-500:]}")
        return r.stdout

    def up(self, service: str) -> None:
        self._seen.pop(service, None)
        self._check(up_service_cmd(self.cli, self.file, self.project, service), timeout=UP_TIMEOUT_S)

    def container(self, service: str) -> dict[str, Any] | None:
        """The service's container (newest first), read at most every INSPECT_TTL_S."""
        now = time.monotonic()
        hit = self._seen.get(service)
        if hit is not None and now - hit[0] < INSPECT_TTL_S:
            return hit[1]
        rows = find_containers(self.project, service, self.run)
        rows.sort(key=lambda c: c["started_at"] or "", reverse=True)
        row = rows[0] if rows else None
        self._seen[service] = (now, row)
        return row

    def logs(self, service: str) -> str:
        c = self.container(service)
        if c is None:
            return ""
        r = self.run(logs_cmd(c["id"]))
        return (r.stdout or "") + (r.stderr or "")

    def stop(self, service: str, grace_s: float) -> None:
        """Stop and remove exactly this service's containers (found by their compose labels)."""
        for c in find_containers(self.project, service, self.run):
            for cmd in stop_cmds(c["id"], grace_s):
                self.run(cmd)
        self._seen.pop(service, None)
        if not find_containers(self.project, None, self.run):
            self.down(grace_s)  # the last one gone: drop the project's network (bridge mode) too

    def down(self, grace_s: float = 30) -> None:
        self._seen.clear()
        self._check(down_cmd(self.cli, self.file, self.project, grace_s))


class DockerBackend:
    runtime = "docker"

    def __init__(
        self, spec: StackSpec, spec_path: Path, plan, store: StateStore, *, master_key: str, runner=None
    ) -> None:
        self.spec = spec
        self.spec_path = spec_path
        self.plan = plan
        self.store = store
        self.master_key = master_key
        self.rendered = store.dir / "rendered"
        self.dc = DockerCompose(self.rendered / "compose.yaml", project_name(spec_path), runner)

    def render(self) -> None:
        """Write compose.yaml, litellm.yaml and .env (the stack's key) for compose to read."""
        from residency.render.stack import render_files
        from residency.render.writer import env_file, write_files

        files = render_files(self.spec, self.plan, self.rendered, spec_dir=self.spec_path.parent)
        files[".env"] = env_file(self.spec.proxy.master_key_env, self.master_key)
        files = {k: v for k, v in files.items() if not k.startswith("k8s/") and k != "agents.md"}
        write_files(self.rendered, files, force=True, echo=lambda *_: None)

    def expected_command(self, m: Member, entry: ProcEntry | None) -> list[str]:
        return vllm_args(self.spec, m, self.spec_path.parent)

    def _entry(self, name: str, service: str, kind: str, command: list[str], port: int | None) -> ProcEntry:
        c = self.dc.container(service)
        return ProcEntry(
            name=name,
            kind=kind,
            service=service,
            command=command,
            port=port,
            log_path=f"docker logs {c['name'] if c else service}",
        )  # type: ignore[arg-type]

    def _up(self, svc: str) -> None:
        try:
            self.dc.up(svc)
        except ResidencyError:
            # compose can leave a created-but-not-started container (a port taken, an entrypoint missing);
            # compose's own error is the one to show, even when this cleanup fails too
            with contextlib.suppress(ResidencyError):
                self.dc.stop(svc, 0)
            raise

    def start(self, m: Member, st: StackState) -> ProcEntry:
        st.compose_project = self.dc.project
        st.compose_file = str(self.dc.file)
        svc = service_name(m.key)
        self._up(svc)
        # host network: the engine answers on its own port, which `status` probes
        port = vllm_port(self.spec, m) if host_network(self.spec) else None
        return self._entry(m.key, svc, "vllm", self.expected_command(m, None), port)

    def alive(self, e: ProcEntry) -> bool:
        c = self.dc.container(e.service or "")
        return c is not None and c["status"] in ("created", "running", "restarting")

    def healthy(self, e: ProcEntry) -> bool:
        c = self.dc.container(e.service or "")
        if c is None or c["status"] != "running":
            return False
        if e.port and e.kind == "vllm" and host_network(self.spec):
            # on the host network /health answers directly, without the health check's interval lag
            from residency.runtime.process import http_ok

            return http_ok(f"http://127.0.0.1:{e.port}{HEALTH_PATH}")
        return c["health"] == "healthy"

    def log_text(self, e: ProcEntry) -> str:
        return self.dc.logs(e.service or "")

    def memory_bytes(self, e: ProcEntry) -> int | None:
        from residency.runtime.memory import tree_memory_bytes

        c = self.dc.container(e.service or "")
        pid = c["pid"] if c is not None and c["status"] == "running" else None
        return tree_memory_bytes(pid) if pid else None

    def stop(self, e: ProcEntry, grace_s: float) -> None:
        self.dc.stop(e.service or "", grace_s)

    def start_proxy(self, mems: list[Member], st: StackState) -> ProcEntry:
        st.compose_project = self.dc.project
        st.compose_file = str(self.dc.file)
        self._up(PROXY_SERVICE)
        return self._entry("litellm", PROXY_SERVICE, "proxy", [], self.spec.proxy.port)

    def proxy_ready(self, e: ProcEntry) -> bool:
        if not host_network(self.spec):
            return self.healthy(e)
        c = self.dc.container(e.service or "")
        if c is None or c["status"] != "running":
            return False
        from residency.runtime.process import proxy_serving

        return proxy_serving(e.port, self.master_key)
