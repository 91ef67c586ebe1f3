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


MEANINGS = {
    "free_memory": "vLLM's fraction is of TOTAL memory; at its start this process must find that much FREE. "
    "Earlier processes (and anything else on the device) hold the rest.",
    "no_cache_blocks": "After weights, the profile-run activation peak, non-torch memory and CUDA graphs, nothing "
    "of the requested budget is left for the KV cache.",
    "max_seq_len": "The KV pool is smaller than what one request at max_model_len needs.",
    "mamba_cache_blocks": "Each running sequence holds a Mamba state block; the pool has fewer blocks than max_num_seqs, "
    "so CUDA graph capture for max_num_seqs decodes cannot proceed.",
    "weights_do_not_fit": "The weights alone are larger than the memory free on the GPU.",
}
