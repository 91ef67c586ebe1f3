"""`residency plan` for a multi-host spec: the placement per host and GPU, refusals, the search's choices."""

from __future__ import annotations

from residency.planner.placement import FleetPlan


def fleet_table(fleet: FleetPlan):
    """A rich Table: one row per replica, grouped by host and GPU."""
    from rich.table import Table

    t = Table(
        title=f"fleet placement ({fleet.placement}), vLLM {fleet.vllm_version}; frac = planned fraction, "
        "min = the least that serves the model, conc = max concurrency at max_model_len, fp = footprint",
        title_justify="left",
    )
    for col, just in (
        ("host", "left"),
        ("gpu", "left"),
        ("replica", "left"),
        ("port", "right"),
        ("frac", "right"),
        ("min", "right"),
        ("KV GiB", "right"),
        ("conc", "right"),
        ("fp GiB", "right"),
        ("verdict", "left"),
    ):
        t.add_column(col, justify=just, no_wrap=col in ("host", "replica"))  # type: ignore[arg-type]
    by_id = {p.id: p for p in fleet.placements}
    for h in fleet.hosts:
        first_host = True
        for g in h.gpus:
            util = 0.0
            if not g.members:
                t.add_row(h.name if first_host else "", str(g.gpu), "[dim](free)[/dim]", *[""] * 7)
                first_host = False
                continue
            for mid in g.members:
                p = by_id.get(mid)
                if p is None:
                    continue
                shown_id = mid if len(p.gpus) == 1 else f"{mid} tp{len(p.gpus)}"
                verdict = "[green]ok[/green]" if p.verdict == "ok" else f"[red]{p.verdict}[/red]"
                t.add_row(
                    h.name if first_host else "",
                    str(g.gpu),
                    shown_id,
                    str(p.port),
                    f"{p.gpu_memory_utilization:.3f}",
                    f"{p.min_fraction:.3f}",
                    f"{p.kv_cache_gib:.2f}",
                    f"{p.max_concurrency:.2f}",
                    f"{p.footprint_gib:.2f}",
                    verdict,
                )
                util += p.gpu_memory_utilization
                first_host = False
        t.add_section()
    return t


def print_fleet(fleet: FleetPlan, *, explain: bool = False, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape

    c = console or Console()
    if console is None and c.width < 110:
        c = Console(width=110)  # the table needs ~110 columns; a narrower terminal wraps lines
    c.print(fleet_table(fleet))
    placed = len(fleet.placements)
    total = placed + len(fleet.unplaced)
    c.print(
        f"placed {placed} of {total} replicas on {sum(1 for h in fleet.hosts for g in h.gpus if g.members)} GPUs"
    )
    for u in fleet.unplaced:
        c.print(f"[red]unplaced[/red] {escape(u.reason)}\n  fix: {escape(u.fix)}")
    for w in fleet.warnings:
        c.print(f"[yellow]warning[/yellow] {escape(w)}")
    if explain:
        c.print("\n[bold]search[/bold] (largest replicas first)")
        for line in fleet.explain:
            c.print(f"  {escape(line)}")
    c.print("[green]fits[/green]" if fleet.fits else "[red]does not fit[/red]")


def run_fleet_plan(
    spec, *, json_out: bool = False, explain: bool = False, use_calibration: bool = True
) -> int:
    """`residency plan` on a multi-host spec: place, print (table or the fleet JSON contract), exit code."""
    from residency.planner.placement import place_fleet

    fleet = place_fleet(spec, explain=explain, use_calibration=use_calibration)
    if json_out:
        out = fleet.contract()
        if explain:
            out["explain"] = fleet.explain
        from residency.jsonout import dumps

        print(dumps(out))
    else:
        print_fleet(fleet, explain=explain)
    return 0 if fleet.fits else 1
