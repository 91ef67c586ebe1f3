"""`residency plan` as a rich table: per model figures, a bar of the device, launch order, fixes."""

from __future__ import annotations

from residency.output import footprint_segments
from residency.planner.result import Plan

COLORS = ["cyan", "magenta", "green", "yellow", "blue", "red"]


def device_bar(plan: Plan, width: int = 60) -> list[tuple[str, int, str]]:
    """Segments (label, cells, color) of one GPU: used, each model's footprint, headroom."""
    total = plan.device.total_gib
    out = []
    for lbl, g, i in footprint_segments(plan):
        c = COLORS[i % len(COLORS)] if i is not None else ("grey50" if lbl == "used" else "grey23")
        out.append((lbl, max(1, round(g / total * width)) if g > 0 else 0, c))
    return out


def print_plan(plan: Plan, explain: bool = False) -> None:
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    con = Console() if sys.stdout.isatty() else Console(width=140)
    d = plan.device
    con.print(
        f"[bold]{d.name}[/] x{d.count}: {d.total_gib:.2f} GiB{' unified' if d.unified else ''}, "
        f"{d.used_gib:.2f} GiB used before the stack, budget {d.budget_gib:.2f} GiB - vLLM {plan.vllm_version}"
        + (
            f"\n{d.start} start, host reserve {d.host_reserve_gib:.2f} GiB, total from {escape(d.total_source)}"
            if d.start
            else ""
        )
    )
    t = Table(
        show_lines=False,
        caption=(
            "GiB per GPU; other = non-torch"
            + (" + unified-memory host overhead" if d.unified else "")
            + "; conc = max concurrency at max_model_len"
        )
        + ("; KV cold..warm on unified memory" if d.unified else ""),
    )
    for col, j in [
        ("model", "left"),
        ("frac", "right"),
        ("weights", "right"),
        ("act", "right"),
        ("graphs", "right"),
        ("other", "right"),
        ("KV GiB", "right"),
        ("KV tokens", "right"),
        ("conc", "right"),
        ("footprint", "right"),
        ("free@start", "right"),
        ("verdict", "left"),
    ]:
        t.add_column(col, justify=j)  # type: ignore[arg-type]
    for i, m in enumerate(plan.models):
        frac = f"{m.gpu_memory_utilization:.2f}" + ("*" if m.chosen_by_solver else "")
        if m.verdict == "ok":
            verdict = Text("ok", style="green")
        elif m.verdict == "at_risk":
            verdict = Text("AT RISK", style="bold yellow")
        else:
            verdict = Text(f"FAIL {m.error.kind if m.error else ''}", style="bold red")
        kv = f"{m.kv_cache_gib:.2f}"
        if m.kv_cache_gib_cold is not None and m.kv_cache_gib_warm is not None:
            if abs(m.kv_cache_gib_cold - m.kv_cache_gib_warm) >= 0.005:
                kv = f"{m.kv_cache_gib_cold:.2f}..{m.kv_cache_gib_warm:.2f}"
        graphs = f"{m.cudagraph_gib:.2f}" + ("" if m.cudagraph_in_budget else " out")
        t.add_row(
            Text(m.name + (" (cal)" if m.calibrated else ""), style=COLORS[i % len(COLORS)]),
            frac,
            f"{m.weights_gib:.2f}",
            f"{m.activation_gib:.2f}",
            graphs,
            f"{m.non_torch_gib:.2f}",
            kv,
            f"{m.kv_cache_tokens:,}",
            f"{m.max_concurrency:.2f}x",
            f"{m.footprint_gib:.2f}",
            f"{m.free_at_start_gib:.2f}",
            verdict,
        )
    con.print(t)
    bar = Text()
    for _lbl, cells, color in device_bar(plan):
        if cells:
            bar.append("█" * cells, style=color)
    con.print(bar)
    legend = Text()
    for lbl, _cells, color in device_bar(plan):
        legend.append("■ ", style=color)
        legend.append(lbl + "  ")
    legend.append(f"headroom {plan.headroom_gib:.2f} GiB")
    con.print(legend)
    con.print(
        f"fractions sum {plan.utilization_sum:.2f} (budget {d.budget_gib / d.total_gib:.2f}); * = chosen by the solver"
    )
    con.print("launch order: " + " -> ".join(plan.launch_order))
    if plan.solver:
        con.print(f"solver: {plan.solver}")
    n = 0
    for m in plan.models:
        if m.error:
            n += 1
            from residency.memory.messages import PREDICTED_TEXT

            who = "at risk: on some boxes vLLM says" if m.error.kind == "at_risk" else "vLLM says"
            if m.error.kind in PREDICTED_TEXT:
                who = {"overcommit": "overcommit", "agent_context": "agent clients"}.get(m.error.kind, "predicted")
            con.print(f"[bold red]{n}. {m.name}[/]: {who}: {m.error.message}")
            con.print(f"   means: {m.error.meaning}")
            con.print(f"   [bold]fix[/]: {m.error.fix}")
    for w in plan.warnings:
        if plan.solver and w.startswith("solver: ") and plan.solver.startswith(w[len("solver: ") :]):
            continue  # printed just above as the solver line
        con.print(f"[yellow]warning[/]: {w}")
    if explain:
        if d.host_reserve_gib:
            con.print(
                f"host reserve {d.host_reserve_gib:.2f} GiB stays free beside all footprints and used_gib: a Spark "
                "froze near 113-114 GiB used of 121.69 (unified-memory.md §4); set device.host_reserve_gib to change it"
            )
        for m in plan.models:
            con.print(
                f"[bold]{m.name}[/] ({m.model}): max_model_len {m.max_model_len}, max_num_seqs {m.max_num_seqs}, "
                f"max_num_batched_tokens {m.max_num_batched_tokens}, block {m.block_size}, context {m.context_gib:.2f} GiB, "
                f"host overhead {m.host_overhead_gib:.2f} GiB"
            )
            for note in m.notes:
                con.print(f"  - {note}")
