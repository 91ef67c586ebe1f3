"""Render a verify Report: the models × checks matrix, the notes, the numbered fix list, or JSON."""

from __future__ import annotations

from typing import Any

from residency.verify.runner import Report

SCHEMA_VERSION = 1
_STYLE = {
    "pass": ("pass", "green"),
    "warn": ("warn", "yellow"),
    "fail": ("FAIL", "bold red"),
    "skip": ("skip", "dim"),
}


def to_json(report: Report) -> dict[str, Any]:
    """{"ok", "models": [{"name", "checks": [{"id","title","status","detail","fix", ...}]}], "fixes"}."""
    return {
        "schema": SCHEMA_VERSION,
        "ok": report.ok,
        "source": report.source,
        "seconds": round(report.seconds, 1),
        "models": [
            {
                "name": m.name,
                "direct_url": m.direct_url,
                "proxy_url": m.proxy_url,
                "checks": [
                    {
                        "id": c.id,
                        "title": c.title,
                        "status": c.status,
                        "detail": c.detail,
                        "fix": c.fix,
                        "required": c.required,
                        "hops": c.hops,
                        "seconds": c.seconds,
                    }
                    for c in m.checks
                ],
            }
            for m in report.models
        ],
        "fixes": report.fixes(),
    }


def render(report: Report, console) -> None:
    """Print the matrix (checks as rows, models as columns), the non-passing details and the fixes."""
    from rich.markup import escape
    from rich.table import Table

    fixes = report.fixes()
    fix_no = {(a, f["fix"]): f["n"] for f in fixes for a in f["applies_to"]}
    table = Table(title=f"residency verify: {escape(report.source)}", title_justify="left")
    table.add_column("check")
    table.add_column("")
    for m in report.models:
        table.add_column(escape(m.name), justify="center")
    ids = [c.id for c in report.models[0].checks] if report.models else []
    for i, cid in enumerate(ids):
        first = report.models[0].checks[i]
        cells = []
        for m in report.models:
            c = next((x for x in m.checks if x.id == cid), None)
            if c is None:
                cells.append("")
                continue
            label, style = _STYLE.get(c.status, (c.status, ""))
            n = fix_no.get((f"{m.name} {c.id}", c.fix)) if c.fix else None
            cells.append(f"[{style}]{label}[/]" + (f" [{n}]" if n else ""))
        req = "" if first.required else "[dim](info)[/]"
        table.add_row(f"{cid} {escape(first.title)}", req, *cells)
    console.print(table)
    for m in report.models:
        notable = [c for c in m.checks if c.status in ("fail", "warn")]
        if not notable:
            continue
        console.print(f"\n[bold]{escape(m.name)}[/]")
        for c in notable:
            label, style = _STYLE[c.status]
            console.print(f"  [{style}]{label}[/] {c.id} {escape(c.title)}: {escape(c.detail)}")
    skipped = {c.detail for m in report.models for c in m.checks if c.status == "skip"}
    if skipped:
        console.print("\n[dim]skipped: " + escape("; ".join(sorted(skipped))[:600]) + "[/]")
    if fixes:
        console.print("\n[bold]Fixes[/]")
        for f in fixes:
            where = ", ".join(f["applies_to"][:6]) + (" …" if len(f["applies_to"]) > 6 else "")
            console.print(f"  {f['n']}. {escape(f['fix'])}  [dim]({escape(where)})[/]")
    verdict = (
        "[green]OK: every required check passes[/]" if report.ok else "[red]NOT OK: a required check fails[/]"
    )
    console.print(f"\n{verdict} ({report.seconds:.0f}s)")
