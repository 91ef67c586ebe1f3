"""`down`: stop what `up` recorded in the state file — by process group or compose project — and nothing else."""

from __future__ import annotations

from pathlib import Path

from residency.runtime.state import StateStore


def down_stack(
    spec_path: Path,
    store: StateStore,
    console,
    *,
    grace_s: float = 30.0,
    docker_runner=None,
    stopped: list[str] | None = None,
) -> int:
    """Stop the stack; returns how many processes/services were stopped (their names go to `stopped`)."""
    stopped = stopped if stopped is not None else []
    with store.lock("down"):
        st = store.load()
        if st is None and (st := store.recover(spec_path)) is not None:
            console.print(
                f"no state file at {store.path}: found {', '.join(e.name for e in st.entries)} by the process "
                "tags `up` gave them; stopping them"
            )
        if st is None or not st.entries and not st.compose_project:
            console.print(f"nothing to stop: no running stack recorded for {spec_path} ({store.path})")
            store.clear()
            return 0
        n = 0
        if st.runtime == "docker":
            from residency.runtime.docker import DockerCompose

            dc = DockerCompose(Path(st.compose_file or ""), st.compose_project or "", runner=docker_runner)
            dc.down()
            n = len(st.entries)
            stopped += [e.name for e in st.entries]
            console.print(f"stopped compose project {st.compose_project} ({n} services)")
        else:
            from residency.runtime.process import stop_process_entry

            # the proxy first (it fronts the models), then models in reverse start order
            order = sorted(st.entries, key=lambda e: 0 if e.kind == "proxy" else 1)
            proxies = [e for e in order if e.kind == "proxy"]
            models = [e for e in order if e.kind != "proxy"][::-1]
            for e in proxies + models:
                stop_process_entry(e, grace_s)
                st.drop(e.name)
                store.save(st)
                n += 1
                stopped.append(e.name)
                console.print(f"stopped {e.name} (pid {e.pid})")
        store.clear()
        return n
