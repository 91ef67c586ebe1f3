"""G: LiteLLM's declared capability flags against what the checks measured (G1)."""

from __future__ import annotations

from residency.verify.checks.base import PASS, SKIP, WARN, ModelCtx, Outcome


def g1_capabilities(ctx: ModelCtx) -> Outcome:
    if "proxy" not in ctx.hops:
        return Outcome(SKIP, ctx.hop_skip.get("proxy", "no proxy"))
    entry = ctx.proxy_info()
    if entry is None:
        return Outcome(WARN, "no /model/info entry for this model", "check the key has access to /model/info")
    info = entry.get("model_info") or {}
    measured_tools = None
    outs = [ctx.memo.get(f"{c}.proxy") for c in ("T1", "T2")]
    outs = [o for o in outs if isinstance(o, Outcome) and o.status != SKIP]
    if outs:
        measured_tools = all(o.status in (PASS, WARN) for o in outs)
    notes, mismatch = [], []
    declared = info.get("supports_function_calling")
    if measured_tools is not None:
        notes.append(f"supports_function_calling={declared} vs measured {measured_tools}")
        # Declaring false for a broken model is not the fix (T1/T2 name it); flag only a wrong promise
        # or a working model that clients reading /model/info would not send tools to.
        if measured_tools and declared is not True:
            mismatch.append("supports_function_calling: true")
        elif not measured_tools and declared is True:
            mismatch.append("supports_function_calling: false (until T1/T2 pass)")
    r1 = ctx.memo.get("R1.proxy")
    if isinstance(r1, Outcome) and r1.status != SKIP:
        dr = info.get("supports_reasoning")
        meas = r1.status in (PASS, WARN)
        notes.append(f"supports_reasoning={dr} vs measured {meas}")
        if dr is not meas:
            mismatch.append(f"supports_reasoning: {str(meas).lower()}")
    if not notes:
        return Outcome(SKIP, "nothing measured to compare (T1/T2 not run)")
    if mismatch:
        return Outcome(
            WARN,
            "; ".join(notes),
            f"set in the LiteLLM config for {ctx.name}: model_info: {{{', '.join(mismatch)}}}",
        )
    return Outcome(PASS, "; ".join(notes))
