"""Which processes are ours: the one liveness test (PID plus create time) and `up`'s process tags.

A PID alone is not an identity: the kernel reuses PIDs, so a recorded PID whose process was
created at another time is someone else's. `up` also tags every process it starts with environment
variables, so `down` and `status` can find a stack whose state file is gone (#13.11).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

CREATE_TIME_SLACK_S = 1.0  # psutil create times are rounded to the clock tick (1/100 s) and boot time

# The tags `up` puts in the environment of every process it starts (children inherit them).
TAG_STACK = "RESIDENCY_STACK"  # the stack's state folder (absolute): one per spec
TAG_MEMBER = "RESIDENCY_MEMBER"  # the state entry's name (model, model-<replica>, or litellm)
TAG_KIND = "RESIDENCY_KIND"  # vllm | proxy
TAG_PORT = "RESIDENCY_PORT"  # the port it was told to serve on
TAG_MODEL = "RESIDENCY_MODEL"  # the spec model it serves (vllm)
TAG_REPLICA = "RESIDENCY_REPLICA"  # which replica of that model


def process_alive(pid: int | None, create_time: float | None = None) -> bool:
    """Is `pid` alive (not a zombie) and, when `create_time` is given, the process created then?"""
    import psutil

    if pid is None:
        return False
    try:
        p = psutil.Process(pid)
        if create_time is not None and abs(p.create_time() - create_time) > CREATE_TIME_SLACK_S:
            return False  # the PID was reused
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def tags(stack: str, member: str, kind: str, port: int, model: str | None, replica: int) -> dict[str, str]:
    """The environment tags for one process `up` starts."""
    out = {
        TAG_STACK: stack,
        TAG_MEMBER: member,
        TAG_KIND: kind,
        TAG_PORT: str(port),
        TAG_REPLICA: str(replica),
    }
    if model:
        out[TAG_MODEL] = model
    return out


@dataclass(frozen=True)
class Tagged:
    """A process group leader that carries a stack's tags."""

    member: str
    kind: str
    port: int | None
    model: str | None
    replica: int
    pid: int
    pgid: int
    create_time: float


def tagged_leaders(stack: str, process_iter: Any = None) -> list[Tagged]:
    """The live process-group leaders tagged with `stack`, one per member (the oldest wins).

    Leaders only: a vLLM server's EngineCore and workers inherit the tags but live in its group."""
    import psutil

    found: dict[str, Tagged] = {}
    for p in (process_iter or psutil.process_iter)(["pid", "create_time", "status"]):
        try:
            if p.info.get("status") == psutil.STATUS_ZOMBIE or os.getpgid(p.pid) != p.pid:
                continue
            env = p.environ()
        except (psutil.Error, OSError):  # gone, or not ours to read
            continue
        if env.get(TAG_STACK) != stack or not env.get(TAG_MEMBER):
            continue
        port, replica = env.get(TAG_PORT, ""), env.get(TAG_REPLICA, "")
        t = Tagged(
            member=env[TAG_MEMBER],
            kind="proxy" if env.get(TAG_KIND) == "proxy" else "vllm",
            port=int(port) if port.isdigit() else None,
            model=env.get(TAG_MODEL) or None,
            replica=int(replica) if replica.isdigit() else 0,
            pid=p.pid,
            pgid=p.pid,
            create_time=p.info.get("create_time") or 0.0,
        )
        if t.member not in found or t.create_time < found[t.member].create_time:
            found[t.member] = t
    return sorted(found.values(), key=lambda t: (t.kind == "proxy", t.create_time))
