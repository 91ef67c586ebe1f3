"""vLLM's own error texts by version, with predicted numbers filled in, plus meaning and fix text.

Texts copied from the wheels (vllm-memory.md §2.1, §6.1, §6.2; mamba-blocks check from
vllm/config/compilation.py @0.33.0, issue #34094).
"""

from __future__ import annotations

from residency.memory.versions import VersionRules

GiB = 2**30
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
    gib = (lambda b: f"{round(b / GiB, 2)}") if rules.free_message_round_str else (lambda b: f"{b / GiB:.2f}")
    if rules.messages_docs_link:
        tail = (
            "Try increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU backend) or "
            "decreasing `max_model_len` when initializing the engine. " + DOCS
        )
    else:
        tail = "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
    return (
        f"To serve at least one request with the {who} max seq len ({max_model_len}), ({gib(needed_b)} GiB KV cache "
        f"is needed, which is larger than the available KV cache memory ({gib(available_b)} GiB). {est}{tail}"
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


def graph_capture_oom(graphs_b: float, left_b: float) -> str:
    """torch's allocator error inside capture_model (gpu_model_runner.capture_model), after the KV pool exists."""
    return (
        f"torch.OutOfMemoryError: CUDA out of memory while capturing CUDA graphs: the graph pool needs about "
        f"{graphs_b / GiB:.2f} GiB and {left_b / GiB:.2f} GiB is left after the KV cache."
    )


def kv_alloc_oom(kv_b: float, free_b: float) -> str:
    """torch's allocator error when the KV tensors are allocated (initialize_from_config)."""
    return (
        f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {kv_b / GiB:.2f} GiB for the KV cache "
        f"with {free_b / GiB:.2f} GiB free on the device at startup (weights and the rest included)."
    )


MEANINGS = {
    "free_memory": "vLLM's fraction is of TOTAL memory; at its start this process must find that much FREE. "
    "Earlier processes (and anything else on the device) hold the rest.",
    "no_cache_blocks": "After weights, the profile-run activation peak, non-torch memory and CUDA graphs, nothing "
    "of the requested budget is left for the KV cache.",
    "max_seq_len": "The KV pool is smaller than what one request at max_model_len needs.",
    "mamba_cache_blocks": "Each running sequence holds a Mamba state block; the pool has fewer blocks than max_num_seqs, "
    "so CUDA graph capture for max_num_seqs decodes cannot proceed.",
    "weights_do_not_fit": "The weights alone are larger than the memory free on the GPU.",
    "sampler_oom": "After the KV pool is allocated and CUDA graphs are captured, vLLM warms the sampler with "
    "max_num_seqs dummy requests (max_num_seqs x vocab x 4 B logits plus sort/top-k temporaries); what is left "
    "of the free memory does not hold them.",
    "graph_capture_oom": "CUDA graphs are captured after the KV pool is allocated; where their memory is not "
    "reserved in the budget (< 0.20, or a pinned pool) the free memory left does not hold them.",
    "kv_alloc_oom": "kv_cache_memory_bytes is used as given (profiling subtracts nothing): weights plus the "
    "pinned pool do not fit in the memory free at startup.",
    "overcommit": "The footprints of all engines plus what else holds memory (used_gib, and on unified memory the "
    "host reserve for the OS, page cache and agents) exceed the device: every engine may pass its own check, "
    "but the last one's memory outside its budget has nowhere to go (on unified memory the host freezes).",
    "at_risk": "The fraction needs more free memory at startup than an idle box of this kind reliably offers "
    "(vLLM reads MemAvailable on unified memory); it loads on some boxes and fails the startup check on others.",
}
