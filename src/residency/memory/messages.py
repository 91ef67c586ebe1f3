"""vLLM's own error texts by version, with predicted numbers filled in, and the ONE table of what each
error means and its generic fix (ERRORS), used by plan, explain and up.

Texts copied from the wheels (vllm-memory.md §2.1, §6.1, §6.2; mamba-blocks check from
vllm/config/compilation.py @0.33.0, issue #34094).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from residency.memory.versions import VersionRules
from residency.units import GiB

DOCS = "See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details."


def _gib(rules: VersionRules, b: float) -> str:
    """format_gib (>= 0.14: str(round(x, 2))) vs "%.2f" (<= 0.13)."""
    x = b / GiB
    return f"{round(x, 2)}" if rules.free_message_round_str else f"{x:.2f}"


def free_memory(
    rules: VersionRules,
    free_b: float,
    total_b: float,
    util: float,
    requested_b: float,
    device: str = "cuda:0",
) -> str:
    dev = f"{device} " if rules.free_message_names_device else ""
    return (
        f"Free memory on device {dev}({_gib(rules, free_b)}/{_gib(rules, total_b)} GiB) on startup is less than "
        f"desired GPU memory utilization ({util}, {_gib(rules, requested_b)} GiB). Decrease GPU memory utilization "
        "or reduce GPU memory used by other processes."
    )


def no_cache_blocks(rules: VersionRules) -> str:
    msg = "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine"
    if rules.messages_docs_link:  # 0.33 adds the CPU-backend note and the docs link
        return (
            msg
            + " (this flag also controls CPU memory reservation on the CPU backend, despite its name). "
            + DOCS
        )
    return msg + "."


def max_seq_len(
    rules: VersionRules, max_model_len: int, needed_b: int, available_b: int, estimated: int
) -> str:
    who = "models's" if rules.models_typo else "model's"  # typo fixed in 0.22
    est = (
        f"Based on the available memory, the estimated maximum model length is {estimated}. "
        if estimated > 0
        else ""
    )
    if rules.messages_docs_link:
        tail = (
            "Try increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU backend) or "
            "decreasing `max_model_len` when initializing the engine. " + DOCS
        )
    else:
        tail = "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
    return (
        f"To serve at least one request with the {who} max seq len ({max_model_len}), ({_gib(rules, needed_b)} GiB KV cache "
        f"is needed, which is larger than the available KV cache memory ({_gib(rules, available_b)} GiB). {est}{tail}"
    )


def mamba_cache_blocks(max_num_seqs: int, num_blocks: int) -> str:
    return (
        f"max_num_seqs ({max_num_seqs}) exceeds available Mamba cache blocks ({num_blocks}). Each decode sequence "
        "requires one Mamba cache block, so CUDA graph capture cannot proceed. Please lower max_num_seqs to at most "
        f"{num_blocks} or increase gpu_memory_utilization."
    )


def mamba_capture_abort(max_num_seqs: int, num_blocks: int) -> str:
    """< 0.17: no check; capturing decode graphs for max_num_seqs reads past the Mamba state tensors."""
    return (
        f"CUDA graph capture failed: decode batch {max_num_seqs} (max_num_seqs) exceeds the {num_blocks} Mamba cache "
        "blocks (illegal memory access during capture; vLLM issue #34094)."
    )


def weights_do_not_fit(weights_b: float, free_b: float) -> str:
    return (
        f"CUDA out of memory while loading the model: weights need {weights_b / GiB:.2f} GiB per GPU but only "
        f"{free_b / GiB:.2f} GiB is free."
    )


def sampler_oom(num_reqs: int) -> str:
    """gpu_model_runner.py:5667-5673 @0.20.0 (same text 0.10.1-0.33.0, :5928-5934 @0.33.0)."""
    return (
        f"CUDA out of memory occurred when warming up sampler with {num_reqs} dummy requests. Please try lowering "
        "`max_num_seqs` or `gpu_memory_utilization` when initializing the engine."
    )


# Kinds whose message is residency's own prediction, not text vLLM prints: the plan must not show them as
# "vLLM says" (torch's real OutOfMemoryError names sizes residency cannot know in advance).
PREDICTED_TEXT = frozenset({"graph_capture_oom", "kv_alloc_oom", "overcommit", "agent_context"})


def graph_capture_oom(graphs_b: float, left_b: float) -> str:
    """Predicted torch.OutOfMemoryError inside capture_model (gpu_model_runner.capture_model), after the KV
    pool exists; torch's own text names the failing allocation instead."""
    return (
        f"CUDA out of memory expected while capturing CUDA graphs (torch.OutOfMemoryError): the graph pool needs about "
        f"{graphs_b / GiB:.2f} GiB and {left_b / GiB:.2f} GiB is left after the KV cache."
    )


def kv_alloc_oom(kv_b: float, free_b: float) -> str:
    """Predicted torch.OutOfMemoryError when the KV tensors are allocated (initialize_from_config)."""
    return (
        f"CUDA out of memory expected (torch.OutOfMemoryError) allocating {kv_b / GiB:.2f} GiB for the KV cache "
        f"with {free_b / GiB:.2f} GiB free on the device at startup (weights and the rest included)."
    )


@dataclass(frozen=True)
class ErrorMeaning:
    """What one vLLM start-up error means and the generic fix. `plan` shows it with a predicted error,
    `explain` when a log lacks the numbers for a worked fix, `up` (runtime.logwatch) for a failed start.
    `patterns` recognise vLLM's text in a log line (wording of 0.10.1-0.33.0, the functions above)."""

    kind: str  # the verdict kind plan, explain and up report
    meaning: str
    fix: str
    patterns: tuple[re.Pattern[str], ...] = ()


def _p(*regexes: str, flags: int = 0) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(r, flags) for r in regexes)


# The ONE table of vLLM error meanings. The first entry of a kind is its generic meaning (plan's);
# for matching, specific texts come before generic ones ("out of memory").
ERRORS: tuple[ErrorMeaning, ...] = (
    ErrorMeaning(
        "free_memory",
        "vLLM's fraction is of TOTAL memory: at its start this engine must find total x gpu_memory_utilization "
        "FREE, and earlier engines (and anything else on the device) hold the rest",
        "stop the other holder (see `residency status`), lower gpu_memory_utilization, or re-plan with "
        "device.used_gib; start engines one at a time",
        _p(r"Free memory on device .* is less than desired GPU memory utilization"),
    ),
    ErrorMeaning(
        "free_memory",
        "the CPU backend's memory fraction (--gpu-memory-utilization) or KV size exceeds available host memory",
        "lower gpu_memory_utilization / kv_cache_memory_bytes, or free host memory",
        _p(
            r"on startup is less than desired CPU memory utilization|Available memory on node .* is less than"
        ),
    ),
    ErrorMeaning(
        "no_cache_blocks",
        "after the weights, the profiled activation peak, non-torch memory and (>= 0.20) the CUDA graph "
        "estimate, nothing of the requested budget is left for the KV cache",
        "raise gpu_memory_utilization or lower max_num_batched_tokens; start engines one at a time",
        _p(r"No available memory for the cache blocks"),
    ),
    ErrorMeaning(
        "max_seq_len",
        "the KV pool is smaller than what one request at max_model_len needs",
        "lower max_model_len to the estimate vLLM prints, or give the model more memory",
        _p(r"To serve at least one request with the models? max seq len"),
    ),
    ErrorMeaning(
        "max_seq_len",
        "max_model_len is longer than the model's own context limit (max_position_embeddings)",
        "lower max_model_len to the model's limit {limit}, or set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 only if the "
        "rope scaling supports it",
        _p(r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len \(([^)]*)\)"),
    ),
    ErrorMeaning(
        "mamba_cache_blocks",
        "each running sequence of a hybrid model holds a Mamba state block; the pool has fewer blocks than "
        "max_num_seqs, so CUDA graph capture for max_num_seqs decodes cannot proceed",
        "lower max_num_seqs or give the model more memory",
        _p(r"exceeds available Mamba cache blocks|mamba cache blocks", flags=re.I),
    ),
    ErrorMeaning(
        "profiling",
        "another process freed or allocated memory while this engine profiled, so vLLM's accounting would be wrong",
        "start engines one at a time (residency up does) and keep anything else off the device during startup",
        _p(r"Error in memory profiling"),
    ),
    ErrorMeaning(
        "other",
        "the --tool-call-parser name is not one this vLLM version knows",
        "pick a registered parser (e.g. hermes, qwen3_coder, llama3_json) for tool_call_parser",
        _p(r"tool_parser:'([^']+)' which has not been registered|invalid tool call parser", flags=re.I),
    ),
    ErrorMeaning(
        "sampler_oom",
        "After the KV pool is allocated and CUDA graphs are captured, vLLM warms the sampler with "
        "max_num_seqs dummy requests (max_num_seqs x vocab x 4 B logits plus sort/top-k temporaries); what is left "
        "of the free memory does not hold them.",
        "lower max_num_seqs (the warm-up batch), or lower gpu_memory_utilization a little to leave headroom "
        "outside the budget",
        _p(r"when warming up sampler with \d+ dummy requests"),
    ),
    ErrorMeaning(
        "graph_capture_oom",
        "CUDA graphs are captured after the KV pool is allocated; where their memory is not reserved in the "
        "budget (< 0.20, or a pinned pool) the free memory left does not hold them.",
        "lower gpu_memory_utilization by the graph memory, or set enforce_eager (no graphs), or lower "
        "max_cudagraph_capture_size / max_num_seqs",
    ),
    ErrorMeaning(
        "kv_alloc_oom",
        "kv_cache_memory_bytes is used as given (profiling subtracts nothing): weights plus the pinned pool do "
        "not fit in the memory free at startup.",
        "lower kv_cache_memory_bytes, or free memory on the device before this engine starts",
    ),
    ErrorMeaning(
        "overcommit",
        "The footprints of all engines plus what else holds memory (used_gib, and on unified memory the host "
        "reserve for the OS, page cache and agents) exceed the device: every engine may pass its own check, but "
        "the last one's memory outside its budget has nowhere to go (on unified memory the host freezes).",
        "lower the engines' fractions, max_model_len or max_num_seqs until the footprints fit the device",
    ),
    ErrorMeaning(
        "at_risk",
        "The fraction needs more free memory at startup than an idle box of this kind reliably offers (vLLM "
        "reads MemAvailable on unified memory); it loads on some boxes and fails the startup check on others.",
        "lower gpu_memory_utilization to what the box reliably has free at startup, or drop caches before the start",
    ),
    ErrorMeaning(
        "cuda_oom",
        "an allocation after profiling (CUDA graph capture, sampler warm-up) ran out of memory",
        "lower gpu_memory_utilization / max_num_seqs, or enforce_eager to skip graph capture",
        _p(r"out of memory|CUDA out of memory|OutOfMemoryError", flags=re.I),
    ),
    ErrorMeaning(
        "weights_do_not_fit",
        "the weights alone (per GPU) are larger than the memory free on the device",
        "use a quantized checkpoint, tensor_parallel_size > 1, or free the device first (other engines hold memory)",
    ),
    ErrorMeaning(
        "other",
        "the port is taken by another process",
        "choose another port for this model (models[].port) or stop the holder",
        _p(r"[Aa]ddress already in use"),
    ),
    ErrorMeaning(
        "other",
        "the engine failed to start; the log shows no memory error residency knows (the cause is further up)",
        "read the traceback above the failure line; run with VLLM_LOGGING_LEVEL=DEBUG for more",
    ),
)


def meaning_of(kind: str) -> ErrorMeaning:
    """The table's entry for a verdict kind: its first pattern-less entry, else its first entry; an
    unknown kind gets the generic "other"."""
    mine = [e for e in ERRORS if e.kind == kind] or [e for e in ERRORS if e.kind == "other"]
    return next((e for e in mine if not e.patterns), mine[0])


def match_error(line: str) -> tuple[ErrorMeaning, re.Match[str]] | None:
    """The first table entry whose pattern matches this log line."""
    for e in ERRORS:
        for pat in e.patterns:
            m = pat.search(line)
            if m:
                return e, m
    return None


def sentence(text: str) -> str:
    """A table fragment as a sentence: capitalised, ending with a full stop."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


# kind -> its generic meaning as a sentence (plan shows it beside a predicted error)
MEANINGS: dict[str, str] = {e.kind: sentence(meaning_of(e.kind).meaning) for e in ERRORS}
