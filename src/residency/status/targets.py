"""Where status looks for each model: `up`'s state (runtime.state.read_state), else the spec's ports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from residency.ports import DEFAULT_VLLM_PORT_BASE, LOCAL

if TYPE_CHECKING:
    from residency.runtime.state import StackState
    from residency.spec import StackSpec

DEFAULT_PORT_BASE = DEFAULT_VLLM_PORT_BASE  # a model without `port` is probed at 8000 + its index in the spec


@dataclass
class Target:
    """Where to look for one model (replica): from the up state file, else from the spec."""

    name: str
    replica: int = 0
    address: str = LOCAL
    port: int | None = None
    pid: int | None = None
    container: str | None = None
    recorded_state: str | None = None  # what the state file says (starting, ready)
    log_path: str | None = None
    pgid: int | None = None  # the process group `up` started the server in (process runtime)
    create_time: float | None = None  # the leader's create time `up` recorded: guards against reuse


def read_state(spec_path: str | Path | None) -> StackState | None:
    """`up`'s state for this spec (the file, else its tagged processes), or None."""
    if spec_path is None:
        return None
    from residency.runtime.state import read_state as runtime_read_state

    return runtime_read_state(spec_path)


def targets_for(spec: StackSpec, state: StackState | None) -> list[Target]:
    """One target per model replica. State file entries win over spec ports."""
    addr = {h.name: h.address for h in spec.hosts or []}
    entries = state.models() if state is not None else []
    out: list[Target] = []
    for idx, m in enumerate(spec.models):
        base_port = m.port if m.port is not None else DEFAULT_PORT_BASE + idx
        mine = {e.replica: e for e in entries if e.model_name == m.name}
        address = addr.get(m.host or "", LOCAL)
        if address in ("0.0.0.0", ""):
            address = LOCAL
        for r in range(m.replicas):
            e = mine.get(r)
            out.append(
                Target(
                    name=m.name,
                    replica=r,
                    address=address,
                    port=(e.port if e else None) or base_port + r,  # replicas: consecutive ports
                    pid=e.pid if e else None,
                    container=e.service if e else None,
                    recorded_state=e.state if e else None,
                    log_path=e.log_path if e else None,
                    pgid=e.pgid if e else None,
                    create_time=e.create_time if e else None,
                )
            )
    return out
