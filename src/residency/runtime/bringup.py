"""`up`: start the planned vLLM instances one at a time, health- and memory-gated, LiteLLM last.

Runtime-neutral: a Backend (process or docker) starts, probes and stops one instance; this module
decides the order, the gates, what to print, and what state the stack is left in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from residency.errors import ResidencyError, UpFailed
from residency.memory.device import is_cpu_name
from residency.planner.result import Plan
from residency.render.common import Member, fmt_gib, members
from residency.runtime.logwatch import Failure, current_phase, explain_failure, init_done, logged_kv
from residency.runtime.memory import Settle, choose_probe, needed_gib
from residency.runtime.memwait import UnifiedGate
from residency.runtime.state import ProcEntry, StackState, StateStore
from residency.spec import StackSpec
from residency.units import GiB

INIT_LINE_GRACE_S = 60.0  # /health answers but no "init engine ... took" line: wait this long, then go on


class Backend(Protocol):
    runtime: str

    def expected_command(self, m: Member, entry: ProcEntry | None) -> list[str]: ...
    def start(self, m: Member, st: StackState) -> ProcEntry: ...
    def alive(self, e: ProcEntry) -> bool: ...
    def healthy(self, e: ProcEntry) -> bool: ...
    def log_text(self, e: ProcEntry) -> str: ...
    def memory_bytes(self, e: ProcEntry) -> int | None: ...
    def stop(self, e: ProcEntry, grace_s: float) -> None: ...
    def start_proxy(self, mems: list[Member], st: StackState) -> ProcEntry: ...
    def proxy_ready(self, e: ProcEntry) -> bool: ...


@dataclass
class UpOptions:
    rollback: bool = False
    cpu: bool = False
    timeout_s: float | None = None  # per model; default scales with weights
    poll_s: float = 1.0
    settle: Settle = field(default_factory=Settle)
    grace_s: float = 30.0
    proxy_timeout_s: float = 300.0
    # unified memory (not the CPU backend): drop caches + wait for free memory before each engine
    unified_gate: UnifiedGate | None = None


@dataclass
class Started:
    member: Member
    entry: ProcEntry
    kv_gib: float | None
    kv_tokens: int | None
    seconds: float
    reused: bool = False


# A running engine's fraction only mattered for its own startup check (0.10.1-0.33.0: it sets
# the free-memory check and the KV budget, both taken at start); a re-plan that moves it
# (e.g. after `up` calibrated from the launch log) is no reason to restart a healthy model.
_IGNORED_ON_RERUN = {"--gpu-memory-utilization"}


def _flag_map(cmd: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {"<model>": cmd[2] if len(cmd) > 2 else None}
    i = 3
    while i < len(cmd):
        a = cmd[i]
        if a.startswith("--") and i + 1 < len(cmd) and not cmd[i + 1].startswith("--"):
            out[a] = cmd[i + 1]
            i += 2
        else:
            out[a] = None
            i += 1
    return out


def command_differences(running: list[str], planned: list[str]) -> list[str]:
    """Flags where a running engine's command differs from the plan's (the fraction excepted)."""
    if not running or not planned:
        return [] if running == planned else ["command"]
    a, b = _flag_map(running), _flag_map(planned)
    out = []
    for k in sorted(set(a) | set(b), key=str):
        if k in _IGNORED_ON_RERUN or a.get(k, "<absent>") == b.get(k, "<absent>"):
            continue
        out.append(f"{k}: running {a.get(k, 'absent')}, plan {b.get(k, 'absent')}")
    return out


def default_timeout(m: Member) -> float:
    # weights load + compile + capture; same scale as the compose start period, doubled for
    # first-time checkpoint reads on a cold page cache
    from residency.render.common import start_period_seconds

    return 2.0 * start_period_seconds(m.plan.weights_gib)


class _Progress:
    """A one-line rich status while a model loads; each new phase is also printed as a line."""

    def __init__(self, console) -> None:
        self.console = console
        self.status = None

    def __enter__(self):
        self.status = self.console.status("")
        self.status.__enter__()
        return self

    def __exit__(self, *a):
        self.status.__exit__(*a)

    def update(self, text: str) -> None:
        self.status.update(text)


def wait_ready(backend: Backend, e: ProcEntry, m: Member, opts: UpOptions, console) -> tuple[bool, str]:
    """Wait for /health, the init-engine line, and settled memory. (ok, reason-if-not)."""
    timeout = opts.timeout_s or default_timeout(m)
    t0 = time.monotonic()
    settle = Settle(opts.settle.window_s, opts.settle.tol_bytes, opts.settle.tol_frac)
    last_phase = None
    health_since: float | None = None
    with _Progress(console) as prog:
        while True:
            now = time.monotonic()
            elapsed = now - t0
            text = backend.log_text(e)
            phase = current_phase(text) or "starting"
            if phase != last_phase:
                console.print(f"  {m.key}: {phase} ({elapsed:.0f} s)")
                last_phase = phase
            if not backend.alive(e):
                return False, "the process exited"
            healthy = backend.healthy(e)
            if healthy and health_since is None:
                health_since = now
            used = backend.memory_bytes(e)
            if used is not None:
                settle.add(now, used)
            done = init_done(text)
            mem_ok = used is None or settle.settled()
            mem_txt = f", {used / GiB:.2f} GiB" if used is not None else ""
            gates = f"health {'ok' if healthy else '..'}, init {'ok' if done else '..'}, memory {'settled' if mem_ok and used is not None else ('n/a' if used is None else 'moving')}"
            prog.update(f"{m.key}: {phase} - {elapsed:.0f} s{mem_txt} [{gates}]")
            if (
                healthy
                and mem_ok
                and (done or (health_since is not None and now - health_since > INIT_LINE_GRACE_S))
            ):
                if not done:
                    console.print(
                        f"  {m.key}: note: no 'init engine ... took' line in the log; went on after /health"
                    )
                return True, ""
            if elapsed > timeout:
                return False, f"not ready after {timeout:.0f} s ({gates})"
            time.sleep(opts.poll_s)


def print_failure(console, key: str, f: Failure, log_hint: str | None) -> None:
    from rich.markup import escape

    console.print(f"[bold red]{key} failed to start[/]: " + escape(f"[{f.kind}] {f.message}"))
    if f.meaning:
        console.print(f"  what it means: {f.meaning}", markup=False)
    if f.fix:
        console.print(f"  fix: {f.fix}", markup=False)
    if f.kind == "other" and f.tail:
        console.print("  last log lines:")
        for line in f.tail:
            console.print(f"    {line}", markup=False, highlight=False)
    if log_hint:
        console.print(f"  full log: {log_hint}")


def _record_calibration(spec: StackSpec, plan: Plan, m: Member, launch, source: str, console) -> None:
    """`up` calibrates from each launch log on its own (residency.calibrate.store); on a unified-memory GPU
    any logged device total (a failed start's too) teaches the box's total and idle free (calibrate/boxes.py)."""
    if launch is not None and plan.device.unified and not is_cpu_name(plan.device.name):
        from residency.calibrate.boxes import learn_box

        try:
            learn_box(
                plan.device.name, launch.total_gib, launch.free_at_start_gib, source, spec.calibration_file
            )
        except (ValueError, OSError) as ex:
            console.print(f"  {m.key}: note: box figures not recorded ({ex})", markup=False)
    if launch is None or getattr(launch, "error", None) is not None:
        return
    from residency.calibrate.store import calibration_path, record_launch

    try:
        record_launch(
            launch, spec=spec, model=m.spec, source=source, path=calibration_path(spec.calibration_file, spec)
        )
    except (ResidencyError, OSError) as ex:  # calibration is a side benefit; never fail a start over it
        console.print(f"  {m.key}: note: calibration not recorded ({ex})", markup=False)


def stop_entries(
    backend: Backend, store: StateStore, st: StackState, names: list[str], grace_s: float, console
) -> None:
    for name in names:
        e = st.entry(name)
        if e is None:
            continue
        backend.stop(e, grace_s)
        console.print(f"  stopped {name}")
        st.drop(name)
        store.save(st)


def up_stack(
    spec_path: Path,
    spec: StackSpec,
    plan: Plan,
    backend: Backend,
    store: StateStore,
    opts: UpOptions,
    console,
) -> list[Started]:
    """Long on purpose: the start sequence with its gates and state saves reads in the order it happens; each
    gate is its own function."""
    mems = members(spec, plan)
    with store.lock("up"):
        st = store.load()
        if st is None and (lost := store.recover(spec_path)) is not None:
            raise UpFailed(
                f"no state file at {store.path}, but {', '.join(e.name for e in lost.entries)} that `up` started "
                f"for this spec still run (found by their process tags); run `residency down {spec_path}` first"
            )
        if st is not None and st.runtime != backend.runtime and any(backend.alive(e) for e in st.entries):
            raise UpFailed(
                f"the stack is already up on the {st.runtime} runtime; run `residency down {spec_path}` first"
            )
        if st is None or st.runtime != backend.runtime:
            st = StackState(spec_path=str(spec_path), runtime=backend.runtime)
        # forget entries whose processes are gone
        for e in list(st.entries):
            if not backend.alive(e):
                st.drop(e.name)
        known = {m.key for m in mems} | {"litellm"}
        stray = [e.name for e in st.entries if e.name not in known]
        if stray:
            raise UpFailed(
                f"{', '.join(stray)} still running from an earlier spec version; run `residency down {spec_path}` first"
            )
        store.save(st)

        started: list[Started] = []
        this_run: list[str] = []
        for m in mems:
            e = st.entry(m.key)
            if e is not None:
                differs = command_differences(e.command, backend.expected_command(m, e))
                if not differs:
                    t0 = time.monotonic()
                    if e.state != "ready":
                        # an interrupted `up` left it loading: it passes the same gates as a new start
                        # before the next model starts (two engines loading together is what up prevents)
                        console.print(
                            f"{m.key}: already running (pid {e.pid or e.service}) but not ready yet "
                            "(an earlier `up` stopped while it loaded): waiting for its gates"
                        )
                        ok, reason = wait_ready(backend, e, m, opts, console)
                        if not ok:
                            _fail_start(backend, store, st, e, m, reason, opts, console, spec_path)
                        e.state = "ready"
                        store.save(st)
                        console.print(f"[green]{m.key}: ready[/] (kept)")
                    else:
                        console.print(f"{m.key}: already running (pid {e.pid or e.service}), kept")
                    lk = logged_kv(backend.log_text(e))
                    started.append(
                        Started(m, e, lk.kv_cache_gib, lk.kv_cache_tokens, time.monotonic() - t0, reused=True)
                    )
                    continue
                raise UpFailed(
                    f"{m.key} is running with other settings than the plan's ({'; '.join(differs)}); "
                    f"run `residency down {spec_path}` first"
                )
            _check_free_memory(m, plan, opts, console, st, spec_path)
            console.print(f"[bold]{m.key}[/]: starting ({m.spec.model})")
            t0 = time.monotonic()
            try:
                e = backend.start(m, st)
            except ResidencyError as err:
                # nothing of this engine runs (the backend cleans up its own half-start); the stack is left
                # as a failed wait would leave it, so --rollback holds here too
                console.print(f"{m.key}: could not be started: {err}", markup=False)
                _leave_stack(backend, store, st, opts, console, spec_path, failed=m.key)
                raise UpFailed(f"{m.key} could not be started: cause above") from err
            e.model, e.replica = m.spec.name, m.plan.replica
            st.put(e)
            store.save(st)
            this_run.append(m.key)
            try:
                ok, reason = wait_ready(backend, e, m, opts, console)
            except KeyboardInterrupt:
                # never leave a half-started engine behind: stop it, keep what was ready
                backend.stop(e, opts.grace_s)
                st.drop(m.key)
                store.save(st)
                kept = ", ".join(x.name for x in st.entries) or "nothing"
                console.print(f"interrupted: stopped {m.key} while it started; still running: {kept}")
                raise
            if not ok:
                _fail_start(backend, store, st, e, m, reason, opts, console, spec_path)
            secs = time.monotonic() - t0
            e.state = "ready"
            store.save(st)
            text = backend.log_text(e)
            lk = logged_kv(text)
            started.append(Started(m, e, lk.kv_cache_gib, lk.kv_cache_tokens, secs))
            console.print(
                f"[green]{m.key}: ready[/] in {secs:.0f} s - KV cache logged {fmt_gib(lk.kv_cache_gib)} GiB"
                f" / planned {fmt_gib(m.plan.kv_cache_gib)} GiB"
            )
            _record_calibration(spec, plan, m, lk.launch, e.log_path or "", console)

        # LiteLLM last: (re)start it when a model was (re)started or it is not running
        pe = st.entry("litellm")
        if pe is not None and (this_run or not backend.alive(pe)):
            backend.stop(pe, opts.grace_s)
            st.drop("litellm")
            store.save(st)
            pe = None
        if pe is None:
            console.print("[bold]litellm[/]: starting the proxy")
            try:
                pe = backend.start_proxy(mems, st)
            except ResidencyError as err:
                console.print(f"litellm: could not be started: {err}", markup=False)
                _leave_stack(backend, store, st, opts, console, spec_path, failed="litellm")
                raise UpFailed("the LiteLLM proxy could not be started: cause above") from err
            st.put(pe)
            store.save(st)
            if not _wait_proxy(backend, pe, opts):
                text = backend.log_text(pe)
                backend.stop(pe, opts.grace_s)
                st.drop("litellm")
                store.save(st)
                f = explain_failure(text)
                print_failure(console, "litellm", Failure("other", f.message, "", "", f.tail), pe.log_path)
                _leave_stack(backend, store, st, opts, console, spec_path, failed="litellm")
                raise UpFailed("the LiteLLM proxy did not become ready")
            pe.state = "ready"
            store.save(st)
            console.print(f"[green]litellm: ready[/] on port {pe.port}")
        else:
            console.print("litellm: already running, kept")
        print_summary(console, started, pe)
        return started


def _fail_start(
    backend: Backend,
    store: StateStore,
    st: StackState,
    e: ProcEntry,
    m: Member,
    reason: str,
    opts: UpOptions,
    console,
    spec_path: Path,
) -> None:
    """An engine that did not pass its gates: stop it, explain vLLM's error, leave the stack, raise."""
    text = backend.log_text(e)
    backend.stop(e, opts.grace_s)
    st.drop(m.key)
    store.save(st)
    f = explain_failure(text)
    if reason and f.kind == "other" and "exited" not in reason:
        f.message = f"{reason}; {f.message}"
    print_failure(console, m.key, f, e.log_path)
    _leave_stack(backend, store, st, opts, console, spec_path, failed=m.key)
    raise UpFailed(f"{m.key} did not start ({f.kind}): cause and fix above")


def _wait_proxy(backend: Backend, pe: ProcEntry, opts: UpOptions) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < opts.proxy_timeout_s:
        if not backend.alive(pe):
            return False
        if backend.proxy_ready(pe):
            return True
        time.sleep(opts.poll_s)
    return False


def _check_free_memory(
    m: Member, plan: Plan, opts: UpOptions, console, st: StackState, spec_path: Path
) -> None:
    if opts.unified_gate is not None and plan.device.unified and not opts.cpu:
        running = ", ".join(e.name for e in st.entries) or "none of this stack"
        opts.unified_gate.before_start(m.key, needed_gib(m.plan, cpu=False), running, console)
        return
    probe, note = choose_probe(plan.device, cpu=opts.cpu, gpus=m.plan.gpus)
    if probe is None:
        console.print(f"  {m.key}: note: {note}")
        return
    try:
        free = probe.free_gib()
    finally:
        probe.close()
    if free is None:
        console.print(f"  {m.key}: note: {probe.name} did not answer; free memory not checked")
        return
    need = needed_gib(m.plan, cpu=opts.cpu)
    console.print(f"  {m.key}: free {free:.2f} GiB ({probe.name}), plan needs {need:.2f} GiB", markup=False)
    if free < need:
        running = ", ".join(e.name for e in st.entries) or "none of this stack"
        raise UpFailed(
            f"{m.key} not started: [free_memory] free memory {free:.2f} GiB is less than the {need:.2f} GiB the plan "
            f"needs for it ({probe.name}). Running from this stack: {running}. Fix: stop what else holds memory "
            f"(see `residency status`), or re-plan with device.used_gib set to what others hold"
        )


def _leave_stack(backend, store, st, opts, console, spec_path, failed: str) -> None:
    """State the condition the stack is left in; with --rollback stop everything this stack runs."""
    if opts.rollback:
        names = [e.name for e in reversed(st.entries)]
        if names:
            console.print(f"rolling back: stopping {', '.join(names)}")
        stop_entries(backend, store, st, names, opts.grace_s, console)
        store.clear()
        console.print(f"stack state: nothing from {spec_path.name} is running ({failed} failed, rolled back)")
        return
    alive = [e.name for e in st.entries]
    if alive:
        console.print(
            f"stack state: {', '.join(alive)} kept running; {failed} failed and was stopped. Fix it and rerun "
            f"`residency up` (running models are kept), or `residency down` to stop them"
        )
    else:
        store.clear()
        console.print(
            f"stack state: nothing from {spec_path.name} is running ({failed} failed and was stopped)"
        )


def print_summary(console, started: list[Started], proxy: ProcEntry | None) -> None:
    from rich.table import Table

    t = Table(title="residency up: KV cache, logged vs planned")
    t.add_column("model", no_wrap=True)
    for col in ("port", "pid", "KV GiB log", "KV GiB plan", "tokens log", "tokens plan", "start s"):
        t.add_column(col, justify="right")
    for s in started:
        t.add_row(
            s.member.key,
            str(s.entry.port or "-"),
            str(s.entry.pid or s.entry.service or "-"),
            fmt_gib(s.kv_gib),
            fmt_gib(s.member.plan.kv_cache_gib),
            "-" if s.kv_tokens is None else str(s.kv_tokens),
            str(s.member.plan.kv_cache_tokens),
            "kept" if s.reused else f"{s.seconds:.0f}",
        )
    console.print(t)
    if proxy is not None:
        console.print(f"proxy: http://127.0.0.1:{proxy.port}/v1 (master key in the stack's .env, mode 0600)")
