"""P: proxy and backend health (P1 liveliness, P2 inventory, P3 1-token generation, P4 metrics)."""

from __future__ import annotations

import time

from residency.verify import prompts as P
from residency.verify.checks.base import FAIL, PASS, SKIP, WARN, ModelCtx, Outcome, failure
from residency.verify.client import Hop, RequestFailed, chat, request


def p1_proxy(ctx: ModelCtx) -> Outcome:
    hop = ctx.hops.get("proxy")
    if hop is None:
        return Outcome(SKIP, ctx.hop_skip.get("proxy", "no proxy"))
    bad = []
    for path in ("/health/liveliness", "/health/readiness"):
        r = request(hop, "GET", hop.root + path, timeout=min(hop.timeout, 15), auth=False)
        if r.status != 200:
            bad.append(f"{path} → {r.status} {r.message[:120]}")
        elif isinstance(r.body, dict) and r.body.get("status") == "shutting_down":
            bad.append(f"{path} → shutting_down")
    if bad:
        return Outcome(
            FAIL, "; ".join(bad), "start/restart LiteLLM; check the DB/Redis settings readiness shows"
        )
    return Outcome(PASS, "liveliness and readiness 200")


def p2_inventory(ctx: ModelCtx) -> Outcome:
    notes: list[str] = []
    status = PASS
    fix = None
    hop = ctx.hops.get("proxy")
    if hop is not None:
        names = ctx.stack.get("proxy_models")
        if isinstance(names, RequestFailed):
            return failure(names, ctx, hop)
        if names is not None and ctx.name not in names:
            return Outcome(
                FAIL, f"proxy /v1/models does not list {ctx.name!r} (it lists {', '.join(names[:8]) or 'nothing'})",
                f"add a model_list entry with model_name: {ctx.name} to the LiteLLM config",
            )  # fmt: skip
        notes.append("proxy lists it")
        info = ctx.proxy_info()
        if info is not None:
            lm = str((info.get("litellm_params") or {}).get("model", ""))
            provider_id = lm.split("/", 1)[1] if "/" in lm else lm
            if lm.startswith("ollama"):
                status, fix = (
                    WARN,
                    "use the hosted_vllm/ (or openai/) prefix for vLLM, not ollama/ (LiteLLM #35711)",
                )
            be_hop = ctx.hops.get("direct")
            if be_hop is not None and provider_id and provider_id != be_hop.model:
                status = FAIL
                fix = f"set `litellm_params.model: hosted_vllm/{be_hop.model}` for {ctx.name} (the backend's id)"
                notes.append(f"proxy routes to {provider_id!r} but the backend serves {be_hop.model!r}")
    hop = ctx.hops.get("direct")
    if hop is not None:
        ctx.backend_card()
        err = ctx.memo.get("card_error")
        if err is not None:
            return failure(err, ctx, hop)
        ids = ctx.memo.get("backend_ids") or []
        if hop.model not in ids:
            return Outcome(
                FAIL, f"backend serves {ids} but not {hop.model!r}",
                f"start vLLM with `--served-model-name {hop.model}`",
            )  # fmt: skip
        notes.append(f"backend serves {hop.model!r}")
    if not notes:
        return Outcome(SKIP, "no proxy and no backend address")
    return Outcome(status, "; ".join(notes), fix)


def p3_generate(ctx: ModelCtx, hop: Hop) -> Outcome:
    notes = []
    if hop.kind == "direct":
        r = request(hop, "GET", hop.root + "/health", timeout=min(hop.timeout, 15))
        if r.status != 200:
            return Outcome(
                FAIL, f"/health → {r.status} {r.message[:120]}",
                "engine dead or starting: restart the vLLM server; check its log for EngineDeadError / CUDA errors",
            )  # fmt: skip
        notes.append("/health 200")
    t0 = time.monotonic()
    try:
        resp = chat(hop, {"messages": P.user(P.PLAIN_PROMPT), "max_tokens": 1, "temperature": 0})
    except RequestFailed as e:
        out = failure(e, ctx, hop)
        if e.kind == "timeout" and notes:
            out.detail += " while /health is 200 (wedged engine)"
        return out
    usage = resp.get("usage") or {}
    n = usage.get("completion_tokens")
    notes.append(f"1-token generation in {time.monotonic() - t0:.1f}s")
    if n not in (None, 0, 1):
        return Outcome(WARN, "; ".join(notes) + f"; but completion_tokens={n} with max_tokens=1")
    return Outcome(PASS, "; ".join(notes))


def p4_metrics(ctx: ModelCtx, hop: Hop) -> Outcome:
    r = request(hop, "GET", hop.root + "/metrics", timeout=min(hop.timeout, 15))
    if r.status != 200:
        return Outcome(
            WARN, f"/metrics → {r.status}", "metrics unavailable: status and watch need vLLM /metrics"
        )
    from prometheus_client.parser import text_string_to_metric_families

    try:
        fams = {
            f.name: f for f in text_string_to_metric_families(r.text if len(r.text) < 4000 else _full(hop))
        }
    except ValueError as e:
        return Outcome(WARN, f"/metrics is not Prometheus text: {e}")

    def val(name: str) -> float | None:
        f = fams.get(name)
        if not f:
            return None
        return sum(s.value for s in f.samples if s.name == name)

    running, waiting = val("vllm:num_requests_running"), val("vllm:num_requests_waiting")
    kv = val("vllm:kv_cache_usage_perc")
    if kv is None:
        kv = val("vllm:gpu_cache_usage_perc")  # vLLM < 0.11 name (deprecated by PR #18354)
    missing = [
        n
        for n, v in (
            ("num_requests_running", running),
            ("num_requests_waiting", waiting),
            ("kv_cache_usage_perc", kv),
        )
        if v is None
    ]
    if missing:
        return Outcome(WARN, f"missing metrics: {', '.join(missing)}")
    detail = f"running={running:g} waiting={waiting:g} kv_cache={kv:.0%}"
    if waiting and waiting > 0:
        return Outcome(WARN, detail + " (requests waiting at idle)")
    return Outcome(PASS, detail)


def _full(hop: Hop) -> str:
    r = hop.client().get(hop.root + "/metrics", headers=hop.headers())
    return r.text
