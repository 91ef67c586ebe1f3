"""The one dtype / quantized-storage table (memory/dtypes.py): figures derived from vLLM's allocations."""

from __future__ import annotations

import pytest

from residency.memory.config_facts import read_quantization
from residency.memory.dtypes import MXFP4_BITS, NVFP4_BITS, bnb_bits, dtype_bytes, int_group_bits, norm_dtype


def test_dtype_names():
    assert [dtype_bytes(n) for n in ("torch.float32", "bf16", "half", "fp8_e5m2", "auto", None)] == [
        4,
        2,
        2,
        1,
        2,
        2,
    ]
    assert dtype_bytes("nonsense", default=4) == 4
    assert (
        norm_dtype("torch.bfloat16") == "bfloat16"
        and norm_dtype("fp16") == "float16"
        and norm_dtype(3) is None
    )


def test_awq_and_gptq_always_store_zero_points():
    # qweight + qzeros int32 + fp16 scales per group of 128: 4 + 16/128 + 4/128
    assert int_group_bits(4, 128) == 4.15625
    for method in ("awq", "gptq"):
        q = read_quantization({"quantization_config": {"quant_method": method, "bits": 4, "group_size": 128}})
        assert q is not None and q.bits == 4.15625


@pytest.mark.parametrize(("symmetric", "bits"), [(True, 4.125), (False, 4.15625)])
def test_compressed_tensors_zero_point_only_when_asymmetric(symmetric, bits):
    qc = {
        "quant_method": "compressed-tensors",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": {"num_bits": 4, "type": "int", "group_size": 128, "symmetric": symmetric},
            }
        },
    }
    assert read_quantization({"quantization_config": qc}).bits == bits


def test_microscaling_and_bitsandbytes():
    assert (MXFP4_BITS, NVFP4_BITS) == (4.25, 4.5)
    assert bnb_bits(True, False) == 4.5
    assert bnb_bits(True, True) == pytest.approx(4.127, abs=1e-3)
    assert bnb_bits(False, False) == 8.0
    qc = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_use_double_quant": True}
    assert read_quantization({"quantization_config": qc}).bits == pytest.approx(4.127, abs=1e-3)
