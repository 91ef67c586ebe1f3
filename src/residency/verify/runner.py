"""Run the checks per model, directly against each backend and through the proxy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from residency.errors import ResidencyError, SpecError
from residency.verify.checks import (
    CHECK_IDS,
    CHECKS,
    FAIL,
    PASS,
    SKIP,
    Check,
    ModelCtx,
    Outcome,
    combine,
    failure,
    refine,
)
from residency.verify.client import Hop, RequestFailed, get_json, request
from residency.verify.redact import Redactor
from residency.verify.targets import Backend, ModelTarget, Targets, normalize_url

Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class CheckResult:
    id: str
    title: str
    required: bool
    status: str
    detail: str
    fix: str | None = None
    hops: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-hop status/detail/fix
    seconds: float = 0.0


@dataclass
class ModelReport:
    name: str
    checks: list[CheckResult]
    direct_url: str | None = None
    proxy_url: str | None = None


@dataclass
class Report:
    models: list[ModelReport]
    source: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no required check failed (warn and skip do not fail a run)."""
        return all(c.status != FAIL for m in self.models for c in m.checks if c.required)

    def fixes(self) -> list[dict[str, Any]]:
        """Numbered, de-duplicated fixes; each says which model/check needs it."""
        out: list[dict[str, Any]] = []
        index: dict[str, dict[str, Any]] = {}
        for m in self.models:
            for c in m.checks:
                if c.status in (FAIL, "warn") and c.fix:
                    entry = index.get(c.fix)
                    if entry is None:
                        entry = {"n": len(out) + 1, "fix": c.fix, "applies_to": [], "severity": c.status}
                        index[c.fix] = entry
                        out.append(entry)
                    entry["applies_to"].append(f"{m.name} {c.id}")
                    if c.status == FAIL:
                        entry["severity"] = FAIL
        return out


def select_checks(only: str | list[str] | None = None, skip: str | list[str] | None = None) -> list[Check]:
    def ids(v: str | list[str] | None, flag: str) -> set[str]:
        if not v:
            return set()
        items = v if isinstance(v, list) else [v]
        got = {x.strip().upper() for item in items for x in item.split(",") if x.strip()}
        bad = got - set(CHECK_IDS)
        if bad:
            raise SpecError(
                flag, f"unknown check id(s): {', '.join(sorted(bad))}", f"use ids from {', '.join(CHECK_IDS)}"
            )
        return got

    o, s = ids(only, "--only"), ids(skip, "--skip")
    return [c for c in CHECKS if (not o or c.id in o) and c.id not in s]


def _hop(kind: str, url: str, model: str, key: str | None, timeout: float, redact: Redactor, http) -> Hop:
    return Hop(kind, url, model, key, timeout, redact, http)


def discover(targets: Targets, http, redact: Redactor, timeout: float) -> dict[str, Any]:
    """Find out what is at the URLs: proxy or bare vLLM, which models, backend addresses.

    Mutates `targets` (models, backends, proxy_url) and returns shared facts for the checks.
    """
    stack: dict[str, Any] = {}
    probe = Hop("proxy", targets.proxy_url or "", "", targets.key, min(timeout, 15), redact, http)
    if targets.url_mode and targets.proxy_url:
        is_proxy = False
        try:
            r = request(probe, "GET", probe.root + "/health/liveliness", auth=False)
            is_proxy = r.status == 200
        except RequestFailed as e:
            stack["url_error"] = e
        if not is_proxy:
            base = targets.proxy_url
            targets.proxy_url = None
            targets.proxy_skip_reason = "bare vLLM server at --url (no LiteLLM proxy): proxy checks skipped"
            ids: list[str] = []
            cards: dict[str, dict] = {}
            try:
                data = get_json(probe, f"{base}/models")
                cards = {c["id"]: c for c in data.get("data", []) if isinstance(c, dict) and "id" in c}
                ids = list(cards)
            except RequestFailed as e:
                stack["url_error"] = e
            if not targets.models:
                if not ids:
                    err = stack.get("url_error")
                    raise ResidencyError(
                        f"cannot list models at {base}: {redact(err.message) if err else 'no models'} "
                        "(is the server up? pass --model NAME to run the checks anyway)"
                    )
                targets.models = [ModelTarget(i) for i in ids]
            for m in targets.models:
                if m.backend is None:
                    m.backend = Backend(base, served_name=m.name)
                card = cards.get(m.backend.served_name or m.name)
                if card and isinstance(card.get("max_model_len"), int):
                    m.backend.max_model_len = m.backend.max_model_len or card["max_model_len"]
            return stack
    if not targets.proxy_url:
        return stack
    try:
        data = get_json(probe, f"{targets.proxy_url}/models")
        stack["proxy_models"] = [c.get("id") for c in data.get("data", []) if isinstance(c, dict)]
    except RequestFailed as e:
        stack["proxy_models"] = e
    for path in ("/model/info", "/v1/model/info"):
        try:
            data = get_json(probe, probe.root + path)
            stack["model_info"] = data.get("data") if isinstance(data, dict) else None
            break
        except RequestFailed:
            continue
    if targets.url_mode and not targets.models:
        names = stack["proxy_models"]
        if isinstance(names, RequestFailed):
            err = names
            raise ResidencyError(
                f"cannot list the proxy's models: {redact(err)} (check --key, or pass --model NAME)"
            )
        targets.models = [ModelTarget(n) for n in names if n]
    # Backends the proxy routes to, when not given: LiteLLM shows api_base in /model/info.
    infos = stack.get("model_info") if isinstance(stack.get("model_info"), list) else []
    for m in targets.models:
        entry = next((e for e in infos if isinstance(e, dict) and e.get("model_name") == m.name), None)
        lp = (entry or {}).get("litellm_params") or {}
        model_id = str(lp.get("model", ""))
        served = model_id.split("/", 1)[1] if "/" in model_id else None
        if m.backend is None and isinstance(lp.get("api_base"), str) and lp["api_base"].startswith("http"):
            try:
                m.backend = Backend(normalize_url(lp["api_base"]), served_name=served)
                m.direct_skip_reason = None
            except SpecError:
                pass
        elif m.backend is not None and m.backend.served_name is None and served:
            m.backend.served_name = served
    return stack


def _served_name(be: Backend, hop_probe: Hop) -> str | None:
    """The id the backend serves: given, else its /v1/models (one model per vLLM server)."""
    try:
        data = get_json(hop_probe, f"{be.base_url}/models")
        ids = [c.get("id") for c in data.get("data", []) if isinstance(c, dict)]
    except RequestFailed:
        return be.served_name
    if be.served_name in ids or not ids:
        return be.served_name
    return be.served_name if be.served_name and len(ids) != 1 else ids[0]


def _run_with_budget(fn: Callable[[], Outcome], budget: float) -> Outcome:
    """Run one check in a daemon thread; a check that overruns its budget fails, the run goes on."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["out"] = fn()
        except BaseException as e:  # noqa: BLE001 - a check must never crash the run
            box["err"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(budget)
    if t.is_alive():
        return Outcome(
            FAIL,
            f"check timed out after {budget:.0f}s",
            "the server is too slow or stuck: check its log or raise --timeout",
        )
    if "err" in box:
        raise box["err"]
    return box["out"]


def run_verify(
    targets: Targets,
    checks: list[Check] | None = None,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Report:
    """Run `checks` (default all) for every model in `targets` and return the report."""
    import httpx

    checks = list(CHECKS) if checks is None else checks
    redact = Redactor(targets.secrets)
    say = progress or (lambda ev, data: None)
    t_start = time.monotonic()
    from residency.deadline import deadline_client

    # every request (discovery too) under a total deadline of `timeout`, not only per-read timeouts
    with deadline_client(timeout, httpx.Limits(max_connections=128)) as http:
        stack = discover(targets, http, redact, timeout)
        probe = Hop("direct", "", "", None, min(timeout, 15), redact, http)
        reports: list[ModelReport] = []
        say("start", {"models": [m.name for m in targets.models], "checks": [c.id for c in checks]})
        for mt in targets.models:
            hops: dict[str, Hop] = {}
            hop_skip: dict[str, str] = {}
            if mt.backend is not None:
                served = _served_name(mt.backend, probe) or mt.name
                mt.backend.served_name = served
                hops["direct"] = _hop("direct", mt.backend.base_url, served, None, timeout, redact, http)
            else:
                hop_skip["direct"] = (
                    mt.direct_skip_reason or "backend address unknown (pass --direct NAME=URL)"
                )
            if targets.proxy_url:
                hops["proxy"] = _hop("proxy", targets.proxy_url, mt.name, targets.key, timeout, redact, http)
            else:
                hop_skip["proxy"] = targets.proxy_skip_reason or "no proxy"
            ctx = ModelCtx(mt, targets, hops, hop_skip, redact, timeout, stack)
            results = _run_model(ctx, checks, timeout, say)
            _apply_refine(ctx, results)
            reports.append(
                ModelReport(
                    mt.name,
                    results,
                    hops["direct"].base_url if "direct" in hops else None,
                    hops["proxy"].base_url if "proxy" in hops else None,
                )
            )
    return Report(reports, redact(targets.source), time.monotonic() - t_start)


def _apply_refine(ctx: ModelCtx, results: list[CheckResult]) -> None:
    outs = {r.id: Outcome(r.status, r.detail, r.fix, ctx.memo.get(f"{r.id}.data", {})) for r in results}
    refine(ctx, outs)
    for r in results:
        r.fix = ctx.redact(outs[r.id].fix) if outs[r.id].fix else None


def _run_model(ctx: ModelCtx, checks: list[Check], timeout: float, say: Progress) -> list[CheckResult]:
    results: list[CheckResult] = []
    budget = timeout * 4 + 10
    for check in checks:
        say("check", {"model": ctx.name, "id": check.id, "title": check.title})
        t0 = time.monotonic()
        per_hop: dict[str, Outcome] = {}
        if check.scope == "stack":
            if check.id not in ctx.stack.setdefault("_stack_results", {}):
                ctx.stack["_stack_results"][check.id] = _safe(ctx, check, None, budget)
            out = ctx.stack["_stack_results"][check.id]
        elif check.scope == "model":
            out = _safe(ctx, check, None, budget)
        else:
            kinds = ["direct"] if check.scope == "direct" else ["direct", "proxy"]
            for kind in kinds:
                hop = ctx.hops.get(kind)
                if hop is None:
                    continue
                o = _safe(ctx, check, hop, budget)
                ctx.memo[f"{check.id}.{kind}"] = o
                per_hop[kind] = o
            if not per_hop:
                reasons = "; ".join(f"{k}: {ctx.hop_skip[k]}" for k in kinds if k in ctx.hop_skip)
                out = Outcome(SKIP, reasons or "no endpoint")
            else:
                out = combine(ctx, check, per_hop)
        ctx.memo[f"{check.id}.data"] = out.data
        r = CheckResult(
            check.id,
            check.title,
            check.required,
            out.status,
            ctx.redact(out.detail),
            ctx.redact(out.fix) if out.fix else None,
            {
                k: {
                    "status": o.status,
                    "detail": ctx.redact(o.detail),
                    "fix": ctx.redact(o.fix) if o.fix else None,
                }
                for k, o in per_hop.items()
            },
            round(time.monotonic() - t0, 2),
        )
        results.append(r)
        say("done", {"model": ctx.name, "id": check.id, "status": r.status})
    return results


def _safe(ctx: ModelCtx, check: Check, hop: Hop | None, budget: float) -> Outcome:
    def call() -> Outcome:
        return check.fn(ctx, hop) if hop is not None else check.fn(ctx)

    try:
        return _run_with_budget(call, budget)
    except RequestFailed as e:
        return failure(e, ctx, hop)
    except Exception as e:  # noqa: BLE001 - unexpected server data must not crash the run
        return Outcome(
            FAIL,
            ctx.redact(f"unexpected {type(e).__name__}: {e}"),
            "report this as a verify bug if the server looks fine",
        )


__all__ = ["Report", "ModelReport", "CheckResult", "run_verify", "select_checks", "discover", "PASS"]
