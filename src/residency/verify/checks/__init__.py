"""The checks. Ids and meanings follow ../shared/reference/toolcalls.md §7.

Each check is a small function. `scope` says how it runs:
  stack  once per run (P1), copied to every model;
  model  once per model (P2, L1, C1, G1);
  hop    once per hop, directly against the backend and through the proxy, then combined;
  direct the backend only (P4).
A check returns an Outcome or raises RequestFailed (turned into a fail with the reason).

One module per check family (base holds what they share); this package exports the table.
"""

from __future__ import annotations

from residency.verify.checks.agents import a1_context, a2_max_tokens, a3_hermes_stream
from residency.verify.checks.base import _RANK, FAIL, PASS, SKIP, WARN, Check, ModelCtx, Outcome, failure
from residency.verify.checks.capabilities import g1_capabilities
from residency.verify.checks.chat import m1_chat, m2_stream
from residency.verify.checks.health import p1_proxy, p2_inventory, p3_generate, p4_metrics
from residency.verify.checks.limits import c1_burst, l1_context, l2_overlength
from residency.verify.checks.reasoning import r1_separation, r2_toggle, r3_reasoning_tools
from residency.verify.checks.structured import j1_json_schema
from residency.verify.checks.tools import (
    t1_auto,
    t2_auto_stream,
    t3_required,
    t4_named,
    t5_no_spurious,
    t6_round_trip,
    t7_parallel,
    t8_agent,
    t9_edges,
)

__all__ = [
    "CHECKS",
    "CHECK_IDS",
    "FAIL",
    "PASS",
    "SKIP",
    "WARN",
    "Check",
    "ModelCtx",
    "Outcome",
    "combine",
    "failure",
    "refine",
]

CHECKS: tuple[Check, ...] = (
    Check("P1", "proxy alive/ready", True, "stack", p1_proxy),
    Check("P2", "model inventory", True, "model", p2_inventory),
    Check("P3", "health + 1-token generation", True, "hop", p3_generate),
    Check("P4", "metrics", False, "direct", p4_metrics),
    Check("M1", "plain chat", True, "hop", m1_chat),
    Check("M2", "plain chat, streaming", True, "hop", m2_stream),
    Check("T1", "tool call, auto (no tool_choice)", True, "hop", t1_auto),
    Check("T2", "tool call, auto, streaming", True, "hop", t2_auto_stream),
    Check("T3", "tool_choice required", True, "hop", t3_required),
    Check("T4", "named tool_choice", True, "hop", t4_named),
    Check("T5", "no spurious call on small talk", False, "hop", t5_no_spurious),
    Check("T6", "tool-result round trip", True, "hop", t6_round_trip),
    Check("T7", "parallel calls / parallel_tool_calls=false", False, "hop", t7_parallel),
    Check("T8", "agent-shaped request (20 tools, streaming)", True, "hop", t8_agent),
    Check("T9", "edge validation (empty tools, allowed_tools)", False, "hop", t9_edges),
    Check("R1", "reasoning kept out of content", False, "hop", r1_separation),
    Check("R2", "thinking toggle passthrough", False, "hop", r2_toggle),
    Check("R3", "reasoning + tools", False, "hop", r3_reasoning_tools),
    Check("J1", "response_format json_schema enforced", False, "hop", j1_json_schema),
    Check("L1", "served context length consistent", False, "model", l1_context),
    Check("L2", "over-length prompt rejected with 400", True, "hop", l2_overlength),
    Check("C1", "concurrency burst completes", True, "model", c1_burst),
    Check("G1", "LiteLLM capability flags match", False, "model", g1_capabilities),
    # what the spec's agent clients need (agents: section): skipped without one
    Check("A1", "context window >= agent clients' minimum", True, "model", a1_context),
    Check("A2", "agent clients' max_tokens accepted", True, "hop", a2_max_tokens),
    Check("A3", "Hermes-shaped streamed tool call", True, "hop", a3_hermes_stream),
)
CHECK_IDS = tuple(c.id for c in CHECKS)


def combine(ctx: ModelCtx, check: Check, per_hop: dict[str, Outcome]) -> Outcome:
    """Merge direct and proxied outcomes into one cell, saying whose fault a failure is."""
    if len(per_hop) == 1:
        kind, o = next(iter(per_hop.items()))
        other = "proxy" if kind == "direct" else "direct"
        if check.scope == "hop" and other in ctx.hop_skip and o.status != SKIP:
            return Outcome(o.status, f"{kind}: {o.detail}", o.fix, o.data)
        return o
    d, p = per_hop.get("direct"), per_hop.get("proxy")
    assert d is not None and p is not None
    status = max((d, p), key=lambda o: _RANK[o.status]).status
    if d.status == p.status and (d.detail == p.detail or (d.status == FAIL and d.fix == p.fix)):
        detail = f"direct+proxy: {d.detail}"
    else:
        detail = f"direct: {d.status} {d.detail} | proxy: {p.status} {p.detail}"
    fix = None
    if d.status == FAIL:
        fix = d.fix
        if p.status == FAIL and fix:
            fix = f"backend fault (fails directly too): {fix}"
    elif p.status == FAIL:
        how = "passes" if d.status == PASS else "only warns" if d.status == WARN else "is skipped"
        fix = f"proxy fault (direct to vLLM {how}): {p.fix or 'check the LiteLLM config and log'}"
    else:
        fix = d.fix or p.fix
    return Outcome(status, detail, fix, {**p.data, **d.data})


def refine(ctx: ModelCtx, results: dict[str, Outcome]) -> None:
    """Cross-check hints once every check has run (e.g. auto fails in prose but required works)."""
    t3 = results.get("T3")
    for cid in ("T1", "T2", "T8"):
        o = results.get(cid)
        if o is None or o.status != FAIL or not o.data.get("prose"):
            continue
        if t3 is not None and t3.status in (PASS, WARN):
            o.fix = (
                "the model can call tools (tool_choice=required works) but auto mode does not trigger: "
                + (o.fix or "check the chat template renders tools and the system prompt")
            )
