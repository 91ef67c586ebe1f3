"""Drift warnings from a collected ledger: pure, it reads only the ledger (unit-testable rules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from residency.units import GiB

if TYPE_CHECKING:
    from residency.status.ledger import Ledger, ModelStatus


@dataclass(frozen=True)
class Thresholds:
    drift_pct: float = 10.0  # actual footprint above plan by more than this percent ...
    drift_floor_gib: float = 0.25  # ... and by more than this many GiB (ignores noise on toy models)
    kv_high: float = 0.90  # KV usage (0-1) at or above this: requests will queue or be preempted
    page_cache_frac: float = 0.10  # unified memory: page cache above this share of total
    available_low_frac: float = 0.05  # unified memory: MemAvailable below this share of total


@dataclass
class Warning:
    kind: str  # drift, down, starting, kv_high, queue, page_cache, available_low, stray_process, served_name, plan
    message: str
    model: str | None = None
    level: Literal["warn", "info"] = "warn"


def _gib(b: int | float | None) -> str:
    return "?" if b is None else f"{b / GiB:.2f} GiB"


def assess(ledger: Ledger, th: Thresholds) -> list[Warning]:
    """Drift warnings from a collected ledger; reads nothing else."""
    w: list[Warning] = []
    for m in ledger.models:
        w += _model_warnings(ledger, m, th)
    return w + _stack_warnings(ledger, th)


def _model_warnings(ledger: Ledger, m: ModelStatus, th: Thresholds) -> list[Warning]:
    w: list[Warning] = []
    who = m.name if m.replica == 0 else f"{m.name}#{m.replica}"
    if m.state == "down":
        w.append(Warning("down", f"{who} is down at {m.url or '?'} ({m.detail})", m.name))
        if m.orphan_pids:
            pids = ", ".join(map(str, m.orphan_pids))
            if m.pgid is not None:  # started by `up`: down stops what is left of its process group
                fix = f"run `residency down {ledger.spec}`" if ledger.spec else "run `residency down`"
            else:
                fix = f"stop them (kill {' '.join(map(str, m.orphan_pids))}) before restarting it"
            w.append(
                Warning(
                    "orphan",
                    f"{who} is down but its engine processes (pids {pids}) still hold "
                    f"{_gib(m.memory_bytes)}; {fix}",
                    m.name,
                )
            )
        return w
    if m.state == "starting":
        w.append(Warning("starting", f"{who} is starting ({m.detail})", m.name, level="info"))
    if m.drift_pct is not None and m.planned_gib is not None and m.memory_gib is not None:
        over = m.memory_gib - m.planned_gib
        if m.drift_pct > th.drift_pct and over > th.drift_floor_gib:
            w.append(
                Warning(
                    "drift",
                    f"{who} holds {m.memory_gib:.2f} GiB, {m.drift_pct:.0f}% over its planned "
                    f"{m.planned_gib:.2f} GiB: the plan underestimates it; run `residency calibrate` on "
                    "its startup log so the next plan uses measured figures",
                    m.name,
                )
            )
    if m.kv_cache_usage is not None and m.kv_cache_usage >= th.kv_high:
        w.append(
            Warning(
                "kv_high",
                f"{who} KV cache {m.kv_cache_usage:.0%} full: new requests wait and running ones may be "
                "preempted; give it more KV (gpu_memory_utilization / kv_cache_memory_bytes) or lower max_num_seqs",
                m.name,
            )
        )
    if m.requests_waiting and m.requests_waiting > 0 and (m.kv_cache_usage or 0) >= th.kv_high:
        w.append(Warning("queue", f"{who} has {m.requests_waiting:.0f} requests waiting", m.name))
    if m.state == "ready" and m.served_names and m.name not in m.served_names:
        w.append(
            Warning(
                "served_name",
                f"{who}: the server at {m.url} serves {', '.join(m.served_names)}, not {m.name!r} "
                "(another process on its port, or --served-model-name differs)",
                m.name,
                level="info",
            )
        )
    return w


def _stack_warnings(ledger: Ledger, th: Thresholds) -> list[Warning]:
    from residency.memory.versions import rules_for

    w: list[Warning] = []
    if ledger.proxy is not None and ledger.proxy.state != "ready":
        w.append(
            Warning(
                "proxy",
                f"LiteLLM proxy at {ledger.proxy.url} is {ledger.proxy.state} ({ledger.proxy.detail})",
            )
        )
    for pid, b in sorted(ledger.stray.items()):
        w.append(
            Warning(
                "stray_process",
                f"pid {pid} holds {_gib(b)} of GPU memory and is not one of this stack's models "
                "(a leftover server keeps memory the plan counts as free)",
            )
        )
    d = ledger.device
    h = d.host
    if d.unified and h is not None and h.total_bytes > 0:
        # the CPU backend sizes its KV from VLLM_CPU_KVCACHE_SPACE, not from free memory: GPUs only
        if d.reader != "host" and h.page_cache_bytes > th.page_cache_frac * h.total_bytes:
            old = not rules_for(ledger.vllm_version).uma_free_is_memavailable
            how = (
                f"vLLM {ledger.vllm_version} checks cudaMemGetInfo free, which counts page cache as used, at startup"
                if old
                else f"vLLM {ledger.vllm_version} counts it as free (MemAvailable), but CUDA allocations on unified "
                "memory can still fail before the kernel reclaims it"
            )
            w.append(
                Warning(
                    "page_cache",
                    f"page cache holds {_gib(h.page_cache_bytes)} of {_gib(h.total_bytes)} unified memory; {how}: "
                    "drop caches before starting another model (sync; echo 3 | sudo tee /proc/sys/vm/drop_caches)",
                    level="warn" if old else "info",
                )
            )
        if h.available_bytes < th.available_low_frac * h.total_bytes:
            w.append(
                Warning(
                    "available_low",
                    f"MemAvailable is {_gib(h.available_bytes)} of {_gib(h.total_bytes)}: the next model will not "
                    "start and running ones risk the OOM killer",
                )
            )
    if ledger.state_lost:
        w.append(
            Warning(
                "state_lost",
                "the state file `up` writes is gone; these models were found by the process tags `up` gave them: "
                + (
                    f"`residency down {ledger.spec}` stops them"
                    if ledger.spec
                    else "`residency down` stops them"
                ),
            )
        )
    if ledger.plan_note.startswith("no plan"):
        w.append(Warning("plan", ledger.plan_note, level="info"))
    return w
