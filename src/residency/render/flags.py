"""The ONE place that turns a planned model into `vllm serve` arguments.

compose.yaml, the Kubernetes manifests and the process runtime all call `serve_args`; nothing else
spells vLLM flags. Flag names hold for vLLM 0.10.1-0.33.0 unless a comment says otherwise.
"""

from __future__ import annotations

from residency.errors import SpecError
from residency.memory.versions import rules_for
from residency.planner.result import ModelPlan
from residency.spec import ModelSpec

# >= 0.10.2: --kv-cache-memory-bytes exists (PR #21489); older engines reject the flag.


def _fmt_fraction(x: float) -> str:
    """0.4 -> '0.4', 0.123456 -> '0.1235' (4 decimals is finer than vLLM's own log rounding)."""
    s = f"{x:.4f}".rstrip("0").rstrip(".")
    return s or "0"


def serve_args(
    ms: ModelSpec,
    mp: ModelPlan,
    *,
    vllm_version: str,
    port: int,
    host: str | None = None,
    model_path: str | None = None,
) -> list[str]:
    """Arguments after `vllm serve`: the model reference first, then the planned flags.

    `model_path` replaces the spec's model reference where the runtime sees it elsewhere (a local
    directory mounted into a container). The served model name is always the spec's `name`, so
    agents and LiteLLM use the same name whatever the checkpoint path is.

    Long on purpose: one flag per vLLM option, in `vllm serve` order.
    """
    args: list[str] = [model_path or ms.model, "--served-model-name", ms.name]
    if host:
        args += ["--host", host]
    args += ["--port", str(port)]
    if ms.revision:
        args += ["--revision", ms.revision]

    # Memory: the fraction always goes in. With a fixed KV pool the fraction still drives vLLM's
    # startup free-memory check (all versions), so the plan gives the matching fraction too.
    args += ["--gpu-memory-utilization", _fmt_fraction(mp.gpu_memory_utilization)]
    if mp.kv_cache_memory_bytes:
        if not rules_for(vllm_version).has_kv_cache_memory_bytes:
            raise SpecError(
                f"models[{ms.name}].kv_cache_memory_bytes",
                f"vLLM {vllm_version} has no --kv-cache-memory-bytes (added in 0.10.2)",
                "use gpu_memory_utilization, or set vllm_version >= 0.10.2",
            )
        args += ["--kv-cache-memory-bytes", str(mp.kv_cache_memory_bytes)]

    max_model_len = mp.max_model_len or ms.max_model_len
    max_num_seqs = mp.max_num_seqs or ms.max_num_seqs
    max_batched = mp.max_num_batched_tokens or ms.max_num_batched_tokens
    if max_model_len:
        args += ["--max-model-len", str(max_model_len)]
    if max_num_seqs:
        args += ["--max-num-seqs", str(max_num_seqs)]
    if max_batched:
        args += ["--max-num-batched-tokens", str(max_batched)]
    tp = mp.tensor_parallel_size or ms.tensor_parallel_size
    if tp > 1:
        args += ["--tensor-parallel-size", str(tp)]
    if ms.pipeline_parallel_size > 1:
        args += ["--pipeline-parallel-size", str(ms.pipeline_parallel_size)]

    if ms.dtype != "auto":
        args += ["--dtype", ms.dtype]
    if ms.quantization:
        args += ["--quantization", ms.quantization]
    if ms.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", ms.kv_cache_dtype]
    if ms.mamba_ssm_cache_dtype != "auto":
        args += ["--mamba-ssm-cache-dtype", ms.mamba_ssm_cache_dtype]
    # Only a block size the user asked for: the plan's block_size may be the engine's own
    # hybrid page-size bump, which vLLM computes itself (<= 0.19 in the model config, >= 0.20 in
    # the platform after the attention backend is known; passing it back can fail alignment).
    if ms.block_size:
        args += ["--block-size", str(ms.block_size)]
    if ms.enable_prefix_caching is True:
        args += ["--enable-prefix-caching"]
    elif ms.enable_prefix_caching is False:
        args += ["--no-enable-prefix-caching"]
    if ms.enforce_eager:
        args += ["--enforce-eager"]

    # Tools: `auto` tool choice needs both flags (all versions); without them vLLM answers 400.
    if ms.auto_tool_choice:
        args += ["--enable-auto-tool-choice"]
    if ms.tool_call_parser:
        args += ["--tool-call-parser", ms.tool_call_parser]
    if ms.reasoning_parser:
        args += ["--reasoning-parser", ms.reasoning_parser]
    if ms.chat_template:
        args += ["--chat-template", ms.chat_template]

    args += list(ms.extra_args)
    return args


def serve_command(vllm: str, args: list[str]) -> list[str]:
    return [vllm, "serve", *args]
