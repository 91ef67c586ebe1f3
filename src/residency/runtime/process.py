"""`--runtime process`: each vLLM is `<vllm> serve ...` in its own process group, LiteLLM likewise.

Processes are stopped by process group with SIGTERM, then SIGKILL after a grace period, and only
when the recorded PID still belongs to the process we started (its create time matches).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from residency.errors import SpecError
from residency.render.common import HEALTH_PATH, Member
from residency.render.flags import serve_args, serve_command
from residency.runtime.memory import tree_memory_bytes
from residency.runtime.procs import process_alive, tags
from residency.runtime.state import ProcEntry, StackState, StateStore
from residency.spec import StackSpec

# Offline, quiet proxy (LiteLLM >= 1.40): no remote cost map fetch, no telemetry.
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
    "LITELLM_LOG": "INFO",
}
VLLM_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def find_executable(name: str, flag: str | None, env_var: str) -> str:
    cand = flag or os.environ.get(env_var) or shutil.which(name)
    src = "--" + name if flag else (env_var if os.environ.get(env_var) else "PATH")
    if not cand:
        raise SpecError(
            f"--{name}", f"no `{name}` executable on PATH", f"pass --{name} PATH or set {env_var}"
        )
    p = shutil.which(cand) or (cand if os.access(cand, os.X_OK) else None)
    if p is None:
        raise SpecError(
            f"--{name}", f"{cand} (from {src}) is not an executable", f"pass --{name} PATH or set {env_var}"
        )
    return p


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def group_members(e: ProcEntry) -> list:
    """Live processes of the entry's process group that we started (created no earlier than it)."""
    from residency.gpu import group_processes

    return [] if e.pgid is None else group_processes(e.pgid, e.create_time)


def stop_process_entry(e: ProcEntry, grace_s: float) -> None:
    """SIGTERM the entry's process group, SIGKILL whatever is left after grace_s. Nothing else."""
    import psutil

    procs = group_members(e)
    leader_ours = process_alive(e.pid, e.create_time)
    if not procs and not leader_ours:
        return
    if leader_ours:
        try:
            os.killpg(e.pgid or e.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    else:  # leader gone: signal the group's remaining members one by one
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    _reap(e.pid)


def _reap(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass


def http_ok(url: str, headers: dict | None = None, timeout: float = 2.0) -> bool:
    import httpx

    try:
        from residency.deadline import deadline_get

        return deadline_get(url, timeout, headers).status_code == 200
    except httpx.HTTPError:
        return False


def proxy_serving(port: int | None, master_key: str) -> bool:
    """LiteLLM on 127.0.0.1:port is ready: its readiness probe passes and it serves /v1/models with the
    stack's key (the process and host-network docker backends both gate on this)."""
    base = f"http://127.0.0.1:{port}"
    return http_ok(f"{base}/health/readiness") and http_ok(
        f"{base}/v1/models", headers={"Authorization": f"Bearer {master_key}"}
    )


class ProcessBackend:
    runtime = "process"

    def __init__(
        self,
        spec: StackSpec,
        spec_dir: Path,
        store: StateStore,
        *,
        vllm: str,
        litellm: str | None,
        master_key: str,
        host: str = "127.0.0.1",
    ) -> None:
        self.spec = spec
        self.spec_dir = spec_dir
        self.store = store
        self.vllm = vllm
        self.litellm = litellm
        self.master_key = master_key
        self.host = host
        self._procs: dict[int, subprocess.Popen] = {}

    # ---- vLLM
    def _model_ref(self, m: Member) -> str:
        from residency.spec import local_model_dir

        local = local_model_dir(m.spec.model, self.spec_dir)
        return str(local) if local is not None else m.spec.model

    def expected_command(self, m: Member, entry: ProcEntry | None) -> list[str]:
        port = entry.port if entry is not None and entry.port else (m.spec.port or 0)
        args = serve_args(
            m.spec,
            m.plan,
            vllm_version=self.spec.vllm_version,
            port=port,
            host=self.host,
            model_path=self._model_ref(m),
        )
        return serve_command(self.vllm, args)

    def _spawn(
        self,
        name: str,
        cmd: list[str],
        env_extra: dict[str, str],
        port: int,
        kind: str,
        model: str | None = None,
        replica: int = 0,
    ) -> ProcEntry:
        import psutil

        from residency.fsutil import child, open_append

        log_path = child(self.store.logs, name, ".log")  # name validated at spec load; child() re-checks
        # tagged, so `down`/`status` find it even when the state file is gone (#13.11)
        env = {**os.environ, **env_extra, **tags(self.store.tag, name, kind, port, model, replica)}
        with open_append(log_path) as log:
            log.write(f"\n==== residency: {' '.join(cmd)}\n".encode())
            log.flush()
            p = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: down stops the whole tree, nothing else
                env=env,
                cwd=self.spec_dir,
            )
        self._procs[p.pid] = p
        try:
            ct = psutil.Process(p.pid).create_time()
        except psutil.Error:
            ct = None
        return ProcEntry(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            pid=p.pid,
            pgid=p.pid,
            create_time=ct,
            port=port,
            log_path=str(log_path),
            command=cmd,
        )

    def start(self, m: Member, st: StackState) -> ProcEntry:
        port = m.spec.port or free_port(self.host)
        cmd = self.expected_command(m, ProcEntry(name=m.key, port=port))
        env = {**VLLM_ENV, **m.spec.env}
        gpus = m.plan.gpus or m.spec.gpus
        if gpus and "CUDA_VISIBLE_DEVICES" not in m.spec.env:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)  # the plan's placement
        return self._spawn(m.key, cmd, env, port, "vllm", m.spec.name, m.plan.replica)

    def alive(self, e: ProcEntry) -> bool:
        p = self._procs.get(e.pid or -1)
        if p is not None and p.poll() is not None:
            return False
        return process_alive(e.pid, e.create_time)

    def healthy(self, e: ProcEntry) -> bool:
        return http_ok(f"http://{self.host}:{e.port}{HEALTH_PATH}")

    def log_text(self, e: ProcEntry) -> str:
        if not e.log_path:
            return ""
        try:
            text = Path(e.log_path).read_text(errors="replace")
        except OSError:
            return ""
        # only this launch: the log file is appended to across launches
        i = text.rfind("\n==== residency: ")
        return text[i:] if i >= 0 else text

    def memory_bytes(self, e: ProcEntry) -> int | None:
        return tree_memory_bytes(e.pid) if e.pid else None

    def stop(self, e: ProcEntry, grace_s: float) -> None:
        stop_process_entry(e, grace_s)
        p = self._procs.pop(e.pid or -1, None)
        if p is not None:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    # ---- LiteLLM
    def start_proxy(self, mems: list[Member], st: StackState) -> ProcEntry:
        from residency.fsutil import write_file
        from residency.render.litellm import litellm_yaml

        if self.litellm is None:
            raise SpecError(
                "--litellm", "no `litellm` executable found", "pass --litellm PATH or set RESIDENCY_LITELLM"
            )
        bases = {}
        for m in mems:
            e = st.entry(m.key)
            bases[m.key] = f"http://{self.host}:{e.port}/v1"
        cfg = self.store.dir / "litellm.yaml"
        write_file(cfg, litellm_yaml(self.spec, mems, bases))
        port = self.spec.proxy.port
        host = self.spec.proxy.host
        cmd = [self.litellm, "--config", str(cfg), "--host", host, "--port", str(port)]
        env = {**LITELLM_ENV, self.spec.proxy.master_key_env: self.master_key}
        return self._spawn("litellm", cmd, env, port, "proxy")

    def proxy_ready(self, e: ProcEntry) -> bool:
        return proxy_serving(e.port, self.master_key)
