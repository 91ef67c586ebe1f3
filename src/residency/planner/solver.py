"""Choose gpu_memory_utilization for the models that do not state one.

Each chosen model must serve its requirement: `min_concurrency` requests at max_model_len, else
`max_num_seqs` of them (vLLM's "Maximum concurrency" >= that). The sum of all fractions stays
within the device budget, and every later process must still pass vLLM's startup free-memory
check after the earlier ones' footprints. Slack goes by `priority` (else in proportion to the
minimum fractions). Fractions are on a 0.01 grid: minimums round up (the requirement holds),
slack rounds down (never over budget).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from residency.memory.engine import Startup
from residency.spec import ModelSpec

STEP = 0.01
T = TypeVar("T")


@dataclass
class SolveResult:
    fractions: list[float]
    text: str
    ok: bool
    min_fractions: dict[int, float]


def search_min_fraction(
    probe: Callable[[float], T],
    ok: Callable[[T], bool],
    lo: float = STEP,
    hi: float = 1.0,
    hint: float | None = None,
) -> tuple[float | None, T]:
    """THE minimum-fraction search (the solver's and placement's): the smallest fraction on the 0.01 grid in
    [lo, hi] whose probe is `ok`, assuming ok is monotone in the fraction (KV grows with it).

    A `hint` (placement extrapolates one from a single probe) is tried first with its neighbour below: two
    probes when it is right; otherwise a binary search in the bracket the hint leaves. Without a hint, a
    binary search (~7 probes over 0.01-1.0). Returns (None, probe at hi) when even hi is not ok."""
    seen: dict[int, tuple[bool, T]] = {}

    def test(k: int) -> tuple[bool, T]:
        if k not in seen:
            r = probe(round(k * STEP, 2))
            seen[k] = (ok(r), r)
        return seen[k]

    a, b = round(lo / STEP), round(hi / STEP)
    best: int | None = None
    if hint is not None:
        h = min(max(math.ceil(round(hint / STEP, 6)), a), b)
        if test(h)[0]:
            best, b = h, h - 1
            if h == a or not test(h - 1)[0]:
                return round(h * STEP, 2), seen[h][1]
        else:
            a = h + 1
    if best is None:
        ok_b, r_b = test(b)
        if not ok_b:
            return None, r_b
        best, b = b, b - 1
    while a <= b:
        mid = (a + b) // 2
        if test(mid)[0]:
            best, b = mid, mid - 1
        else:
            a = mid + 1
    return round(best * STEP, 2), seen[best][1]


def requirement(m: ModelSpec) -> float:
    """Requests at max_model_len the KV pool must hold, as the planner's solver counts them:
    min_concurrency, else the max_num_seqs the spec sets, else one. vLLM's own default max_num_seqs
    (256 or 1024 by device memory, docs/vllm-versions.md rows V10-batch-defaults and V28-big-tier) is a
    scheduler cap, not a demand: 1,024 full-length requests is
    a pool no single GPU holds, so a spec silent on both asks for one full-length request (the solver
    then spreads the slack)."""
    return float(m.min_concurrency or m.max_num_seqs or 1)


def min_fraction(
    run: Callable[[float], Startup], target_concurrency: float | None, lo: float = STEP, hi: float = 1.0
) -> tuple[float | None, Startup | None]:
    """Smallest fraction at which the process loads (free check ignored: `run` sees unlimited free memory)
    and, when given, reaches target_concurrency."""

    def ok(st: Startup) -> bool:
        if st.error_kind is not None:
            return False
        return target_concurrency is None or st.max_concurrency + 1e-9 >= target_concurrency

    return search_min_fraction(run, ok, lo, hi)


def solve(
    fixed: list[float | None],
    names: list[str],
    priorities: list[float | None],
    targets: list[float],
    runs: list[Callable[[float], Startup]],
    check_sequence: Callable[[list[float]], int | None],
    budget: float,
) -> SolveResult:
    """`runs[i](u)` simulates model i alone at fraction u; `check_sequence(fracs)` returns the index of
    the first model that fails in launch order (None if all load)."""
    n = len(fixed)
    free_idx = [i for i in range(n) if fixed[i] is None]
    mins: dict[int, float] = {}
    shown: dict[int, float] = {}  # what a model that misses its target is shown at
    problems: list[str] = []
    for i in free_idx:
        u, st = min_fraction(runs[i], targets[i])
        if u is None:
            # the smallest fraction that loads at all, else the whole budget: the verdict then shows the
            # real failure, never a 0.00 that vLLM would refuse for a reason the plan does not name
            loads, _ = min_fraction(runs[i], None)
            shown[i] = loads if loads is not None else round(budget, 2)
            why = (
                st.error_kind
                if st is not None and st.error_kind
                else "its concurrency stays below the target"
            )
            if st is not None and st.error_kind is None:
                why = (
                    f"even 1.0 gives {st.max_concurrency:.2f}x concurrency, below the {targets[i]:g} required"
                )
            problems.append(f"{names[i]}: cannot serve {targets[i]:g} requests at any fraction ({why})")
        else:
            mins[i] = u
    if problems:
        return SolveResult(
            [f if f is not None else mins.get(i, shown.get(i, budget)) for i, f in enumerate(fixed)],
            "; ".join(problems),
            False,
            mins,
        )
    fixed_sum = sum(f for f in fixed if f is not None)
    need = fixed_sum + sum(mins.values())
    if need > budget + 1e-9:
        parts = ", ".join(f"{names[i]} {mins[i]:.2f}" for i in free_idx)
        fx = f" + fixed {fixed_sum:.2f}" if fixed_sum else ""
        text = (
            f"budget: the minimum fractions ({parts}{fx}) sum to {need:.2f}, over the budget {budget:.2f} by "
            f"{need - budget:.2f}; lower max_model_len/max_num_seqs, raise device.budget, or drop a model"
        )
        return SolveResult([f if f is not None else mins[i] for i, f in enumerate(fixed)], text, False, mins)
    slack = budget - need
    weights: dict[int, float] = {}
    if any(priorities[i] is not None for i in free_idx):
        weights = {i: (priorities[i] or 0.0) for i in free_idx}
    else:
        weights = {i: mins[i] for i in free_idx}
    wsum = sum(weights.values()) or 1.0
    steps = int(slack / STEP + 1e-9)  # whole 0.01 steps of slack (never over budget)
    share = {i: steps * weights[i] / wsum for i in free_idx}
    extra = {i: int(share[i] + 1e-9) for i in free_idx}
    for i in sorted(free_idx, key=lambda i: (-(share[i] - extra[i]), -weights[i], i))[
        : steps - sum(extra.values())
    ]:
        extra[i] += 1  # largest remainders get the steps rounding left over

    def fracs() -> list[float]:
        return [f if f is not None else round(mins[i] + extra[i] * STEP, 2) for i, f in enumerate(fixed)]

    # the free-memory check of later processes: take slack back (largest extra first) until all load
    bad = check_sequence(fracs())
    guard = 0
    while bad is not None and guard < 10000:
        guard += 1
        cands = [i for i in free_idx if extra[i] > 0]
        if not cands:
            break
        j = max(cands, key=lambda i: (extra[i], -i))
        extra[j] -= 1
        bad = check_sequence(fracs())
    out = fracs()
    chosen = ", ".join(f"{names[i]} {out[i]:.2f} (min {mins[i]:.2f})" for i in free_idx)
    if bad is not None:
        text = (
            f"free memory: even at the minimum fractions ({chosen}) {names[bad]} fails its check in launch order; "
            "earlier processes' footprints (CUDA context, graphs outside the budget, host RSS) leave too little"
        )
        return SolveResult(out, text, False, mins)
    how = (
        "by priority" if any(priorities[i] is not None for i in free_idx) else "in proportion to the minimums"
    )
    text = f"chose {chosen}; sum {sum(out):.2f} of budget {budget:.2f}, slack given {how}"
    return SolveResult(out, text, True, mins)
