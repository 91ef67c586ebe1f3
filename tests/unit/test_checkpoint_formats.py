"""Every common checkpoint format resolves offline from a local directory or the HF cache, from its
config.json (and ModelOpt's hf_quant_config.json) alone: fixtures in tests/fixtures/checkpoint_formats/."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import pytest

from residency.memory import resolve
from residency.memory.resolve import resolve_model
from residency.spec import ModelSpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_formats"

# Llama-3.1-8B: decoder linears (q, k, v, o, gate, up, down) and the rest (embedding, LM head, norms)
LINEAR = 32 * (4096 * (4096 + 2 * 1024) + 4096 * 4096 + 3 * 4096 * 14336)
REST = 2 * 128256 * 4096 + 32 * 2 * 4096 + 4096


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    for k in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_CACHE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolve.clear_cache()
    yield
    resolve.clear_cache()


@pytest.mark.parametrize(
    ("name", "method", "bits"),
    [
        ("ct-fp8-dynamic", "compressed-tensors", 8.0),
        ("ct-w4a16", "compressed-tensors", 4.125),  # symmetric: no zero points (wNa16 scheme)
        ("ct-w8a8-int8", "compressed-tensors", 8.0),
        ("ct-nvfp4", "compressed-tensors", 4.5),
        ("modelopt-fp8", "modelopt", 8.0),  # no quantization_config: hf_quant_config.json
        ("modelopt-nvfp4", "modelopt_fp4", 4.5),
        ("awq", "awq", 4.15625),
        ("gptq", "gptq", 4.15625),
        ("bnb-nf4", "bitsandbytes", 4 + 8 / 64 + 32 / (64 * 256)),
    ],
)
def test_quantized_formats_from_a_local_dir(tmp_path, name, method, bits):
    d = tmp_path / name
    shutil.copytree(FIXTURES / name, d)
    f = resolve_model(ModelSpec(name="m", model=str(d)))
    assert f.source == "local" and (f.quantization, f.quant_bits) == (method, round(bits, 6))
    assert f.layer_kinds == ("full",) * 32
    # size from the config alone: quantized linears at their bits, the rest in the checkpoint dtype
    assert f.checkpoint_bytes is None
    assert f.estimated_bytes == math.ceil(LINEAR * bits / 8) + REST * 2


def test_nemotron_h_block_list_from_the_hf_cache(tmp_path):
    hub = tmp_path / "hf-home" / "hub"
    root = hub / "models--nvidia--Nemotron-H-block-list"
    snap = root / "snapshots" / ("c" * 40)
    shutil.copytree(FIXTURES / "nemotron-h-block-list", snap)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("c" * 40)
    f = resolve_model(ModelSpec(name="m", model="nvidia/Nemotron-H-block-list"))
    assert f.source == "hf-cache" and f.num_hidden_layers == 56
    assert Counter(f.layer_kinds) == {"mamba2": 27, "none": 25, "full": 4}
    assert (f.mamba.kind, f.mamba.num_heads, f.mamba.head_dim, f.mamba.d_state) == ("mamba2", 128, 80, 128)
