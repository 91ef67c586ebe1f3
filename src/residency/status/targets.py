"""Where status looks for each model: the `up` state file, else the spec's ports (state I/O)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from residency.spec import StackSpec


LOCAL = "127.0.0.1"
DEFAULT_PORT_BASE = 8000  # a model without `port` is probed at 8000 + its index in the spec


@dataclass
class Target:
    """Where to look for one model (replica): from the up state file, else from the spec."""

    name: str
    replica: int = 0
    address: str = LOCAL
    port: int | None = None
    pid: int | None = None
    container: str | None = None
    recorded_state: str | None = None  # what the state file says (starting, ready, stopped, ...)
    log_path: str | None = None
    pgid: int | None = None  # the process group `up` started the server in (process runtime)
    create_time: float | None = None  # the leader's create time `up` recorded: guards against reuse


def state_path_candidates(spec_path: str | Path) -> list[Path]:
    p = Path(spec_path)
    stem = p.stem
    return [
        p.resolve().parent / ".residency" / stem / "state.json",
        Path.cwd() / ".residency" / stem / "state.json",
    ]


def read_state(spec_path: str | Path | None) -> dict[str, Any] | None:
    """The `up` state file as a dict, or None when there is none (or it cannot be read)."""
    if spec_path is None:
        return None
    try:  # prefer up's own reader when it exists
        from residency.runtime import state as rstate  # type: ignore[attr-defined]

        loader = getattr(rstate, "load_state", None) or getattr(rstate, "read_state", None)
        if loader is not None:
            st = loader(spec_path)
            if st is not None:
                return st if isinstance(st, dict) else _as_dict(st)
    except Exception:  # noqa: BLE001 - the runtime package may not exist yet or may change
        pass
    for cand in state_path_candidates(spec_path):
        if cand.is_file():
            try:
                return json.loads(cand.read_text())
            except (OSError, ValueError):
                return None
    return None


def _as_dict(obj: Any) -> dict[str, Any] | None:
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    try:
        return asdict(obj)
    except TypeError:
        return None


def _state_entries(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Flatten {"models": {name: {...} | [{...}, ...]}} or {"models": [{"name": ...}]}."""
    if not state:
        return []
    models = state.get("models") or state.get("services") or {}
    out: list[dict[str, Any]] = []
    if isinstance(models, dict):
        for name, v in models.items():
            for i, e in enumerate(v if isinstance(v, list) else [v]):
                if isinstance(e, dict):
                    out.append({"name": name, "replica": e.get("replica", i), **e})
    elif isinstance(models, list):
        out = [e for e in models if isinstance(e, dict) and e.get("name")]
    return out


def _opt_int(v: Any) -> int | None:
    try:
        return None if v in (None, "") else int(v)
    except (TypeError, ValueError):
        return None


def _opt_float(v: Any) -> float | None:
    try:
        return None if v in (None, "") else float(v)
    except (TypeError, ValueError):
        return None


def targets_for(spec: StackSpec, state: dict[str, Any] | None) -> list[Target]:
    """One target per model replica. State file entries win over spec ports."""
    addr = {h.name: h.address for h in spec.hosts or []}
    entries = _state_entries(state)
    out: list[Target] = []
    for idx, m in enumerate(spec.models):
        base_port = m.port if m.port is not None else DEFAULT_PORT_BASE + idx
        mine = [e for e in entries if e.get("name") == m.name or e.get("model_name") == m.name]
        for r in range(m.replicas):
            e = next((x for x in mine if _opt_int(x.get("replica")) == r), None)
            if e is None and m.replicas == 1 and mine:
                e = mine[0]
            e = e or {}
            host = e.get("host") or m.host
            address = e.get("address") or addr.get(host or "", LOCAL)
            if address in ("0.0.0.0", "", None):
                address = LOCAL
            out.append(
                Target(
                    name=m.name,
                    replica=r,
                    address=address,
                    port=_opt_int(e.get("port")) or base_port + r,  # replicas: consecutive ports
                    pid=_opt_int(e.get("pid")),
                    container=e.get("container") or e.get("container_id") or e.get("container_name"),
                    recorded_state=e.get("state") or e.get("status"),
                    log_path=e.get("log_path") or e.get("log"),
                    pgid=_opt_int(e.get("pgid")),
                    create_time=_opt_float(e.get("create_time")),
                )
            )
    return out
