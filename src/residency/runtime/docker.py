"""`--runtime docker`: drive `docker compose` with the rendered files, one service at a time.

Command lines come from pure functions (tested without an engine). Compose v2 syntax; `ps
--format json` prints a JSON array before compose 2.21 and one object per line after: both parse.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from residency.errors import ResidencyError
from residency.render.common import Member, service_name
from residency.render.compose import PROXY_SERVICE
from residency.render.flags import serve_args
from residency.runtime.state import ProcEntry, StackState, StateStore
from residency.spec import StackSpec


def compose_base(compose_file: Path, project: str) -> list[str]:
    return ["docker", "compose", "-f", str(compose_file), "-p", project]


def up_service_cmd(compose_file: Path, project: str, service: str) -> list[str]:
    # --no-deps: residency itself waits for the previous service (health, init line, memory)
    return [*compose_base(compose_file, project), "up", "-d", "--no-deps", service]


def ps_cmd(compose_file: Path, project: str, service: str) -> list[str]:
    return [*compose_base(compose_file, project), "ps", "--all", "--format", "json", service]


def logs_cmd(compose_file: Path, project: str, service: str) -> list[str]:
    return [*compose_base(compose_file, project), "logs", "--no-color", "--no-log-prefix", service]


def stop_service_cmds(compose_file: Path, project: str, service: str, grace_s: float) -> list[list[str]]:
    base = compose_base(compose_file, project)
    return [[*base, "stop", "-t", str(int(grace_s)), service], [*base, "rm", "-f", service]]


def down_cmd(compose_file: Path, project: str, grace_s: float = 30) -> list[str]:
    return [*compose_base(compose_file, project), "down", "--timeout", str(int(grace_s))]


def inspect_pid_cmd(container: str) -> list[str]:
    return ["docker", "inspect", "--format", "{{.State.Pid}}", container]


def project_name(spec_path: Path) -> str:
    """Compose project names: lowercase letters, digits, dashes and underscores."""
    stem = re.sub(r"[^a-z0-9_-]+", "-", Path(spec_path).stem.lower()).strip("-") or "stack"
    return f"residency-{stem}"


def parse_ps(text: str) -> list[dict]:
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise ResidencyError(
            "`docker` is not on PATH: install Docker with the compose plugin, or use --runtime process"
        ) from None


class DockerCompose:
    def __init__(self, compose_file: Path, project: str, runner=None) -> None:
        self.file = Path(compose_file)
        self.project = project
        self.run = runner or _run

    def _check(self, cmd: list[str]) -> str:
        r = self.run(cmd)
        if r.returncode != 0:
            raise ResidencyError(f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()[-500:]}")
        return r.stdout

    def up(self, service: str) -> None:
        self._check(up_service_cmd(self.file, self.project, service))

    def ps(self, service: str) -> dict | None:
        r = self.run(ps_cmd(self.file, self.project, service))
        if r.returncode != 0:
            return None
        rows = [x for x in parse_ps(r.stdout) if x.get("Service", service) == service]
        return rows[0] if rows else None

    def logs(self, service: str) -> str:
        r = self.run(logs_cmd(self.file, self.project, service))
        return (r.stdout or "") + (r.stderr or "")

    def stop(self, service: str, grace_s: float) -> None:
        for cmd in stop_service_cmds(self.file, self.project, service, grace_s):
            self.run(cmd)

    def down(self, grace_s: float = 30) -> None:
        self._check(down_cmd(self.file, self.project, grace_s))

    def pid(self, container: str) -> int | None:
        r = self.run(inspect_pid_cmd(container))
        try:
            pid = int((r.stdout or "").strip())
        except ValueError:
            return None
        return pid or None


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
        from residency.render.common import VLLM_CONTAINER_PORT

        return serve_args(
            m.spec, m.plan, vllm_version=self.spec.vllm_version, port=VLLM_CONTAINER_PORT, host="0.0.0.0"
        )

    def _entry(self, name: str, service: str, kind: str, command: list[str], port: int | None) -> ProcEntry:
        return ProcEntry(
            name=name,
            kind=kind,
            service=service,
            command=command,
            port=port,
            log_path=f"docker compose logs {service}",
        )  # type: ignore[arg-type]

    def start(self, m: Member, st: StackState) -> ProcEntry:
        st.compose_project = self.dc.project
        st.compose_file = str(self.dc.file)
        svc = service_name(m.key)
        self.dc.up(svc)
        return self._entry(m.key, svc, "vllm", self.expected_command(m, None), None)

    def alive(self, e: ProcEntry) -> bool:
        row = self.dc.ps(e.service or "")
        return bool(row) and row.get("State") in ("running", "restarting", "created")

    def healthy(self, e: ProcEntry) -> bool:
        row = self.dc.ps(e.service or "")
        return bool(row) and row.get("Health") == "healthy"

    def log_text(self, e: ProcEntry) -> str:
        return self.dc.logs(e.service or "")

    def memory_bytes(self, e: ProcEntry) -> int | None:
        from residency.runtime.memory import tree_memory_bytes

        row = self.dc.ps(e.service or "")
        if not row:
            return None
        pid = self.dc.pid(row.get("Name") or row.get("ID") or "")
        return tree_memory_bytes(pid) if pid else None

    def stop(self, e: ProcEntry, grace_s: float) -> None:
        self.dc.stop(e.service or "", grace_s)

    def start_proxy(self, mems: list[Member], st: StackState) -> ProcEntry:
        self.dc.up(PROXY_SERVICE)
        return self._entry("litellm", PROXY_SERVICE, "proxy", [], self.spec.proxy.port)

    def proxy_ready(self, e: ProcEntry) -> bool:
        row = self.dc.ps(PROXY_SERVICE)
        return bool(row) and row.get("Health") == "healthy"
