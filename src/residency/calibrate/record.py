"""A measured vLLM launch: what `calibrate` parses from a log and what `plan` uses instead of estimates.

Field names follow the plan's JSON contract so a calibration and a plan line up field by field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class LaunchError(BaseModel):
    kind: str  # free_memory, no_cache_blocks, max_seq_len, mamba_cache_blocks, weights_do_not_fit, profiling, sampler_oom, cuda_oom, other
    message: str
    # Added by calibrate (optional): the figures vLLM's error text states, by name
    # (e.g. free_gib/total_gib/utilization/requested_gib, max_model_len/needed_gib/available_gib/estimated_max_len).
    numbers: dict[str, float] = Field(default_factory=dict)


class Launch(BaseModel):
    """One engine start found in a log. None = the log did not say."""

    vllm_version: str | None = None
    model: str | None = None
    # settings as the log states them
    gpu_memory_utilization: float | None = None
    total_gib: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    tensor_parallel_size: int | None = None
    dtype: str | None = None
    kv_cache_dtype: str | None = None
    quantization: str | None = None
    enforce_eager: bool | None = None
    # measured figures (GiB per GPU)
    weights_gib: float | None = None
    activation_gib: float | None = None
    non_torch_gib: float | None = None
    cudagraph_gib: float | None = None
    kv_cache_gib: float | None = None
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    block_size: int | None = None
    num_gpu_blocks: int | None = None
    free_at_start_gib: float | None = None
    init_seconds: float | None = None
    error: LaunchError | None = None
    # Added by calibrate (optional):
    cudagraph_estimate_gib: float | None = None  # "Estimated CUDA graph memory" (>= 0.18)
    consumed_gib: float | None = None  # weights + non-torch as newer builds report them together
    non_kv_cache_gib: float | None = None  # DEBUG "Total non KV cache memory"
    kv_cache_memory_bytes: int | None = None  # --kv-cache-memory-bytes as set (>= 0.10.2)
    suggested_kv_cache_memory_bytes: int | None = None  # "--kv-cache-memory=B" to fit the requested budget
    # Settings the user gave explicitly (non-default args, command line), vLLM flag names in snake_case.
    explicit: dict[str, Any] = Field(default_factory=dict)


class CalibrationKey(BaseModel):
    """What must match for a measurement to stand in for the planner's estimate."""

    model: str
    vllm_version: str
    device: str  # device name, e.g. "NVIDIA DGX Spark (GB10)" or preset id
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    quantization: str | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    enforce_eager: bool = False


class Calibration(BaseModel):
    key: CalibrationKey
    launch: Launch
    source: str = ""  # log path it came from
    recorded_at: str = ""
    notes: list[str] = Field(default_factory=list)

    @property
    def non_kv_gib(self) -> float | None:
        """Everything the budget paid for besides KV, as measured (requested - available KV)."""
        ln = self.launch
        if ln.kv_cache_gib is None or ln.gpu_memory_utilization is None or ln.total_gib is None:
            return None
        return ln.gpu_memory_utilization * ln.total_gib - ln.kv_cache_gib
