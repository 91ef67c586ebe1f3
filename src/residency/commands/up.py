"""`residency up SPEC`: start the planned models one at a time (health- and memory-gated), LiteLLM last."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from residency.commands.options import Grace, JsonResult


class Runtime(StrEnum):
    process = "process"
    docker = "docker"


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up_cmd(
        spec: Annotated[Path, typer.Argument(help="Stack spec YAML")],
        runtime: Annotated[
            Runtime, typer.Option("--runtime", help="process: pip-installed vLLM; docker: docker compose")
        ] = Runtime.process,
        rollback: Annotated[
            bool, typer.Option("--rollback", help="On a failed start, stop the models already started")
        ] = False,
        vllm: Annotated[
            str | None, typer.Option("--vllm", help="vllm executable (default: $RESIDENCY_VLLM, then PATH)")
        ] = None,
        litellm: Annotated[
            str | None,
            typer.Option("--litellm", help="litellm executable (default: $RESIDENCY_LITELLM, then PATH)"),
        ] = None,
        state_dir: Annotated[
            Path | None,
            typer.Option(
                "--state-dir",
                help="Where state, logs and the proxy config live (default: .residency/<spec stem>/ next to the spec)",
            ),
        ] = None,
        cpu: Annotated[
            bool, typer.Option("--cpu", help="vLLM's CPU backend: check MemAvailable before each start")
        ] = False,
        env_file: Annotated[
            Path | None,
            typer.Option(
                "--env-file",
                help="Take the LiteLLM master key from this .env (default: the .env `render` wrote, "
                "else the state dir's own)",
            ),
        ] = None,
        timeout: Annotated[
            float | None,
            typer.Option(
                "--timeout",
                min=1,
                max=86400,
                help="Seconds to wait for each model (default: scales with weights)",
            ),
        ] = None,
        no_drop_caches: Annotated[
            bool,
            typer.Option(
                "--no-drop-caches",
                help="Unified memory: do not drop the page cache before each engine (done when root)",
            ),
        ] = False,
        free_wait: Annotated[
            float,
            typer.Option(
                "--free-wait",
                min=0,
                max=86400,
                help="Unified memory: seconds to wait for free memory (as vLLM reads it) before each engine",
            ),
        ] = 120.0,
        settle_seconds: Annotated[
            float,
            typer.Option(
                "--settle-seconds",
                min=0,
                max=3600,
                help="Memory must stay within 1% (or 64 MiB) this long before the next start",
            ),
        ] = 6.0,
        grace: Grace = 30.0,
        json_out: JsonResult = False,
    ) -> None:
        """Start each model in plan order; the next starts after /health, the init-engine line and settled memory."""
        from rich.console import Console

        from residency.memory.device import is_cpu_name
        from residency.render.stack import plan_for, require_fit
        from residency.runtime.bringup import UpOptions, up_stack
        from residency.runtime.keys import stack_master_key
        from residency.runtime.memory import Settle
        from residency.runtime.state import StateStore
        from residency.runtime.state import state_dir as default_state_dir
        from residency.spec import load_spec

        s = load_spec(spec)
        spec_path = spec.resolve()
        plan = plan_for(s)
        require_fit(
            plan, allow_at_risk=True
        )  # at risk offline; before each start up reads the real free memory
        store = StateStore(default_state_dir(spec_path, state_dir))
        key, key_file = stack_master_key(store.dir, s.proxy.master_key_env, env_file)
        Console(stderr=True, highlight=False).print(f"master key: {s.proxy.master_key_env} from {key_file}")
        is_cpu = cpu or is_cpu_name(plan.device.name)
        opts = UpOptions(
            rollback=rollback,
            cpu=is_cpu,
            timeout_s=timeout,
            settle=Settle(window_s=settle_seconds),
            grace_s=grace,
            unified_gate=unified_gate(s, plan, is_cpu, drop=not no_drop_caches, wait_s=free_wait),
        )
        console = Console(highlight=False, soft_wrap=True, stderr=json_out)
        if opts.unified_gate is not None:
            console.print(_live_note(s, plan), markup=False)
        if runtime == Runtime.docker:
            from residency.runtime.docker import DockerBackend

            backend = DockerBackend(s, spec_path, plan, store, master_key=key)
            backend.render()
        else:
            from residency.runtime.process import ProcessBackend, find_executable

            vllm_exe = find_executable("vllm", vllm, "RESIDENCY_VLLM")
            litellm_exe = find_executable("litellm", litellm, "RESIDENCY_LITELLM")
            backend = ProcessBackend(
                s, spec_path.parent, store, vllm=vllm_exe, litellm=litellm_exe, master_key=key
            )
        started = up_stack(spec_path, s, plan, backend, store, opts, console)
        if json_out:
            from residency.jsonout import dumps
            from residency.runtime.state import read_state

            st = read_state(spec_path, store.dir)
            proxy = st.proxy() if st is not None else None
            print(dumps({
                "spec": str(spec_path),
                "runtime": backend.runtime,
                "state_file": str(store.path),
                "models": [
                    {
                        "name": x.member.key, "model": x.member.spec.name, "pid": x.entry.pid, "port": x.entry.port,
                        "kept": x.reused, "seconds": round(x.seconds, 1), "kv_cache_gib": x.kv_gib,
                        "kv_cache_tokens": x.kv_tokens, "log": x.entry.log_path,
                    }
                    for x in started
                ],
                "proxy": None if proxy is None else {"pid": proxy.pid, "port": proxy.port},
            }))  # fmt: skip


def unified_gate(s, plan, is_cpu: bool, *, drop: bool, wait_s: float):
    """Unified memory (not the CPU backend): the page-cache drop and free-memory wait before each engine."""
    if not plan.device.unified or is_cpu:
        return None
    from residency.memory.live import MeminfoSource, free_field
    from residency.memory.versions import rules_for
    from residency.runtime.memwait import UnifiedGate

    return UnifiedGate(
        MeminfoSource(free_field(rules_for(s.vllm_version))), drop_caches=drop, timeout_s=wait_s
    )


def _live_note(s, plan) -> str:
    """What the box says now vs the plan's device total, and the source of each figure."""
    from residency.memory.live import read_live
    from residency.memory.versions import rules_for

    r, why = read_live(True, rules_for(s.vllm_version))
    if r is None:
        return f"memory: not read ({why})"
    note = f"memory now: total {r.total_gib:.2f} GiB, free {r.free_gib:.2f} GiB ({r.source})"
    if "cudaMemGetInfo" in r.total_source and abs(r.total_gib - plan.device.total_gib) > 0.05:
        note += f"; the plan assumed {plan.device.total_gib:.2f} GiB: re-plan with `residency plan --live`"
    return note
