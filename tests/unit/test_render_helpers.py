"""Hand-built specs and plans for render/runtime unit tests (no planner needed)."""

from __future__ import annotations

from residency.planner.result import DevicePlan, ModelPlan, Plan
from residency.spec import parse_spec


def two_model_spec(**proxy):
    return parse_spec(
        {
            "vllm_version": "0.11.0",
            "device": {"preset": "dgx-spark", "total_gib": 119.67, "unified": True},
            "models": [
                {
                    "name": "qwen3-next",
                    "model": "Qwen/Qwen3-Next-80B-A3B-Instruct-FP8",
                    "max_model_len": 131072,
                    "max_num_seqs": 8,
                    "tool_call_parser": "hermes",
                    "kv_cache_dtype": "fp8",
                    "env": {"VLLM_USE_FLASHINFER_SAMPLER": "0"},
                },
                {
                    "name": "qwen3-4b",
                    "model": "Qwen/Qwen3-4B-Instruct-2507",
                    "max_model_len": 32768,
                    "reasoning_parser": "qwen3",
                    "enforce_eager": True,
                    "extra_args": ["--seed", "7"],
                },
            ],
            "proxy": proxy or {},
        }
    )


def mplan(name, model, gmu, *, weights=10.0, kv=5.0, tokens=50000, mml=32768, seqs=16, kvb=None, **kw):
    return ModelPlan(
        name=name,
        model=model,
        gpu_memory_utilization=gmu,
        requested_gib=gmu * 119.67,
        free_at_start_gib=100.0,
        weights_gib=weights,
        activation_gib=1.0,
        non_torch_gib=0.5,
        cudagraph_gib=0.5,
        kv_cache_gib=kv,
        kv_cache_tokens=tokens,
        max_concurrency=tokens / mml,
        block_size=16,
        footprint_gib=weights + kv + 2.0,
        verdict="ok",
        max_model_len=mml,
        max_num_seqs=seqs,
        max_num_batched_tokens=8192,
        kv_cache_memory_bytes=kvb,
        **kw,
    )


def two_model_plan():
    """Plan order: the big model first (qwen3-next), then qwen3-4b."""
    return Plan(
        vllm_version="0.11.0",
        device=DevicePlan(
            name="NVIDIA DGX Spark (GB10)", total_gib=119.67, unified=True, used_gib=0, budget_gib=113.7
        ),
        fits=True,
        utilization_sum=0.85,
        launch_order=["qwen3-next", "qwen3-4b"],
        models=[
            mplan("qwen3-4b", "Qwen/Qwen3-4B-Instruct-2507", 0.2, weights=7.5, kv=12.0, mml=32768, seqs=16),
            mplan(
                "qwen3-next",
                "Qwen/Qwen3-Next-80B-A3B-Instruct-FP8",
                0.65,
                weights=75.0,
                kv=20.0,
                mml=131072,
                seqs=8,
                kvb=21474836480,
            ),
        ],
    )
