"""Rich rendering of a Ledger (the CLI chooses between this, --json and --watch)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from residency.units import GiB

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from residency.status.ledger import Ledger

_STATE_STYLE = {"ready": "green", "starting": "yellow", "down": "bold red"}


def _g(b: float | None, unit: str = "") -> str:
    return "-" if b is None else f"{b / GiB:.2f}{unit}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _model_table(ledger: Ledger) -> Table:
    from rich import box
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    d = ledger.device
    mem_head = "RSS" if d.reader == "host" else "GPU mem"
    t = Table(
        title=f"residency status  {escape(ledger.spec)}  (vLLM {ledger.vllm_version}, {time.strftime('%H:%M:%S', time.localtime(ledger.taken_at))})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for col, just in (
        ("model", "left"),
        ("state", "left"),
        ("pid", "right"),
        (mem_head, "right"),
        ("plan", "right"),
        ("drift", "right"),
        ("KV", "right"),
        ("run/wait", "right"),
        ("gen", "right"),
    ):
        t.add_column(
            col,
            justify=just,  # type: ignore[arg-type]
            no_wrap=col != "model",
            min_width=min(
                24,
                max(
                    5,
                    *(
                        len(m.name) + (3 if m.replica else 0) + len(str(m.url or "")) - 15
                        for m in ledger.models
                    ),
                ),
            )
            if col == "model"
            else None,
        )
    for m in ledger.models:
        name = m.name if m.replica == 0 else f"{m.name}#{m.replica}"
        drift = "-" if m.drift_pct is None else f"{m.drift_pct:+.0f}%"
        kv = "-" if m.kv_cache_usage is None else f"{m.kv_cache_usage:.1%}"
        rw = "-" if m.requests_running is None else f"{_num(m.requests_running)}/{_num(m.requests_waiting)}"
        where = (m.url or "").removeprefix("http://").removeprefix("127.0.0.1")
        if m.container:
            where += f" {m.container}"
        label = Text(name)
        if where:
            label.append(f" {where}", style="dim")
        t.add_row(
            label,
            Text("busy", style="green")
            if m.detail.startswith("busy")
            else Text(m.state, style=_STATE_STYLE.get(m.state, "")),
            "-" if m.pid is None else str(m.pid),
            _g(m.memory_bytes, "G"),
            "-" if m.planned_gib is None else f"{m.planned_gib:.2f}G",
            drift,
            kv,
            rw,
            _num(m.generation_tokens_total),
        )
    return t


def render_ledger(ledger: Ledger) -> RenderableType:
    """The status view: the models table, then the device, the plan, the proxy and the warnings."""
    from rich.console import Group
    from rich.text import Text

    d = ledger.device
    lines: list[RenderableType] = [_model_table(ledger)]
    for dv in d.devices:
        if d.reader == "host":
            continue
        if dv.total_bytes is None:
            lines.append(Text(f"GPU {dv.index} {dv.name}: memory totals N/A (per-process figures above)"))
        else:
            lines.append(
                Text(
                    f"GPU {dv.index} {dv.name}: total {_g(dv.total_bytes)} GiB, used {_g(dv.used_bytes)}, free {_g(dv.free_bytes)}"
                )
            )
    if d.host is not None:
        h = d.host
        label = "unified memory" if d.unified else "host memory"
        lines.append(
            Text(
                f"{label}: total {_g(h.total_bytes)} GiB, MemAvailable {_g(h.available_bytes)}, "
                f"MemFree {_g(h.free_bytes)}, page cache {_g(h.page_cache_bytes)}"
            )
        )
    plan_bits = ledger.plan_note
    if d.planned_total_gib is not None:
        plan_bits += f", planned total {d.planned_total_gib:.2f} GiB"
    lines.append(Text(plan_bits, style="dim"))
    if ledger.proxy is not None:
        p = ledger.proxy
        lines.append(
            Text.assemble(
                ("proxy ", ""), (p.state, _STATE_STYLE.get(p.state, "yellow")), f"  {p.url}  ({p.detail})"
            )
        )
    for w in ledger.warnings:
        style = "yellow" if w.level == "warn" else "dim"
        lines.append(Text(f"{'!' if w.level == 'warn' else 'i'} {w.message}", style=style))
    return Group(*lines)
