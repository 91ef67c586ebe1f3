"""Plan output shared by the table and the SVG."""

from __future__ import annotations

from residency.planner.result import Plan


def footprint_segments(plan: Plan) -> list[tuple[str, float, int | None]]:
    """The device's memory as segments (label, GiB, model index or None): memory already used, each
    model that loads (a model refused by the free-memory check holds nothing), then what is left."""
    segs: list[tuple[str, float, int | None]] = []
    if plan.device.used_gib:
        segs.append(("used", plan.device.used_gib, None))
    for i, m in enumerate(plan.models):
        if m.verdict == "ok" or (m.error and m.error.kind != "free_memory"):
            segs.append((m.name, m.footprint_gib, i))
    taken = sum(s[1] for s in segs)
    segs.append(("free", max(0.0, plan.device.total_gib - taken), None))
    return segs
