"""The device bar of a plan as a small hand-written SVG."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from residency.fsutil import write_file
from residency.output import footprint_segments
from residency.planner.result import Plan

FILL = ["#2bb3c0", "#c04bb3", "#4bc06a", "#d8b530", "#4b6ec0", "#c04b4b"]


def plan_svg(plan: Plan, width: int = 720) -> str:
    total = plan.device.total_gib
    h, pad = 36, 10
    segs = [
        (
            "headroom" if lbl == "free" else lbl,
            g,
            FILL[i % len(FILL)] if i is not None else ("#888888" if lbl == "used" else "#e6e6e6"),
        )
        for lbl, g, i in footprint_segments(plan)
    ]
    x = float(pad)
    inner = width - 2 * pad
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 70}" font-family="sans-serif" font-size="12">',
        f'<text x="{pad}" y="16">{escape(plan.device.name)}: {total:.2f} GiB, vLLM {escape(plan.vllm_version)}</text>',
    ]
    for lbl, gib, color in segs:
        w = inner * gib / total
        parts.append(
            f'<rect x="{x:.1f}" y="24" width="{w:.1f}" height="{h}" fill="{color}"><title>{escape(lbl)}: {gib:.2f} GiB</title></rect>'
        )
        if w > 40:
            parts.append(f'<text x="{x + 4:.1f}" y="{24 + h / 2 + 4:.1f}">{escape(lbl)} {gib:.1f}</text>')
        x += w
    bx = pad + inner * plan.device.budget_gib / total
    parts.append(
        f'<line x1="{bx:.1f}" y1="20" x2="{bx:.1f}" y2="{24 + h + 4}" stroke="black" stroke-dasharray="3,2"/>'
    )
    parts.append(
        f'<text x="{pad}" y="{h + 46}">budget {plan.device.budget_gib:.2f} GiB (dashed); headroom {plan.headroom_gib:.2f} GiB; '
        f"{'fits' if plan.fits else 'does NOT fit'}</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_plan_svg(plan: Plan, path: str | Path) -> None:
    write_file(path, plan_svg(plan))
