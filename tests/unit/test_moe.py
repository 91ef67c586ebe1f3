"""Fused-MoE memory from vLLM's kernel allocations (memory/moe.py): MXFP4 expert weights per backend
and the fused-MoE workspace per version, checked against hand-computed shapes and logged figures."""

from __future__ import annotations

import pytest

from residency.memory import catalog, moe
from residency.memory.config_facts import facts_from_config
from residency.memory.versions import rules_for
from residency.memory.weights import weights_bytes_per_rank

GiB = 2**30


def _gpt_oss_120b():
    e = catalog.lookup("openai/gpt-oss-120b")
    assert e is not None
    return facts_from_config(e.config, model_id=e.id, source="catalog", checkpoint_bytes=e.total_size_bytes)


@pytest.mark.parametrize(
    ("version", "cc", "backend"),
    [
        ("0.10.1", "9.0", "marlin"),  # no triton_kernels in a stock install (r015 logs Marlin)
        ("0.11.0", "9.0", "marlin"),
        ("0.14.1", "9.0", "triton"),  # vendored triton_kernels (r017 logs "Using Triton backend")
        ("0.14.1", "8.9", "marlin"),
        ("0.14.1", "10.0", "flashinfer"),
        ("0.27.0", "12.0", "triton"),
        ("0.32.0", "12.1", "marlin"),
    ],
)
def test_mxfp4_backend_by_version_and_device(version, cc, backend):
    assert moe.mxfp4_backend(cc, rules_for(version)) == backend


def test_gpt_oss_120b_weights_match_logged_per_backend():
    f = _gpt_oss_120b()
    marlin = weights_bytes_per_rank(
        f, max_model_len=131072, rules=rules_for("0.10.1"), compute_capability="9.0"
    )
    triton = weights_bytes_per_rank(
        f, max_model_len=131072, rules=rules_for("0.14.1"), compute_capability="9.0"
    )
    assert marlin / GiB == pytest.approx(65.97, abs=0.1)  # r015: "Model loading took 65.9651 GiB"
    assert triton / GiB == pytest.approx(
        64.38, abs=0.07
    )  # r017: 64.38 GiB (scales held twice, the swizzled copy padded)
    # >= 0.25 the Triton path frees the unswizzled scales: 36 x 128 x 3 x 2880^2 / 32 B less
    later = weights_bytes_per_rank(
        f, max_model_len=131072, rules=rules_for("0.27.0"), compute_capability="9.0"
    )
    assert triton - later == 36 * 128 * 3 * 2880 * 2880 // 32


def test_fused_moe_workspace_by_version():
    f = _gpt_oss_120b()
    k, i, h = 4, 2880, 2880
    # <= 0.12 fused_experts_impl: cache13 (max(2I, H)) + cache2 (I) per top-k row + output, chunked at 32768
    assert (
        moe.fused_moe_workspace_bytes(f, 40000, 1, 2, rules_for("0.11.0"))
        == 32768 * (k * (2 * i + i) + h) * 2
    )
    # 0.13 still fused_experts_impl, chunked at 16384 from 0.12
    assert (
        moe.fused_moe_workspace_bytes(f, 40000, 1, 2, rules_for("0.13.0"))
        == 16384 * (k * (2 * i + i) + h) * 2
    )
    # 0.14-0.17 modular: workspace13 max(I, H) + workspace2 max(2I, H), still chunked at 16384
    # (VLLM_FUSED_MOE_CHUNK_SIZE default 16 * 1024, envs.py:789-791 @0.12.0; docs/vllm-versions.md V12-moe-chunk)
    assert moe.fused_moe_workspace_bytes(f, 40000, 1, 2, rules_for("0.14.0")) == 16384 * k * (h + 2 * i) * 2
    # >= 0.18 no chunking
    assert moe.fused_moe_workspace_bytes(f, 40000, 1, 2, rules_for("0.19.1")) == 40000 * k * (h + 2 * i) * 2
    # MXFP4 Triton (matmul_ogs, fused swiglu): one I-wide row per top-k + the output
    assert (
        moe.fused_moe_workspace_bytes(f, 1000, 1, 2, rules_for("0.14.1"), "triton") == 1000 * (k * i + h) * 2
    )
    # Marlin: padded sizes (I 2880 -> 2944, H -> 3072), no chunking
    assert (
        moe.fused_moe_workspace_bytes(f, 1000, 1, 2, rules_for("0.10.1"), "marlin")
        == 1000 * (k * (2 * 2944 + 2944) + h) * 2
    )


def test_flashinfer_mxfp4_padding_by_version():
    # B200 (cc 10.0) runs FlashInfer TRTLLM: intermediate 2880 -> 3072 (256) before 0.27, 2944 (128) after;
    # hidden 2880 -> 3072 both; biases fp32
    f = _gpt_oss_120b()

    def experts(version: str) -> int:
        return moe.mxfp4_loaded_expert_bytes(f, 1, "flashinfer", rules_for(version), "10.0")

    def expected(i: int) -> int:
        h, e = 3072, 128
        return 36 * (e * 3 * i * h // 2 + e * 3 * i * h // 32 + e * (2 * i + h) * 4)

    assert experts("0.26.0") == expected(3072)
    assert experts("0.27.0") == expected(2944)
