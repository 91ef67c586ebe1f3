"""Explain a failed vLLM launch: verdict kind, vLLM's own words, what they mean, and the fix.

Kinds are the plan's (free_memory, no_cache_blocks, max_seq_len, mamba_cache_blocks,
weights_do_not_fit) plus those only a real launch shows (profiling, sampler_oom, cuda_oom, other).
`explain_launch(launch)` is what `up` calls on a failed start; `residency explain LOG` prints it.
All GiB are 2^30 bytes, per GPU.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from residency.calibrate.record import Launch
from residency.memory.messages import meaning_of, sentence


class Explanation(BaseModel):
    kind: str  # an error kind, or "ok" (the launch came up) / "unknown" (no failure line found)
    message: str  # vLLM's own text
    meaning: str
    fix: str
    numbers: dict[str, float] = Field(default_factory=dict)


def _floor2(x: float) -> float:
    return math.floor(x * 100 + 1e-9) / 100


def _ceil2(x: float) -> float:
    return math.ceil(x * 100 - 1e-9) / 100


def _g(x: float) -> str:
    return f"{x:.2f}"


def explain_launch(launch: Launch) -> Explanation:
    err = launch.error
    if err is None:
        if launch.init_seconds is not None or launch.kv_cache_tokens is not None:
            return Explanation(
                kind="ok",
                message="",
                meaning="The engine came up: the log shows no startup failure.",
                fix="Nothing to fix.",
            )
        return Explanation(
            kind="unknown",
            message="",
            meaning="The log shows no vLLM startup error and no sign the engine finished starting "
            "(it may have been cut short, or the process was killed).",
            fix="Look at the end of the log; run with VLLM_LOGGING_LEVEL=DEBUG for the memory profile lines.",
        )
    handler = _HANDLERS.get(err.kind, _other)
    launch, nums = _sane(launch, err.numbers)
    try:
        meaning, fix, extra = handler(launch, nums)
    except (ArithmeticError, ValueError):  # figures no real start logs (a zero divisor): vLLM's words only
        meaning, fix, extra = _other(launch, nums)
    nums.update(extra)
    return Explanation(kind=err.kind, message=err.message, meaning=meaning, fix=fix, numbers=nums)


def _sane(launch: Launch, numbers: dict[str, float]) -> tuple[Launch, dict[str, float]]:
    """Drop figures no real start logs (non-finite, absurd, a zero or negative device total)."""
    from residency.calibrate.logparse import plausible_figure

    nums = {k: v for k, v in numbers.items() if plausible_figure(k if k.endswith("_gib") else "", v)}
    if nums.get("total_gib", 1) <= 0:
        nums.pop("total_gib")
    bad = {
        k: None
        for k, v in launch.model_dump(exclude={"error", "explicit"}).items()
        if isinstance(v, int | float) and not isinstance(v, bool) and not plausible_figure(k, v)
    }
    if launch.total_gib is not None and launch.total_gib <= 0:
        bad["total_gib"] = None
    return (launch.model_copy(update=bad) if bad else launch), nums


# Each handler returns (meaning, fix, extra numbers).


def _free_memory(ln: Launch, n: dict[str, float]) -> tuple[str, str, dict[str, float]]:
    free = n.get("free_gib", ln.free_at_start_gib)
    total = n.get("total_gib", ln.total_gib)
    util = n.get("utilization", ln.gpu_memory_utilization)
    req = n.get("requested_gib")
    if free is None or total is None or util is None:
        return (
            "vLLM's startup check (all versions, §2.1) needs free memory >= total x gpu_memory_utilization "
            "before it loads anything; something else already holds too much of the device.",
            "Lower gpu_memory_utilization, or stop the other process, or launch this model after the others.",
            {},
        )
    req = req if req is not None else util * total
    held = total - free
    max_util = _floor2(free / total - 0.01)  # 0.01 margin: >= 0.14 requests ceil(total x util) bytes
    extra = {"held_by_others_gib": round(held, 2), "max_utilization": max_util}
    meaning = (
        f"At startup only {_g(free)} of {_g(total)} GiB was free, but gpu_memory_utilization {util:g} asks for "
        f"{_g(req)} GiB. vLLM (0.10.1-0.33.0) checks free >= total x utilization before loading anything (§2.1); "
        f"{_g(held)} GiB was held by other processes (other engines, a desktop, or on unified memory the "
        "page cache on versions <= 0.11.0)."
    )
    parts = []
    if max_util > 0:
        parts.append(f"lower gpu_memory_utilization to <= {_g(free)}/{_g(total)} - 0.01 = {max_util:.2f}")
        parts.append(f"or stop whatever holds the other {_g(held)} GiB")
    else:
        parts.append(
            f"the device is full ({_g(free)} GiB free): no utilization fits; stop whatever holds the other {_g(held)} GiB"
        )
    parts.append(
        "or launch this model only after the others have logged 'init engine ... took' (start them one at a time)"
    )
    if ln.kv_cache_memory_bytes:
        parts.append(
            "note: the check uses gpu_memory_utilization even when kv_cache_memory_bytes is set (§9)"
        )
    fix = "; ".join(parts)
    return meaning, fix[0].upper() + fix[1:] + ".", extra


def _budget_numbers(ln: Launch) -> tuple[float | None, float | None]:
    """(requested GiB, non-KV GiB) from the launch, when it says enough."""
    req = ln.gpu_memory_utilization * ln.total_gib if ln.gpu_memory_utilization and ln.total_gib else None
    if req is not None and ln.kv_cache_gib is not None:
        return req, req - ln.kv_cache_gib
    parts = [ln.weights_gib, ln.activation_gib, ln.non_torch_gib]
    if all(p is not None for p in parts):
        non_kv = sum(p for p in parts if p is not None) + (ln.cudagraph_estimate_gib or 0.0)
        return req, non_kv
    return req, None


def _no_cache_blocks(ln: Launch, n: dict[str, float]) -> tuple[str, str, dict[str, float]]:
    req, non_kv = _budget_numbers(ln)
    extra: dict[str, float] = {}
    comp = []
    for label, v in (
        ("weights", ln.weights_gib),
        ("activation peak", ln.activation_gib),
        ("non-torch", ln.non_torch_gib),
        ("CUDA graph estimate", ln.cudagraph_estimate_gib),
    ):
        if v is not None:
            comp.append(f"{label} {_g(v)} GiB")
    meaning = "After the weights, the profiled activation peak, non-torch memory (and on >= 0.20 the CUDA graph estimate) were paid from the budget, nothing was left for the KV cache (available KV <= 0, §6.1)."
    if comp:
        meaning += " Measured: " + ", ".join(comp) + "."
    if ln.kv_cache_gib is not None and ln.kv_cache_gib <= 0:
        meaning += f" Available KV cache memory: {_g(ln.kv_cache_gib)} GiB."
    fixes = []
    if non_kv is not None and ln.total_gib:
        # to hold any KV at all the budget must exceed non_kv; 1 GiB of KV is the smallest useful pool
        need = _ceil2((non_kv + 1.0) / ln.total_gib)
        extra.update({"non_kv_gib": round(non_kv, 2), "min_utilization": need})
        if need < 1:
            fixes.append(
                f"raise gpu_memory_utilization to >= ({_g(non_kv)} + 1 GiB of KV)/{_g(ln.total_gib)} = {need:.2f}"
            )
        else:
            fixes.append(
                f"the non-KV part alone ({_g(non_kv)} GiB) needs more than the whole device: use a smaller or quantized checkpoint, or tensor parallel"
            )
    else:
        fixes.append("raise gpu_memory_utilization")
    fixes.append("lower max_num_batched_tokens / max_num_seqs to shrink the profiled activation peak")
    fixes.append("or use a quantized checkpoint / tensor_parallel_size > 1 to shrink the weights per GPU")
    if req is not None:
        extra["requested_gib"] = round(req, 2)
    f = "; ".join(fixes)
    return meaning, f[0].upper() + f[1:] + ".", extra


def _max_seq_len(ln: Launch, n: dict[str, float]) -> tuple[str, str, dict[str, float]]:
    L = n.get("max_model_len", ln.max_model_len)
    needed = n.get("needed_gib")
    avail = n.get("available_gib", ln.kv_cache_gib)
    est = n.get("estimated_max_len")
    extra: dict[str, float] = {}
    if "kv_tokens" in n and L:  # V0 wording: tokens instead of GiB
        tokens = n["kv_tokens"]
        meaning = (
            f"The KV pool holds {int(tokens)} tokens, fewer than one request of max_model_len {int(L)} needs; "
            "vLLM refuses to start rather than fail the first long request."
        )
        fixes = [f"lower max_model_len to <= {int(tokens)}"]
        if ln.kv_cache_gib and ln.total_gib:
            more = ln.kv_cache_gib * (L / tokens - 1)
            extra["extra_kv_gib"] = round(more, 2)
            if ln.gpu_memory_utilization:
                u = _ceil2(ln.gpu_memory_utilization + more / ln.total_gib)
                extra["min_utilization"] = u
                fixes.append(
                    f"or raise gpu_memory_utilization to >= {ln.gpu_memory_utilization:g} + {_g(more)}/{_g(ln.total_gib)} = {u:.2f}"
                )
        else:
            fixes.append(
                f"or give the KV cache {L / tokens:.2f}x its current size (raise gpu_memory_utilization)"
            )
        fixes.append("or use kv_cache_dtype fp8 to halve the bytes per token")
        f = "; ".join(fixes)
        return meaning, f[0].upper() + f[1:] + ".", extra
    meaning = "One request of max_model_len tokens needs more KV cache than the pool has, so vLLM refuses to start (§6.2)."
    if L and needed is not None and avail is not None:
        meaning = (
            f"One request of max_model_len {int(L)} tokens needs {_g(needed)} GiB of KV cache, but only {_g(avail)} GiB "
            f"is available after weights, activations and graphs; vLLM refuses to start (§6.2)."
        )
    fixes = []
    if est:
        fixes.append(f"lower max_model_len to {int(est)} (vLLM's estimate)")
    elif avail is not None and needed and L:
        fixes.append(
            f"lower max_model_len to about {int(L * avail / needed)} ({int(L)} x {_g(avail)}/{_g(needed)})"
        )
    else:
        fixes.append("lower max_model_len")
    if needed is not None and avail is not None:
        short = needed - avail
        extra["short_gib"] = round(short, 2)
        if ln.gpu_memory_utilization and ln.total_gib:
            u = _ceil2(ln.gpu_memory_utilization + short / ln.total_gib)
            extra["min_utilization"] = u
            fixes.append(
                f"or raise gpu_memory_utilization to >= {ln.gpu_memory_utilization:g} + ({_g(needed)} - {_g(avail)})/{_g(ln.total_gib)} = {u:.2f}"
            )
        else:
            fixes.append(
                f"or raise gpu_memory_utilization so the budget grows by {_g(short)} GiB ({_g(needed)} - {_g(avail)})"
            )
    else:
        fixes.append("or raise gpu_memory_utilization")
    fixes.append("or use kv_cache_dtype fp8 to halve the KV per token")
    f = "; ".join(fixes)
    return meaning, f[0].upper() + f[1:] + ".", extra


def _mamba(ln: Launch, n: dict[str, float]) -> tuple[str, str, dict[str, float]]:
    blocks = n.get("mamba_blocks")
    seqs = n.get("max_num_seqs", ln.max_num_seqs)
    meaning = (
        "Each running sequence of a hybrid (Mamba / linear-attention) model holds its own state block "
        "(two with prefix caching in 'align' mode, >= 0.26); the KV pool has fewer state blocks than max_num_seqs."
    )
    if blocks is not None and seqs is not None:
        meaning = (
            f"max_num_seqs is {int(seqs)} but the pool has only {int(blocks)} Mamba state blocks; each running "
            "sequence of a hybrid model holds its own state block (two with prefix caching in 'align' mode, >= 0.26)."
        )
    fixes = []
    if blocks is not None:
        fixes.append(f"set max_num_seqs <= {int(blocks)}")
    else:
        fixes.append("lower max_num_seqs")
    fixes.append("or raise gpu_memory_utilization / lower max_model_len so more state blocks fit")
    f = "; ".join(fixes)
    return meaning, f[0].upper() + f[1:] + ".", {}


def _profiling(ln: Launch, n: dict[str, float]) -> tuple[str, str, dict[str, float]]:
    # vLLM asserts baseline free > free after profiling: strict in 0.10.1-0.15.x, >= from 0.16.0
    a, c = n.get("initial_free_gib"), n.get("current_free_gib")
    meaning = (
        "Free memory went UP while vLLM profiled (another process on the device released memory), so its "
        "accounting would be wrong; vLLM stops (§3.4)."
    )
    if a is not None and c is not None:
        meaning = (
            f"Free memory rose from {_g(a)} to {_g(c)} GiB while vLLM profiled: another process on the device "
            "released memory (a neighbour finishing its own profile, or exiting), so vLLM's accounting would be wrong (§3.4)."
        )
    fix = (
        "Start co-resident engines one at a time: launch the next only after the previous logged "
        "'init engine (profile, create kv cache, warmup model) took ...'; keep other jobs off the device during startup."
    )
    return meaning, fix, {}


def _sampler(ln: Launch, n: dict[str, float]) -> tuple[str, str, dict[str, float]]:
    k = n.get("dummy_requests")
    meaning, fix, _ = _generic("sampler_oom")
    if k:
        meaning = meaning.replace("dummy requests", f"dummy requests ({int(k)})")
    return meaning, fix, {}


def _cuda_oom(ln: Launch, n: dict[str, float]) -> tuple[str, str, dict[str, float]]:
    capture = "graph capture" in (ln.error.message if ln.error else "").lower() or "capture" in (
        ln.error.message if ln.error else ""
    )
    if capture or ln.kv_cache_gib is not None or ln.kv_cache_tokens is not None:
        meaning = (
            "The device ran out of memory after the KV pool was sized, at CUDA graph capture or warm-up. Before "
            "0.20 graph memory is not reserved in the budget (§5), so the process grows past gpu_memory_utilization; "
            "another process growing at the same time has the same effect."
        )
        cg = ln.cudagraph_gib or ln.cudagraph_estimate_gib
        fixes = []
        if cg and ln.total_gib:
            fixes.append(
                f"lower gpu_memory_utilization by the graph memory ({_g(cg)} GiB = {cg / ln.total_gib:.3f} of the device)"
            )
        else:
            fixes.append("lower gpu_memory_utilization by a few percent to leave room for CUDA graphs")
        fixes.append("or set enforce_eager (no graphs), or lower max_cudagraph_capture_size / max_num_seqs")
        fixes.append("and start co-resident engines one at a time")
    else:
        meaning = "CUDA ran out of memory during startup; the log does not show which phase."
        fixes = [
            "lower gpu_memory_utilization or max_num_batched_tokens",
            "check that no other process grew on the device during startup",
        ]
    tried = n.get("tried_gib")
    if tried is not None and "device_free_gib" in n:
        meaning += f" It tried to allocate {tried:.2f} GiB with {n['device_free_gib']:.2f} GiB free of {n.get('device_total_gib', 0):.2f} GiB."
    f = "; ".join(fixes)
    return meaning, f[0].upper() + f[1:] + ".", {}


def _generic(kind: str) -> tuple[str, str, dict[str, float]]:
    """The table's meaning and fix (memory.messages.ERRORS) when the log gives no numbers to work with."""
    e = meaning_of(kind)
    return sentence(e.meaning), sentence(e.fix), {}


def _weights(ln: Launch, n: dict[str, float]) -> tuple[str, str, dict[str, float]]:
    return _generic("weights_do_not_fit")


def _other(ln: Launch, n: dict[str, float]) -> tuple[str, str, dict[str, float]]:
    return _generic("other")


_HANDLERS = {
    "free_memory": _free_memory,
    "no_cache_blocks": _no_cache_blocks,
    "max_seq_len": _max_seq_len,
    "mamba_cache_blocks": _mamba,
    "profiling": _profiling,
    "sampler_oom": _sampler,
    "cuda_oom": _cuda_oom,
    "weights_do_not_fit": _weights,
    "other": _other,
}
