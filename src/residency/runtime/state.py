"""The `up` state file: its schema (versioned), its only reader and its only writer.

`up` records what it started in `.residency/<spec stem>/state.json` next to the spec (or
`--state-dir`); `down`, `status` and `verify` read it through `read_state` / `StateStore.load` and
nothing else. A lock file (fcntl) next to the state keeps two `up`/`down` from running at once.

A state file that is not this schema (truncated, garbage, wrong types, another version) is one
line with the fix (StateFileError, exit 2), never a guess. A state file that is gone is not the
end either: every process `up` starts carries tags (runtime.procs), and `recover_state` rebuilds
the entries from the live tagged processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from residency.errors import LockedError, StateFileError

STATE_SCHEMA_VERSION = 1
MAX_STATE_BYTES = 4 << 20  # a stack of hundreds of entries is a few hundred KiB


class ProcEntry(BaseModel):
    """One started process (process runtime) or service (docker runtime)."""

    model_config = ConfigDict(extra="forbid")

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

    @property
    def model_name(self) -> str:
        """The spec model this entry serves."""
        return self.model or self.name

    def flag_int(self, flag: str) -> int | None:
        """An integer flag of the command `up` ran (e.g. "--max-model-len"), None when absent."""
        for i, arg in enumerate(self.command[:-1]):
            if arg == flag and self.command[i + 1].isdigit():
                return int(self.command[i + 1])
        return None


class StackState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = STATE_SCHEMA_VERSION
    spec_path: str
    runtime: Literal["process", "docker"]
    entries: list[ProcEntry] = Field(default_factory=list)
    compose_project: str | None = None
    compose_file: str | None = None
    updated_at: float = Field(default_factory=time.time)
    recovered: bool = Field(default=False, exclude=True)  # rebuilt from process tags, not read from disk

    def entry(self, name: str) -> ProcEntry | None:
        for e in self.entries:
            if e.name == name:
                return e
        return None

    def put(self, e: ProcEntry) -> None:
        self.entries = [x for x in self.entries if x.name != e.name] + [e]

    def drop(self, name: str) -> None:
        self.entries = [x for x in self.entries if x.name != name]

    def models(self) -> list[ProcEntry]:
        """The vLLM entries, in start order."""
        return [e for e in self.entries if e.kind == "vllm"]

    def proxy(self) -> ProcEntry | None:
        return next((e for e in self.entries if e.kind == "proxy"), None)


def state_dir(spec_path: Path, override: Path | None = None) -> Path:
    """The stack's state folder: `--state-dir`, else <spec folder>/.residency/<spec stem>. A symlink at
    `.residency`, at the stack's folder or at `--state-dir` itself is refused (fsutil.refuse_linked_folders):
    the folders above are the user's own path (/home may be a link), these are residency's."""
    from residency.fsutil import refuse_linked_folders

    if override is not None:
        o = Path(override)
        return refuse_linked_folders(o.parent, o.name) if o.name else o
    spec_path = Path(spec_path).resolve()
    return refuse_linked_folders(spec_path.parent, ".residency", spec_path.stem)


def parse_state(text: str | bytes, path: Path) -> StackState:
    """The state in `text`, or StateFileError: one line naming the problem and the fix."""
    try:
        return StackState.model_validate_json(text)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        why = f"{where}: {err['msg']}" if where else err["msg"]
        raise StateFileError(
            str(path),
            f"not a residency state file ({why[:160]})",
            "delete it: `residency down SPEC` still finds what `up` started, by its process tags",
        ) from None


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "state.json"
        self.lock_path = self.dir / "lock"
        self.logs = self.dir / "logs"

    @property
    def tag(self) -> str:
        """This stack's process tag (runtime.procs.TAG_STACK): its state folder, absolute."""
        return str(self.dir.resolve())

    def load(self) -> StackState | None:
        """The recorded state; None when there is none; StateFileError when it is not a state file."""
        try:
            with open(self.path, "rb") as f:
                text = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateFileError(
                str(self.path), f"cannot read the state file ({e.strerror})", "check its permissions"
            ) from None
        if len(text) > MAX_STATE_BYTES:
            raise StateFileError(
                str(self.path),
                f"larger than {MAX_STATE_BYTES >> 20} MiB, not a state file `up` wrote",
                "delete it: `residency down SPEC` still finds what `up` started, by its process tags",
            )
        return parse_state(text, self.path)

    def recover(self, spec_path: Path | str, process_iter: object = None) -> StackState | None:
        """The stack rebuilt from the live processes tagged with this store's tag (state file gone)."""
        from residency.runtime.procs import tagged_leaders

        found = tagged_leaders(self.tag, process_iter)
        if not found:
            return None
        st = StackState(spec_path=str(spec_path), runtime="process", recovered=True)
        for t in found:
            st.put(
                ProcEntry(
                    name=t.member,
                    kind=t.kind,  # type: ignore[arg-type]
                    model=t.model,
                    replica=t.replica,
                    pid=t.pid,
                    pgid=t.pgid,
                    create_time=t.create_time,
                    port=t.port,
                )
            )
        return st

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


def read_state(spec_path: str | Path, override: Path | None = None) -> StackState | None:
    """What `up` started for this spec: the state file, else the live processes carrying its tag
    (`recovered` is then True), else None. The one reader for `down`, `status` and `verify`."""
    store = StateStore(state_dir(Path(spec_path), override))
    st = store.load()
    return st if st is not None else store.recover(spec_path)
