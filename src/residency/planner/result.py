"""The plan's result: the contract of `residency plan --json`, read by render, up, status and verify.

All GiB figures are GiB = 2^30 bytes, per GPU (per TP rank) unless named otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

ErrorKind = Literal[
    "free_memory",
    "no_cache_blocks",
    "max_seq_len",
    "mamba_cache_blocks",
    "weights_do_not_fit",
    "agent_context",
    "sampler_oom",
    "graph_capture_oom",
    "kv_alloc_oom",
    "overcommit",
    "at_risk",
]


class PlanError(BaseModel):
    kind: ErrorKind
    message: str  # vLLM's own wording with the predicted numbers filled in
    fix: str  # the smallest change that makes it load
    meaning: str = ""  # what it means, in plain words


class ModelPlan(BaseModel):
    name: str
    model: str
    gpu_memory_utilization: float
    requested_gib: float
    free_at_start_gib: float
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cudagraph_gib: float
    kv_cache_gib: float  # vLLM's "Available KV cache memory", per GPU
    kv_cache_tokens: int  # vLLM's "GPU KV cache size: N tokens"
    max_concurrency: float  # at max_model_len
    block_size: int
    footprint_gib: float
    verdict: Literal["ok", "fail", "at_risk"]
    error: PlanError | None = None
    # unified memory: the KV pool a cold (first launch on the box) and a warm start get; kv_cache_gib is the
    # one of device.start
    kv_cache_gib_cold: float | None = None
    kv_cache_gib_warm: float | None = None
    start: Literal["cold", "warm"] | None = None
    # unified memory, cold start: checkpoint page cache the next engine's startup check counts as used
    page_cache_gib: float = 0.0
    # Beyond the contract: settings as resolved (what render and up launch with)
    max_model_len: int = 0
    max_num_seqs: int = 0
    max_num_batched_tokens: int = 0
    kv_cache_memory_bytes: int | None = None  # offered/used on versions that have it (>= 0.10.2)
    tensor_parallel_size: int = 1
    context_gib: float = 0.0  # CUDA context + baseline, outside the budget
    host_overhead_gib: float = 0.0  # unified memory: engine host RSS charged to the budget
    cudagraph_in_budget: bool = False
    chosen_by_solver: bool = False
    calibrated: bool = False  # figures come from a calibration record of this box
    host: str | None = None  # multi-host placement
    gpus: list[int] = Field(default_factory=list)
    replica: int = 0
    notes: list[str] = Field(default_factory=list)


class DevicePlan(BaseModel):
    name: str
    total_gib: float
    unified: bool
    used_gib: float
    budget_gib: float
    count: int = 1
    start: str | None = None  # unified memory: cold | warm
    host_reserve_gib: float = 0.0
    total_source: str = "preset"  # preset | spec | live reading (...) | calibration (...)


class Plan(BaseModel):
    vllm_version: str
    device: DevicePlan
    fits: bool
    utilization_sum: float
    launch_order: list[str]
    models: list[ModelPlan]
    headroom_gib: float = 0.0
    warnings: list[str] = Field(default_factory=list)
    solver: str | None = None  # how the solver chose fractions, or why it could not

    def model(self, name: str) -> ModelPlan:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def contract(self) -> dict[str, Any]:
        """The JSON contract of `residency plan --json` (with the extra fields kept)."""
        return self.model_dump(mode="json")
