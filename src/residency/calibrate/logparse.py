"""Parse vLLM startup logs into measured launches (vllm-memory.md §12, plus the V0 eras).

`parse_log(text)` returns one `Launch` per engine start found. It reads logs of every era the
reference set covers:

* V0 (<= 0.8): "Loading model weights took X GB" (GB means GiB here), the Dec 2024 table
  ("total_gpu_memory  79.22GiB" / "model weights take 14.96GiB" ...), the one-line form
  ("model weights take X; non_torch_memory takes Y; PyTorch activation peak memory takes Z; the
  rest of the memory reserved for KV Cache is K"), "Memory profiling results: ... kv_cache_size=",
  "# GPU blocks: N" / "# cuda blocks: N", and the old "The model's max seq len (L) is larger than
  the maximum number of tokens that can be stored in KV cache (N)" error.
* V1 (0.8 - 0.33): "Model loading took X GiB( memory)? and Y seconds", "Available KV cache
  memory", "GPU KV cache size: N tokens" (0.33: combined with the concurrency), DEBUG profiling
  components (<= 0.26 torch peak / non-torch increase; >= 0.27 "total consumed"), the graph
  estimate (>= 0.18), the usage/suggestion line (INFO 0.10.2, DEBUG from 0.11), block-size bumps
  and every startup error of §2.1 / §3.4 / §6.

Lines may carry any prefix (timestamps, "(EngineCore_DP0 pid=1)", compose "svc-1  | ", "vLLM
STDOUT:") and ANSI colour codes: patterns search inside the line, never anchor at its start.

A new launch starts when a start marker (command line, version line, non-default args, engine
config line) repeats within the current launch, appears after the current launch ended (its
"init engine ... took" line or a startup error), or goes back to an earlier startup stage after
the current launch logged figures.
"""

from __future__ import annotations

import ast
import math
import re
import shlex
from collections.abc import Callable
from typing import Any, NamedTuple

from residency.bounds import MAX_GIB
from residency.calibrate.record import Launch, LaunchError

# Numbers are bounded (at most 15 integer and 12 fraction digits) and may not start or end inside a longer
# digit run: a pattern then costs linear time on a line of 50,000 digits (an unbounded \d+ after "GiB"
# made the search quadratic), and a 400-digit figure is not read at all rather than read as Infinity.
NUM = r"(?<![\d.])-?\d{1,15}(?:\.\d{1,12})?(?![\d])"
INT = r"(?<![\d.])\d{1,15}(?![\d])"
INT_COMMAS = r"(?<![\d,])(?:\d{1,3}(?:,\d{3}){1,5}|\d{1,15})(?![\d,])"  # 1,234,567 or 1234567
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")

# Error kinds, most specific first: when a launch shows several, the first in this list wins.
ERROR_PRIORITY = (
    "free_memory",
    "profiling",
    "mamba_cache_blocks",
    "max_seq_len",
    "no_cache_blocks",
    "sampler_oom",
    "weights_do_not_fit",
    "cuda_oom",
    "other",
)

# Settings read from non-default args, command lines and LLM(...) calls, with their types.
_SETTING_TYPES: dict[str, Callable[[Any], Any]] = {}
_INT_KEYS = (
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "block_size",
    "kv_cache_memory_bytes",
    "max_cudagraph_capture_size",
    "num_gpu_blocks_override",
)
_FLOAT_KEYS = ("gpu_memory_utilization",)
_BOOL_KEYS = ("enforce_eager", "enable_prefix_caching", "enable_chunked_prefill", "enable_expert_parallel")
_STR_KEYS = ("model", "dtype", "kv_cache_dtype", "quantization", "mamba_ssm_cache_dtype")
_KNOWN_KEYS = _INT_KEYS + _FLOAT_KEYS + _BOOL_KEYS + _STR_KEYS
# vllm serve flags that take no value (so the next token is not eaten as their value)
_FLAG_ONLY = {
    "enforce_eager",
    "enable_prefix_caching",
    "no_enable_prefix_caching",
    "enable_chunked_prefill",
    "enable_expert_parallel",
    "trust_remote_code",
    "disable_log_stats",
    "disable_log_requests",
    "enable_auto_tool_choice",
    "disable_custom_all_reduce",
    "omni",
    "help",
}
_ALIASES = {"tp": "tensor_parallel_size", "pp": "pipeline_parallel_size", "q": "quantization"}


_SETTING_MAX = 1 << 50  # a setting above this (tokens, bytes, counts) is not a real one: dropped


def _human_int(v: Any) -> int | None:
    """vLLM's human-readable ints: 32k = 32000, 32K = 32768 (>= 0.10: lower case decimal, upper binary).

    Absurd values (inf, 5,000 nines, 1e309) give None, never an OverflowError."""
    if isinstance(v, bool):
        return None
    if isinstance(v, float):
        v = int(v) if math.isfinite(v) and abs(v) <= _SETTING_MAX else None
    if isinstance(v, int):
        return v if abs(v) <= _SETTING_MAX else None
    m = re.fullmatch(r"\s*(-?[\d_]{1,20}(?:\.\d{1,12})?)\s*([kKmMgG]?)\s*", str(v)[:64])
    if not m:
        return None
    n = float(m.group(1).replace("_", ""))
    mult = {"": 1, "k": 1000, "K": 1024, "m": 10**6, "M": 2**20, "g": 10**9, "G": 2**30}[m.group(2)]
    return _human_int(n * mult)


def _to_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    s = str(v).strip().strip("'\"").lower()
    if s in ("true", "1", "yes"):
        return True
    if s in ("false", "0", "no"):
        return False
    return None


def _to_str(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip().strip("'\"")
    if s in ("None", ""):
        return None
    return s.removeprefix("torch.")


def _to_float(v: Any) -> float | None:
    try:
        f = float(str(v)[:64].strip().strip("'\""))
    except ValueError:
        return None
    return f if math.isfinite(f) and abs(f) <= _SETTING_MAX else None


def _convert(key: str, v: Any) -> Any:
    if key in _INT_KEYS:
        return _human_int(str(v).strip("'\"")) if not isinstance(v, int | float) else _human_int(v)
    if key in _FLOAT_KEYS:
        return _to_float(v)
    if key in _BOOL_KEYS:
        return _to_bool(v)
    return _to_str(v)


def _canon_key(name: str) -> str | None:
    """'--max-model-len' / 'max_model_len' / '-tp' / '--tensor_parallel' (argparse prefix) -> known key."""
    k = name.lstrip("-").replace("-", "_")
    if k in _ALIASES:
        return _ALIASES[k]
    if k == "model_tag":
        return "model"
    if k in _KNOWN_KEYS:
        return k
    if len(k) >= 6:
        hits = [c for c in _KNOWN_KEYS if c.startswith(k)]
        if len(hits) == 1:
            return hits[0]
    return None


# ---------------------------------------------------------------------------------------------
# One launch being assembled


class _Builder:
    def __init__(self) -> None:
        self.markers: set[str] = set()
        self.ended = False
        self.touched = False
        self.settings: dict[str, tuple[int, Any]] = {}
        self.explicit: dict[str, Any] = {}
        self.figures: dict[str, list[tuple[int, float]]] = {}
        self.errors: dict[str, LaunchError] = {}
        self.load_started = False
        self.in_capture = False

    # settings: highest priority wins; equal priority -> the later line wins
    def setting(self, key: str, value: Any, prio: int) -> None:
        if value is None or (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and not plausible_figure(key, value)
        ):
            return
        self.touched = True
        cur = self.settings.get(key)
        if cur is None or prio >= cur[0]:
            self.settings[key] = (prio, value)

    def explicit_setting(self, key: str, raw: Any, prio: int = 3) -> None:
        v = _convert(key, raw)
        if v is None:
            return
        self.explicit[key] = v
        self.setting(key, v, prio)

    def figure(self, key: str, value: float | int | None, prio: int) -> None:
        if value is None or not plausible_figure(key, value):
            return
        self.touched = True
        self.figures.setdefault(key, []).append((prio, value))

    def error(self, kind: str, message: str, numbers: dict[str, float] | None = None) -> None:
        self.touched = True
        self.ended = True
        if kind not in self.errors:
            self.errors[kind] = LaunchError(kind=kind, message=_clean_message(message), numbers=numbers or {})

    def get(self, key: str, agg: str = "max") -> Any:
        vals = self.figures.get(key)
        if not vals:
            return None
        top = max(p for p, _ in vals)
        best = [v for p, v in vals if p == top]
        if agg == "min":
            return min(best)
        if agg == "last":
            return best[-1]
        return max(best)

    def build(self) -> Launch:
        s = {k: v for k, (_, v) in self.settings.items()}
        ln = Launch(
            vllm_version=s.get("vllm_version"),
            model=s.get("model"),
            gpu_memory_utilization=s.get("gpu_memory_utilization"),
            total_gib=self.get("total_gib", "last"),
            max_model_len=s.get("max_model_len"),
            max_num_seqs=s.get("max_num_seqs"),
            max_num_batched_tokens=s.get("max_num_batched_tokens"),
            tensor_parallel_size=s.get("tensor_parallel_size"),
            dtype=s.get("dtype"),
            kv_cache_dtype=s.get("kv_cache_dtype"),
            quantization=s.get("quantization"),
            enforce_eager=s.get("enforce_eager"),
            weights_gib=self.get("weights_gib"),
            activation_gib=self.get("activation_gib"),
            non_torch_gib=self.get("non_torch_gib"),
            cudagraph_gib=self.get("cudagraph_gib"),
            # every TP rank sizes its own pool and all take the minimum (§7.4): the worst rank decides
            kv_cache_gib=self.get("kv_cache_gib", "min"),
            kv_cache_tokens=self.get("kv_cache_tokens", "last"),
            max_concurrency=self.get("max_concurrency", "last"),
            block_size=self.get("block_size", "last"),
            num_gpu_blocks=self.get("num_gpu_blocks", "last"),
            free_at_start_gib=self.get("free_at_start_gib", "min"),
            init_seconds=self.get("init_seconds", "last"),
            cudagraph_estimate_gib=self.get("cudagraph_estimate_gib"),
            consumed_gib=self.get("consumed_gib"),
            non_kv_cache_gib=self.get("non_kv_cache_gib"),
            kv_cache_memory_bytes=s.get("kv_cache_memory_bytes"),
            suggested_kv_cache_memory_bytes=self.get("suggested_kv_cache_memory_bytes", "min"),
            explicit=dict(self.explicit),
        )
        if ln.block_size is None and s.get("block_size") is not None:
            ln.block_size = s["block_size"]
        if ln.cudagraph_gib is None and ln.cudagraph_estimate_gib is not None and "cudagraph_actual" not in s:
            ln.cudagraph_gib = ln.cudagraph_estimate_gib
        ln.error = self._verdict(ln)
        return ln

    def _verdict(self, ln: Launch) -> LaunchError | None:
        errs = dict(self.errors)
        # V1 raises "No available memory for the cache blocks" when available KV <= 0 (§6.1); V0 when
        # it computed 0 GPU blocks. A log cut short after that line still tells the outcome.
        if not any(k in errs for k in ERROR_PRIORITY[:-1]):
            if ln.kv_cache_gib is not None and ln.kv_cache_gib <= 0:
                errs["no_cache_blocks"] = LaunchError(
                    kind="no_cache_blocks",
                    message=f"Available KV cache memory: {ln.kv_cache_gib} GiB (vLLM refuses to start when "
                    "this is <= 0: No available memory for the cache blocks.)",
                    numbers={"available_gib": ln.kv_cache_gib},
                )
            elif ln.num_gpu_blocks == 0:
                errs["no_cache_blocks"] = LaunchError(
                    kind="no_cache_blocks",
                    message="# GPU blocks: 0 (vLLM refuses to start with no blocks: No available memory "
                    "for the cache blocks.)",
                    numbers={"num_gpu_blocks": 0},
                )
        for kind in ERROR_PRIORITY:
            if kind in errs:
                return errs[kind]
        return None


def plausible_figure(key: str, value: float) -> bool:
    """A figure a real vLLM start can log: finite and within physical bounds (used at parse and at store).

    GiB figures may be negative (vLLM logs a negative "Available KV cache memory" before refusing)."""
    if isinstance(value, bool) or not math.isfinite(value):
        return False
    if key.endswith("_gib"):
        return abs(value) <= MAX_GIB
    if key == "init_seconds":
        return 0 <= value <= 1e7
    if key.endswith("_bytes"):
        return 0 <= value <= MAX_GIB * 2**30
    return 0 <= value <= _SETTING_MAX


def _clean_message(msg: str) -> str:
    msg = msg.strip()
    for pre in ("raise ValueError(", "ValueError: ", "RuntimeError: "):
        if msg.startswith(pre):
            msg = msg[len(pre) :]
    msg = msg.strip().strip("*`")
    while msg and (
        (msg[-1] == ")" and msg.count(")") > msg.count("("))
        or (msg[-1] in "\"'`*" and msg.count(msg[-1]) % 2 == 1)
    ):
        msg = msg[:-1].rstrip()
    if msg.startswith(("'", '"')) and msg.count(msg[0]) == 1:
        msg = msg[1:]
    msg = msg.strip()
    return msg if len(msg) <= 600 else msg[:600] + "..."  # an absurd line stays a readable message


# ---------------------------------------------------------------------------------------------
# Patterns

_RX: dict[str, re.Pattern[str]] = {
    k: re.compile(v)
    for k, v in {
        # start markers
        # "vLLM API server version 0.11.0"; >= ~0.30 also an ASCII-art banner ending "█  version 0.32.0"
        "version_api": r"(?:vLLM API server version|█\s+version) (v?\d[\w.+\-]*)",
        # V1 "Initializing a V1 LLM engine (vX) with config:" (0.8-0.33); V0 "a V0 LLM engine" (0.7-0.8),
        # "an LLM engine (vX)" (0.4-0.6), "an LLM engine with config" (<= 0.3, no version)
        "engine_cfg": r"Initializing an? (?:V[01] )?LLM engine(?: \(v(\d[^)]*)\))?(?: with config: ?(.*))?",
        # the API server's explicit flags (~0.8 onward; 0.10+ as "(APIServer pid=N) ... non-default args")
        "nondefault": r"non-default args: (\{.*)",
        # command lines pasted into a log (not vLLM output): their flags count as explicit settings
        "cmd": r"^\s*[`$>]?\s*(?:\w+=\S*\s+)*(?:vllm serve|python3? -m vllm\.entrypoints\.openai\.api_server)(?=\s|$)(.*)",
        "llm_call": r"(?:^|=\s*)LLM\((.*)",
        # settings
        "cfg_model": r"(?<![\w.])model='([^']*)'",
        "cfg_dtype": r"(?<![\w.])dtype=(?:torch\.)?(\w+)",
        "cfg_maxlen": rf"max_seq_len=({INT})",
        "cfg_tp": rf"tensor_parallel_size=({INT})",
        "cfg_quant": r"(?<![\w.])quantization=(\w+)",
        "cfg_eager": r"enforce_eager=(True|False)",
        "cfg_kvdtype": r"kv_cache_dtype=(\w+)",
        # INFO settings lines, all versions that have them (0.6-0.33)
        "chunked": rf"Chunked prefill is enabled with max_num_batched_tokens=({INT})",
        "using_maxlen": rf"Using max model len ({INT})",
        "kv_dtype_info": r"Using (\w+) data type to store kv cache",
        # weights
        # "Model loading took X GiB and Y s" (0.8-0.11.0, V2 runner until 0.33), "X GiB memory and" (>= 0.11.1 V1);
        # 0.8.x V0 prints "X GB and Y seconds"; <= 0.7 "Loading model weights took X GB" (GB = GiB)
        "weights_v1": rf"Model loading took ({NUM}) (GiB|GB)(?: memory)?(?: and ({NUM}) seconds)?",
        "weights_v0": rf"Loading model weights took ({NUM}) GB",
        # V0 tables (0.6.4 - 0.8): "model weights take X GiB; non_torch_memory takes ...; PyTorch activation
        # peak memory takes ...; the rest of the memory reserved for KV Cache is K", Dec 2024 column form too
        "weights_tbl": rf"model weights take\s*({NUM}) ?GiB",
        # DEBUG "Memory profiling takes ..." (V1): <= 0.26 torch peak / non-torch increase, >= 0.27 total consumed
        "weights_dbg": rf"weights memory: ({NUM}) ?GiB",
        "load_start": r"Starting to load model|Loading model weights|load_model\(|load_weights\(",
        # profiling components
        "act_tbl": rf"PyTorch activation peak memory(?: takes)?\s*({NUM}) ?GiB",
        "act_dbg": rf"torch peak memory increase: ({NUM}) ?GiB",
        "nt_tbl": rf"non_torch_memory(?: takes|=)?\s*({NUM}) ?GiB",
        "nt_dbg": rf"non-torch forward increase memory: ({NUM}) ?GiB",
        "nonkv_dbg": rf"Total non KV cache memory: ({NUM}) ?GiB",
        "consumed_dbg": rf"total consumed \(from mem_get_info\): ({NUM}) ?GiB",
        "total_tbl": rf"total_gpu_memory\s*(?:=|\()?\s*({NUM}) ?GiB",
        "util_tbl": rf"gpu_memory_utilization\s*(?:=|\()?\s*({NUM})\b",
        "util_x": rf"total_gpu_memory \(({NUM}) ?GiB\) x ({NUM}) =",
        "util_equiv": rf"The current --gpu-memory-utilization=({NUM}) is equivalent",
        # usage / suggestion line (INFO 0.10.2, DEBUG >= 0.11): starts like the error, says "on startup."
        "usage_free": rf"Free memory on device (?:\S+ )?\(({NUM})/({NUM}) GiB\) on startup\.",
        "usage_desired": rf"Desired GPU memory utilization is \(({NUM}), ({NUM}) GiB\)",
        "usage_weight": rf"({NUM}) GiB for weight\b",
        "usage_consumed": rf"({NUM}) GiB for consumed memory",
        "usage_act": rf"({NUM}) GiB for peak activation",
        "usage_nt": rf"({NUM}) GiB for non-torch memory",
        "usage_cg": rf"({NUM}) GiB for CUDAGraph memory",
        "suggest": rf"Replace gpu_memory_utilization config with `?--kv-cache-memory=({INT})",
        "kv_in_use": rf"Current kv cache memory in use is ({NUM}) ?GiB",
        # graphs
        # graphs: estimate >= 0.18 (applied from 0.20); pool actual-vs-estimate >= 0.20; capture line all versions
        "cg_est": rf"Estimated CUDA graph memory: ({NUM}) ?GiB",
        "cg_pool": rf"CUDA graph pool memory: ({NUM}) ?GiB \(actual\)(?:, ({NUM}) ?GiB \(estimated\))?",
        "cg_took": rf"Graph capturing finished in {NUM} secs?, took ({NUM}) ?GiB",
        # KV
        # KV budget: V1 "Available KV cache memory" (0.8-0.33); V0 table/results forms (0.6.4-0.8);
        # kv_cache_memory_bytes "reserved K GiB" (>= 0.10.2); tokens: "GPU KV cache size" (V1; 0.33 joins concurrency)
        "kv_avail": rf"Available KV cache memory: ({NUM}) ?GiB",
        "kv_v0_line": rf"the rest (?:of the memory )?reserved for KV Cache is\s*({NUM}) ?GiB",
        "kv_v0_tbl": rf"available_kv_cache_memory\s*({NUM}) ?GiB",
        "kv_v0_results": rf"kv_cache_size=({NUM}) ?GiB",
        "kv_fixed": rf"(?:Initial free memory ({NUM}) ?GiB, )?reserved ({NUM}) ?GiB memory for KV Cache",
        "kv_tokens": rf"(?:GPU|CPU|XPU) KV cache size: ({INT_COMMAS}) tokens",
        # CPU backend (0.32, cpu_worker.py): "Explicitly set (K/T) GiB for KV cache on node 0." when
        # VLLM_CPU_KVCACHE_SPACE / kv_cache_memory_bytes is set, else "Auto set (K/T) GiB for KV cache on node 0,
        # with R GiB requested memory for the worker. C GiB memory was consumed by non-kv usages." (T = node memory)
        "kv_cpu": rf"(?:Explicitly|Auto) set \(({NUM})/({NUM})\) GiB for KV cache",
        "cpu_consumed": rf"({NUM}) GiB memory was consumed by non-kv usages",
        "e_cpu_kv": rf"Available memory on node \S+ \(({NUM})/({NUM}) GiB\) on kv cache allocation is less than requested memory for kv \(({NUM})/({NUM}) GiB\)",
        "concurrency": rf"Maximum concurrency for ({INT_COMMAS}) tokens per request: ({NUM})x",
        # V0 "# GPU blocks: N" / "# cuda blocks: N" (<= 0.8); V1 "num_gpu_blocks is: N" (loggers, 0.10+)
        "blocks": rf"(?:^|[#\s\]])(?:GPU|CUDA|cuda|gpu) blocks: ({INT})",
        "blocks_v1": rf"num_gpu_blocks is: ({INT})",
        "blocks_override": rf"Overriding num_gpu_blocks=\d+ with num_gpu_blocks_override=({INT})",
        # hybrid attention+mamba page alignment (0.10.2-0.33, §7.3)
        "block_bump": rf"Setting attention block size to ({INT}) tokens",
        "init_done": rf"init engine \(profile, create kv cache, warmup model\) took ({NUM}) s",
        # errors
        # <= 0.13 "on device (F/T GiB)", >= 0.14 "on device cuda:N (F/T GiB)"; 0.33 external-weights variant;
        # CPU backend (0.32): "Available memory on node 0 (F/T GiB) ... desired CPU memory utilization (U, R GiB)"
        "e_free": rf"(?:Free memory on device|Available memory on node)(?: \S+)? \(({NUM})/({NUM}) GiB\) on startup is less than (?:desired [GC]PU memory utilization|the engine's budget after excluding external process's weights) \(({NUM}), ({NUM}) GiB\)",
        "e_nocache": r"No available memory for the cache blocks",
        # §6.2: "models's" typo <= 0.21, "model's" >= 0.22; V0 (<= 0.8) counts tokens instead of GiB
        "e_maxlen": rf"To serve at least one request with the models?'s max seq len \(({INT})\),? \(({NUM}) GiB KV cache is needed, which is larger than the available KV cache memory \(({NUM}) GiB\)\.?(?: Based on the available memory, the estimated maximum model length is ({INT}))?",
        "e_maxlen_v0": rf"The model's max seq len \(({INT})\) is larger than the maximum number of tokens that can be stored in KV cache \(({INT})\)",
        "e_maxlen_loose": rf"({NUM}) GiB KV cache is needed",
        # hybrid models, >= ~0.25 (config/compilation.py); §3.4 profiling assert (strict <= 0.15, >= from 0.16)
        # an absurd count (no group) still names the error kind; the literal prefix keeps the scan linear
        "e_mamba": rf"(?:max_num_seqs \((?:({INT})|\d+)\) )?exceeds available Mamba cache blocks \((?:({INT})|\d+)\)",
        "e_profiling": rf"Error in memory profiling\. Initial free memory ({NUM}) ?GiB, current free memory ({NUM}) ?GiB",
        "e_sampler": rf"CUDA out of memory occurred when warming up sampler with (?:({INT})|\d+) dummy requests",
        "e_oom": r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory",
        "e_oom_alloc": rf"Tried to allocate ({NUM}) (MiB|GiB)",
        "e_oom_cap": rf"total capacity of ({NUM}) GiB of which ({NUM}) (MiB|GiB) is free",
        "e_capture": r"capture_model\(",
        "e_generic": r"EngineCore failed to start|Engine core initialization failed|Engine process failed to start",
    }.items()
}


def _gib(v: str | None) -> float | None:
    return None if v is None else float(v)


def _from(line: str, m: re.Match[str]) -> str:
    return line[m.start() :]


def _parse_dict_pairs(text: str) -> dict[str, Any]:
    """The top-level pairs of a logged Python dict, tolerating '...' elisions and truncation."""
    text = text.strip()
    end = text.rfind("}")
    if end > 0:
        try:
            val = ast.literal_eval(text[: end + 1])
            if isinstance(val, dict):
                return {str(k): v for k, v in val.items()}
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    body = text[1:] if text.startswith("{") else text
    # drop nested containers so their keys do not leak to the top level
    prev = None
    while prev != body:
        prev = body
        body = re.sub(r"\{[^{}]*\}", "{}", body)
        body = re.sub(r"\[[^\[\]]*\]", "[]", body)
    out: dict[str, Any] = {}
    for m in re.finditer(
        r"'(\w+)':\s*('(?:[^'\\]|\\.)*'|\"[^\"]*\"|True|False|None|-?[\d.]+(?:e[+-]?\d+)?)", body
    ):
        raw = m.group(2)
        try:
            out[m.group(1)] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[m.group(1)] = raw
    return out


def _parse_cmdline(rest: str) -> dict[str, Any]:
    rest = rest.replace("`", " ").replace("\\\n", " ")
    rest = re.split(r"\s#\s", rest)[0]  # shell comment
    try:
        toks = shlex.split(rest)
    except ValueError:
        toks = rest.split()
    out: dict[str, Any] = {}
    i = 0
    positional_seen = False
    while i < len(toks):
        t = toks[i]
        if t.startswith("-") and not re.fullmatch(r"-\d[\d.]*", t):
            name, eq, val = t.partition("=")
            canon = _canon_key(name)
            bare = name.lstrip("-").replace("-", "_")
            if eq:
                if canon:
                    out[canon] = val
                i += 1
                continue
            if bare in _FLAG_ONLY or (canon in _BOOL_KEYS):
                if canon:
                    out[canon] = True
                i += 1
                continue
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if nxt is not None and (not nxt.startswith("-") or re.fullmatch(r"-\d[\d.]*", nxt)):
                if canon:
                    out[canon] = nxt
                i += 2
                continue
            i += 1
            continue
        if not positional_seen and t not in ("serve", "...", "…"):
            out.setdefault("model", t)
            positional_seen = True
        i += 1
    return out


# ---------------------------------------------------------------------------------------------


# Every pattern above needs one of these words; other lines are skipped cheaply.
_RELEVANT = re.compile(
    r"GiB|GB|took|blocks|KV|kv|version|args|engine|serve|LLM\(|max_num|max model len|memory|block size|rror"
    r"|xception|capture_model|load|CUDA|Mamba|max seq len|concurrency|failed|Engine"
)

# Order in which one start logs its markers: command, API server version, non-default args, engine config.
_STAGE = {"cmd": 0, "version": 1, "args": 2, "engine": 3}


def _start_marker(line: str) -> tuple[str, re.Match[str]] | None:
    for kind, key in (("version", "version_api"), ("engine", "engine_cfg"), ("args", "nondefault")):
        m = _RX[key].search(line)
        if m:
            return kind, m
    m = _RX["cmd"].search(line)
    if m:
        return "cmd", m
    m = _RX["llm_call"].search(line)
    if m and "=" in m.group(1):
        return "cmd", m
    return None


def parse_log(text: str) -> list[Launch]:
    """One Launch per engine start found in `text` (a log may hold several restarts)."""
    launches: list[Launch] = []
    cur = _Builder()
    for raw in text.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        if not line.strip():
            continue
        if not _RELEVANT.search(line):
            continue
        marker = _start_marker(line)
        if marker is not None:
            kind, _ = marker
            # a marker repeats, follows the end, or comes back to an earlier startup stage after figures
            later_stage = any(_STAGE[k] > _STAGE[kind] for k in cur.markers)
            # the version and engine-config lines precede weight loading, so after figures they open a new start
            after_figures = bool(cur.figures) and kind in ("version", "engine")
            if kind in cur.markers or cur.ended or after_figures or (later_stage and cur.figures):
                if cur.touched:
                    launches.append(cur.build())
                cur = _Builder()
            cur.markers.add(kind)
            cur.touched = True
        _parse_line(cur, line, marker)
    if cur.touched:
        launches.append(cur.build())
    return [ln for ln in launches if _meaningful(ln)]


def _meaningful(ln: Launch) -> bool:
    d = ln.model_dump(exclude_defaults=True)
    return bool(d)


def _apply_marker(b: _Builder, marker: tuple[str, re.Match[str]]) -> None:
    """Settings carried by a start marker: version, engine config, non-default args, a command line."""
    kind, m = marker
    if kind == "version":
        b.setting("vllm_version", m.group(1).lstrip("v").rstrip(".,;"), 3)
    elif kind == "engine":
        if m.group(1):
            b.setting("vllm_version", m.group(1).strip(), 2)
        cfg = m.group(2) or ""
        for key, rkey, conv in (
            ("model", "cfg_model", _to_str),
            ("dtype", "cfg_dtype", _to_str),
            ("max_model_len", "cfg_maxlen", _int),
            ("tensor_parallel_size", "cfg_tp", _int),
            ("quantization", "cfg_quant", _to_str),
            ("enforce_eager", "cfg_eager", _to_bool),
            ("kv_cache_dtype", "cfg_kvdtype", _to_str),
        ):
            if mm := _RX[rkey].search(cfg):
                b.setting(key, conv(mm.group(1)), 2)
    elif kind == "args":
        pairs = _parse_dict_pairs(m.group(1))
        if "model" not in pairs and "model_tag" in pairs:
            pairs["model"] = pairs["model_tag"]
        for k, v in pairs.items():
            canon = _canon_key(k) if k != "model_tag" else None
            if canon and canon == k:
                b.explicit_setting(canon, v, 3)
    elif kind == "cmd":
        if m.re is _RX["cmd"]:
            pairs = _parse_cmdline(m.group(1))
        else:
            pairs = {
                mm.group(1): mm.group(2)
                for mm in re.finditer(r"(\w+)\s*=\s*('[^']*'|\"[^\"]*\"|[\w.+\-]+)", m.group(1))
            }
        for k, v in pairs.items():
            canon = _canon_key(k)
            if canon:
                b.explicit_setting(canon, v, 3)


def _int(v: str | None) -> int | None:
    return None if v is None else int(v.replace(",", ""))


def _true(_: str | None) -> bool:
    return True


class _Rule(NamedTuple):
    """A pattern and the fields its groups fill: (fig|set, field, group, converter, priority) each.

    `when`: a substring the line must also hold; `unless`: a rule key that, having matched this line,
    wins over this one; `ends`: the line closes the launch (its "init engine ... took" line)."""

    key: str
    fields: tuple[tuple[str, str, int, Callable[[str | None], Any], int], ...]
    when: str | None = None
    unless: str | None = None
    ends: bool = False


def _r(key: str, *fields: tuple[str, str, int, Callable[[str | None], Any], int], **kw: Any) -> _Rule:
    return _Rule(key, fields, **kw)


# Settings and figures, in the order the original if-chain applied them (equal priorities: later wins).
_RULES: tuple[_Rule, ...] = (
    # settings stated by INFO lines
    _r("chunked", ("set", "max_num_batched_tokens", 1, _int, 1)),
    _r("using_maxlen", ("set", "max_model_len", 1, _int, 1)),
    _r("kv_dtype_info", ("set", "kv_cache_dtype", 1, str, 1)),
    # weights ("GB" of weights_v0 is bytes / 2^30, vllm-logs.md caveat 3)
    _r("weights_v1", ("fig", "weights_gib", 1, _gib, 3)),
    _r("weights_v0", ("fig", "weights_gib", 1, _gib, 3)),
    _r("weights_tbl", ("fig", "weights_gib", 1, _gib, 2)),
    _r("weights_dbg", ("fig", "weights_gib", 1, _gib, 2)),
    # V0 tables and DEBUG profiling components
    _r("act_tbl", ("fig", "activation_gib", 1, _gib, 2)),
    _r("act_dbg", ("fig", "activation_gib", 1, _gib, 2)),
    _r("nt_tbl", ("fig", "non_torch_gib", 1, _gib, 2)),
    _r("nt_dbg", ("fig", "non_torch_gib", 1, _gib, 2)),
    _r("nonkv_dbg", ("fig", "non_kv_cache_gib", 1, _gib, 2)),
    _r("consumed_dbg", ("fig", "consumed_gib", 1, _gib, 2)),
    _r("total_tbl", ("fig", "total_gib", 1, _gib, 2)),
    _r("util_x", ("fig", "total_gib", 1, _gib, 2), ("set", "gpu_memory_utilization", 2, _gib, 2)),
    _r("util_tbl", ("set", "gpu_memory_utilization", 1, _gib, 2), unless="util_x"),
    _r("util_equiv", ("set", "gpu_memory_utilization", 1, _gib, 2)),
    # usage / suggestion line (>= 0.10.2)
    _r("usage_free", ("fig", "free_at_start_gib", 1, _gib, 3), ("fig", "total_gib", 2, _gib, 3)),
    _r("usage_desired", ("set", "gpu_memory_utilization", 1, _gib, 4)),
    _r("usage_weight", ("fig", "weights_gib", 1, _gib, 2), when="Actual usage is"),
    _r("usage_consumed", ("fig", "consumed_gib", 1, _gib, 2), when="Actual usage is"),
    _r("usage_act", ("fig", "activation_gib", 1, _gib, 2), when="Actual usage is"),
    _r("usage_nt", ("fig", "non_torch_gib", 1, _gib, 2), when="Actual usage is"),
    _r(
        "usage_cg",
        ("fig", "cudagraph_gib", 1, _gib, 2),
        ("set", "cudagraph_actual", 0, _true, 1),
        when="Actual usage is",
    ),
    _r("suggest", ("fig", "suggested_kv_cache_memory_bytes", 1, _int, 2)),
    _r("kv_in_use", ("fig", "kv_cache_gib", 1, _gib, 1)),
    # graphs
    _r("cg_est", ("fig", "cudagraph_estimate_gib", 1, _gib, 2)),
    _r(
        "cg_pool",
        ("fig", "cudagraph_gib", 1, _gib, 3),
        ("set", "cudagraph_actual", 0, _true, 1),
        ("fig", "cudagraph_estimate_gib", 2, _gib, 3),
    ),
    _r("cg_took", ("fig", "cudagraph_gib", 1, _gib, 3), ("set", "cudagraph_actual", 0, _true, 1)),
    # KV
    _r("kv_cpu", ("fig", "kv_cache_gib", 1, _gib, 3), ("fig", "total_gib", 2, _gib, 1)),
    _r("cpu_consumed", ("fig", "consumed_gib", 1, _gib, 2)),
    _r("kv_avail", ("fig", "kv_cache_gib", 1, _gib, 3)),
    _r("kv_v0_line", ("fig", "kv_cache_gib", 1, _gib, 3)),
    _r("kv_v0_tbl", ("fig", "kv_cache_gib", 1, _gib, 3)),
    _r("kv_v0_results", ("fig", "kv_cache_gib", 1, _gib, 3)),
    _r("kv_fixed", ("fig", "free_at_start_gib", 1, _gib, 2), ("fig", "kv_cache_gib", 2, _gib, 3)),
    _r("kv_tokens", ("fig", "kv_cache_tokens", 1, _int, 3)),
    _r("concurrency", ("fig", "max_concurrency", 2, _gib, 3), ("set", "max_model_len", 1, _int, 1)),
    _r("blocks", ("fig", "num_gpu_blocks", 1, _int, 2)),
    _r("blocks_v1", ("fig", "num_gpu_blocks", 1, _int, 2)),
    _r("blocks_override", ("fig", "num_gpu_blocks", 1, _int, 3)),
    _r("block_bump", ("fig", "block_size", 1, _int, 3)),
    _r("init_done", ("fig", "init_seconds", 1, _gib, 3), ends=True),
)


def _apply_rules(b: _Builder, line: str) -> None:
    matched: set[str] = set()
    for rule in _RULES:
        if rule.when is not None and rule.when not in line:
            continue
        if rule.unless is not None and rule.unless in matched:
            continue
        m = _RX[rule.key].search(line)
        if m is None:
            continue
        matched.add(rule.key)
        for what, field, group, conv, prio in rule.fields:
            value = conv(m.group(group) if group else None)
            if what == "fig":
                b.figure(field, value, prio)
            else:
                b.setting(field, value, prio)
        if rule.ends:
            b.ended = True


# ---- startup errors (vllm-memory.md §2.1, §3.4, §6; V0 wording for max seq len): one handler each,
# since an error also sets figures/settings and picks its kind from context.


def _e_cpu_kv(b: _Builder, line: str, m: re.Match[str]) -> None:
    nums = {"free_gib": _gib(m.group(1)), "total_gib": _gib(m.group(2)), "requested_gib": _gib(m.group(4))}
    b.error("free_memory", _from(line, m), nums)


def _e_free(b: _Builder, line: str, m: re.Match[str]) -> None:
    f, t, u, r = (_gib(x) for x in m.groups())
    b.figure("free_at_start_gib", f, 4)
    b.figure("total_gib", t, 4)
    b.setting("gpu_memory_utilization", u, 4)
    b.error(
        "free_memory", _from(line, m), {"free_gib": f, "total_gib": t, "utilization": u, "requested_gib": r}
    )


def _e_nocache(b: _Builder, line: str, m: re.Match[str]) -> None:
    last = [*_RX["e_nocache"].finditer(line)][-1]  # 'raise ValueError("No avail... " ValueError: No avail...'
    b.error("no_cache_blocks", _from(line, last))


def _e_maxlen(b: _Builder, line: str, m: re.Match[str]) -> None:
    nums = {
        "max_model_len": _gib(m.group(1)),
        "needed_gib": _gib(m.group(2)),
        "available_gib": _gib(m.group(3)),
    }
    if m.group(4):
        nums["estimated_max_len"] = _gib(m.group(4))
    b.setting("max_model_len", _int(m.group(1)), 2)
    b.figure("kv_cache_gib", _gib(m.group(3)), 2)
    b.error("max_seq_len", _from(line, m), nums)


def _e_maxlen_v0(b: _Builder, line: str, m: re.Match[str]) -> None:
    b.setting("max_model_len", _int(m.group(1)), 2)
    b.figure("kv_cache_tokens", _int(m.group(2)), 1)
    b.error("max_seq_len", _from(line, m), {"max_model_len": _gib(m.group(1)), "kv_tokens": _gib(m.group(2))})


def _e_maxlen_loose(b: _Builder, line: str, m: re.Match[str]) -> None:
    b.error("max_seq_len", _from(line, m), {"needed_gib": _gib(m.group(1))})


def _e_mamba(b: _Builder, line: str, m: re.Match[str]) -> None:
    nums = {"mamba_blocks": _gib(m.group(2))} if m.group(2) else {}
    if m.group(1):
        nums["max_num_seqs"] = _gib(m.group(1))
        b.setting("max_num_seqs", _int(m.group(1)), 2)
    b.error("mamba_cache_blocks", _from(line, m), nums)


def _e_profiling(b: _Builder, line: str, m: re.Match[str]) -> None:
    b.figure("free_at_start_gib", _gib(m.group(1)), 2)
    nums = {"initial_free_gib": _gib(m.group(1)), "current_free_gib": _gib(m.group(2))}
    b.error("profiling", _from(line, m), nums)


def _e_sampler(b: _Builder, line: str, m: re.Match[str]) -> None:
    b.error("sampler_oom", _from(line, m), {"dummy_requests": _gib(m.group(1))} if m.group(1) else {})


def _e_capture(b: _Builder, line: str, m: re.Match[str]) -> None:
    if "ERROR" in line or "exception" in line.lower() or "Error" in line:
        b.in_capture = True
        b.error("cuda_oom", "CUDA graph capture failed: " + line[line.find("ERROR") :].strip(), {})


def _e_oom(b: _Builder, line: str, m: re.Match[str]) -> None:
    if _RX["e_sampler"].search(line):
        return
    nums: dict[str, float] = {}
    if mm := _RX["e_oom_alloc"].search(line):
        nums["tried_gib"] = _gib(mm.group(1)) / (1024 if mm.group(2) == "MiB" else 1)
    if mm := _RX["e_oom_cap"].search(line):
        nums["device_total_gib"] = _gib(mm.group(1))
        nums["device_free_gib"] = _gib(mm.group(2)) / (1024 if mm.group(3) == "MiB" else 1)
        b.figure("total_gib", _gib(mm.group(1)), 1)
    loading = b.load_started and b.get("weights_gib") is None and b.get("kv_cache_gib") is None
    kind = "weights_do_not_fit" if loading and not b.in_capture else "cuda_oom"
    if kind in b.errors and nums and not b.errors[kind].numbers:
        b.errors[kind].numbers.update(nums)
        b.errors[kind].message = _clean_message(_from(line, m))
    b.error(kind, _from(line, m), nums)


def _e_generic(b: _Builder, line: str, m: re.Match[str]) -> None:
    b.error("other", _from(line, m))


# Pattern key -> handler; a tuple of keys is an either-or chain (the first that matches handles the line).
_ERRORS: tuple[tuple[tuple[str, ...], tuple[Callable[[_Builder, str, re.Match[str]], None], ...]], ...] = (
    (("e_cpu_kv",), (_e_cpu_kv,)),
    (("e_free",), (_e_free,)),
    (("e_nocache",), (_e_nocache,)),
    (("e_maxlen", "e_maxlen_v0", "e_maxlen_loose"), (_e_maxlen, _e_maxlen_v0, _e_maxlen_loose)),
    (("e_mamba",), (_e_mamba,)),
    (("e_profiling",), (_e_profiling,)),
    (("e_sampler",), (_e_sampler,)),
    (("e_capture",), (_e_capture,)),
    (("e_oom",), (_e_oom,)),
    (("e_generic",), (_e_generic,)),
)


def _parse_line(b: _Builder, line: str, marker: tuple[str, re.Match[str]] | None) -> None:
    if marker is not None:
        _apply_marker(b, marker)
    _apply_rules(b, line)
    if _RX["load_start"].search(line):
        b.load_started = True
    for keys, handlers in _ERRORS:
        for key, handler in zip(keys, handlers, strict=True):
            if m := _RX[key].search(line):
                handler(b, line, m)
                break
