"""L and C: the served context length (L1), over-length prompts (L2), a concurrency burst (C1)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from residency.verify import prompts as P
from residency.verify.checks.base import (
    _CTX_ERR,
    FAIL,
    PASS,
    SKIP,
    WARN,
    ModelCtx,
    Outcome,
    _message,
)
from residency.verify.client import Hop, RequestFailed, chat, request, tokenize


def l1_context(ctx: ModelCtx) -> Outcome:
    notes, status, fix = [], PASS, None
    card = ctx.backend_card()
    served = card.get("max_model_len") if card else None
    spec = ctx.backend.max_model_len if ctx.backend and ctx.backend.known_config else None
    if served:
        notes.append(f"backend max_model_len={served}")
    if spec and served and spec != served:
        status, fix = (
            FAIL,
            f"the spec says max_model_len={spec} but the backend serves {served}: restart it with the spec's settings",
        )
        notes.append(f"spec says {spec}")
    if "proxy" in ctx.hops:
        info = (ctx.proxy_info() or {}).get("model_info") or {}
        declared = info.get("max_input_tokens") or info.get("max_tokens")
        limit = served or spec
        if not declared:
            status = WARN if status == PASS else status
            notes.append("proxy declares no max_input_tokens")
            fix = fix or (
                f"set `model_info.max_input_tokens: {limit}` for {ctx.name} in the LiteLLM config"
                if limit
                else None
            )
        else:
            notes.append(f"proxy declares {declared}")
            if limit and declared > limit:
                status = WARN if status == PASS else status
                fix = (
                    fix
                    or f"LiteLLM declares more than the backend serves: set `model_info.max_input_tokens: {limit}`"
                )
    if not notes:
        return Outcome(SKIP, "no backend /v1/models and no proxy model info")
    return Outcome(status, "; ".join(notes), fix)


def _overlength_messages(ctx: ModelCtx, limit: int) -> list[dict]:
    """A prompt of at least limit + 64 tokens, sized with /tokenize when the backend is reachable."""
    target = limit + 64
    words = target
    hop = ctx.hops.get("direct")
    if hop is not None:
        try:
            n = tokenize(hop, {"messages": P.user("hello " * 200)}).get("count") or 0
            per = max(n - 10, 1) / 200  # tokens per repetition (the template adds ~10)
            words = int(target / per) + 64
        except RequestFailed:
            words = 2 * target
    else:
        words = 2 * target
    return P.user("hello " * words)


def l2_overlength(ctx: ModelCtx, hop: Hop) -> Outcome:
    limit = ctx.max_model_len()
    if not limit:
        return Outcome(SKIP, "max_model_len unknown (no backend /v1/models, spec value or proxy model info)")
    msgs = ctx.memo.get("overlength") or _overlength_messages(ctx, limit)
    ctx.memo["overlength"] = msgs
    label = f"prompt > {limit} tokens"
    r = request(
        hop,
        "POST",
        f"{hop.base_url}/chat/completions",
        {"messages": msgs, "max_tokens": 16, "model": hop.model},
    )
    fix = "agents rely on a 400 context error to compress history: check the LiteLLM exception mapping / vLLM version"
    if r.status == 200:
        return Outcome(
            FAIL, f"{label} → 200 (silent truncation, or the server's max_model_len is not {limit})", fix
        )
    if not (r.status == 400 and _CTX_ERR.search(r.message)):
        return Outcome(FAIL, f"{label} → {r.status}: {r.message[:160]}", fix)
    notes = [f"{label} → 400 context error"]
    # Info only: a short prompt with max_tokens = max_model_len. vLLM <= 0.1x answers 400
    # ("'max_tokens' ... is too large"); vLLM 0.32 (measured on the CPU build) accepts it and caps
    # generation at the context end.
    r2 = request(hop, "POST", f"{hop.base_url}/chat/completions",
                 {"messages": P.user(P.PLAIN_PROMPT), "max_tokens": limit, "model": hop.model})  # fmt: skip
    if r2.status == 400 and _CTX_ERR.search(r2.message):
        notes.append(f"max_tokens={limit} → 400")
    elif r2.status == 200:
        notes.append(f"max_tokens={limit} → 200 (capped by the server)")
    else:
        return Outcome(
            WARN, "; ".join(notes) + f"; max_tokens={limit} → {r2.status}: {r2.message[:120]}", fix
        )
    return Outcome(PASS, "; ".join(notes))


def c1_burst(ctx: ModelCtx) -> Outcome:
    hop = ctx.hops.get("proxy") or ctx.hops.get("direct")
    if hop is None:
        return Outcome(SKIP, "no endpoint")
    be = ctx.backend
    seqs = be.max_num_seqs if be and be.max_num_seqs else None
    k = ctx.targets.concurrency or (min(seqs, 60) + 4 if seqs else 8)
    body = {"messages": P.user(P.PLAIN_PROMPT), "max_tokens": 8, "temperature": 0}

    def one(_: int) -> tuple[str, float]:
        t0 = time.monotonic()
        try:
            resp = chat(hop, body)
            ok = isinstance(_message(resp)[0].get("content"), str)
            return ("ok" if ok else "no content"), time.monotonic() - t0
        except RequestFailed as e:
            return (f"{e.status}" if e.status else e.kind), time.monotonic() - t0

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=k) as pool:
        results = list(pool.map(one, range(k)))
    wall = time.monotonic() - t0
    bad = [r for r, _ in results if r != "ok"]
    lat = sorted(t for _, t in results)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    detail = f"{k} concurrent via {hop.kind}" + (
        f" (max_num_seqs {seqs} + 4)" if seqs and not ctx.targets.concurrency else ""
    )
    detail += f": {k - len(bad)}/{k} ok in {wall:.1f}s, p95 {p95:.1f}s"
    if bad:
        kinds = sorted(set(bad))
        fix = "raise LiteLLM `request_timeout` or lower load; see the server log"
        if "429" in kinds:
            fix = "LiteLLM rpm/tpm/max_parallel_requests limit (key or deployment)"
        elif "timeout" in kinds:
            fix = "requests timed out: raise LiteLLM `request_timeout`/--timeout, or lower --max-num-seqs × context (KV preemption)"
        return Outcome(FAIL, detail + f"; failures: {', '.join(kinds)}", fix)
    return Outcome(PASS, detail)
