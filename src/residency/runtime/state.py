"""What `up` started, so `down` stops exactly that: `.residency/<spec stem>/state.json` next to the spec.

A lock file (fcntl) next to the state keeps two `up`/`down` from running at once for one spec.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from residency.errors import LockedError, ResidencyError


class ProcEntry(BaseModel):
    """One started process (process runtime) or service (docker runtime)."""

    name: str  # member key (model name, or name-<replica>), or "litellm"
    kind: Literal["vllm", "proxy"] = "vllm"
    model: str | None = None  # the served model name (spec models[].name)
    replica: int = 0
    state: Literal["starting", "ready"] = "starting"
    pid: int | None = None
    pgid: int | None = None
    create_time: float | None = None  # psutil create_time: guards against PID reuse
    port: int | None = None
    log_path: str | None = None
    command: list[str] = Field(default_factory=list)
    service: str | None = None  # compose service name (docker runtime)
    started_at: float = Field(default_factory=time.time)


class StackState(BaseModel):
    spec_path: str
    runtime: Literal["process", "docker"]
    entries: list[ProcEntry] = Field(default_factory=list)
    compose_project: str | None = None
    compose_file: str | None = None
    updated_at: float = Field(default_factory=time.time)

    def entry(self, name: str) -> ProcEntry | None:
        for e in self.entries:
            if e.name == name:
                return e
        return None

    def put(self, e: ProcEntry) -> None:
        self.entries = [x for x in self.entries if x.name != e.name] + [e]

    def drop(self, name: str) -> None:
        self.entries = [x for x in self.entries if x.name != name]


def state_dir(spec_path: Path, override: Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    spec_path = Path(spec_path).resolve()
    return spec_path.parent / ".residency" / spec_path.stem


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "state.json"
        self.lock_path = self.dir / "lock"
        self.logs = self.dir / "logs"

    def load(self) -> StackState | None:
        try:
            return StackState.model_validate_json(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise ResidencyError(
                f"{self.path}: unreadable state file ({e}); stop the processes by hand"
            ) from None

    def save(self, st: StackState) -> None:
        from residency.fsutil import write_file

        st.updated_at = time.time()
        write_file(self.path, json.dumps(st.model_dump(mode="json"), indent=2))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    @contextmanager
    def lock(self, what: str):
        """Exclusive, non-blocking: a second `up`/`down` on the same spec fails at once."""
        from residency.fsutil import open_lock

        fd = open_lock(self.lock_path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise LockedError(
                    f"{self.lock_path} is held by {holder}: another `residency up`/`down` is running for this spec; "
                    "wait for it to finish"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} ({what})".encode(), 0)
            yield self
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # closing releases the flock


def load_state(spec_path: str | Path, override: Path | None = None) -> dict | None:
    """The state as a plain dict for readers outside the runtime (`status`):
    {"runtime", "models": [{name, replica, pid, pgid, create_time, port, log_path, state, container}],
    "proxy": {...}}."""
    st = StateStore(state_dir(Path(spec_path), override)).load()
    if st is None:
        return None
    models = []
    proxy = None
    for e in st.entries:
        d = {
            "name": e.model or e.name,
            "replica": e.replica,
            "pid": e.pid,
            "pgid": e.pgid,
            "create_time": e.create_time,
            "port": e.port,
            "log_path": e.log_path,
            "state": e.state,
            "container": e.service,
        }
        if e.kind == "proxy":
            proxy = d
        else:
            models.append(d)
    return {"runtime": st.runtime, "compose_project": st.compose_project, "models": models, "proxy": proxy}
