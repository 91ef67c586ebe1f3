"""bench/accuracy.py: every field form of the vllm-logs.jsonl schema, and a held-out-shaped file run as is.

The rows here are synthetic, shaped like the schema (vllm-logs.md); their logged figures are made up
and only the parsing and the summary's shape are checked, never the planner's accuracy on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_script

BENCH = Path(__file__).resolve().parents[2] / "bench" / "accuracy.py"


@pytest.fixture(scope="module")
def acc():
    return load_script(BENCH, "bench_accuracy")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (12, 12),
        (0.9, 0.9),
        ("0.9", 0.9),
        ("default (8192)", 8192),
        ("default (0.90)", 0.9),
        ("2048 (auto)", 2048),
        ("default (model max, 40960)", 40960),
        ("default (40960; concurrency = tokens/40960)", 40960),
        ("default (1024)", 1024),
        ("512 (chunked prefill auto-enabled for >32K)", 512),
        ("default", None),
        ("default (not in non-default args)", None),
        ("default (offline LLM, not shown)", None),
        (None, None),
        (True, None),
    ],
)
def test_num(acc, raw, want):
    assert acc.num(raw) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [(True, True), (False, False), ("default (False)", False), ("True", True), (None, None), ("", None)],
)
def test_flag(acc, raw, want):
    assert acc.flag(raw) is want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("float32", "float32"),
        ("torch.float32", "float32"),
        ("default (bf16 per model config)", "auto"),
        ("default (bf16)", "auto"),
        ("default (fp16)", "auto"),
        ("auto (not shown)", "auto"),
        ("bfloat16", "bfloat16"),
        ("float16 (cast from bf16)", "float16"),
        ("half", "float16"),
        (None, "auto"),
    ],
)
def test_parse_dtype(acc, raw, want):
    assert acc.parse_dtype(raw) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("fp8", "fp8"),
        ("fp8_e4m3", "fp8_e4m3"),
        ("fp8_e5m2", "fp8_e5m2"),
        ("auto (default)", "auto"),
        ("auto", "auto"),
        (None, "auto"),
    ],
)
def test_parse_kv_cache_dtype(acc, raw, want):
    assert acc.parse_kv_cache_dtype(raw) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("fp8", "fp8"),
        ("fp8 (online, quantization=fp8)", "fp8"),
        ("fp8 (native checkpoint)", None),
        ("none", None),
        ("awq", None),
        (None, None),
    ],
)
def test_parse_quantization(acc, raw, want):
    assert acc.parse_quantization(raw) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("H100 80GB HBM3", ("h100-80gb", 1)),
        ("NVIDIA H100 80GB HBM3", ("h100-80gb", 1)),
        ("NVIDIA H100", ("h100-80gb", 1)),
        ("2x H100 80GB HBM3", ("h100-80gb", 2)),
        ("4x H100", ("h100-80gb", 4)),
        ("H100 NVL", ("h100-94gb", 1)),
        ("H200 (139.72 GiB)", ("h200", 1)),
        ("2x GH200 (96 GB each)", ("gh200", 2)),
        ("1x A100-80GB", ("a100-80gb", 1)),
        ("L40S (46068 MiB)", ("l40s", 1)),
        ("2x L40 (48 GB)", ("l40", 2)),
        ("2x L4 (g6.12xlarge, PCIe, no NVLink)", ("l4", 2)),
        ("4x A10", ("a10", 4)),
        ("RTX 3090", ("rtx-3090", 1)),
        ("16 GB GPU (name not in excerpt), WSL2", (None, 1)),
        (None, (None, 1)),
    ],
)
def test_parse_gpu(acc, raw, want):
    assert acc.parse_gpu(raw) == want


def _rec(**kw) -> dict:
    """A record shaped like the llm-d rows the schema describes (figures synthetic)."""
    r = {
        "id": "x001",
        "source": {"repo": "example/report", "kind": "file"},
        "vllm_version": "0.19.0",
        "engine": "V1",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "model_notes": None,
        "arch_tags": ["dense", "gqa"],
        "quantization": "none",
        "dtype": "default (bf16 per model config)",
        "kv_cache_dtype": "auto (default)",
        "gpu": "H100 80GB HBM3",
        "total_gpu_memory_gib": 79.19,
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": None,
        "gpu_memory_utilization": "default (0.90)",
        "max_model_len": "default (131072)",
        "max_num_seqs": "default (1024)",
        "max_num_batched_tokens": "default (8192)",
        "enforce_eager": "default (False)",
        "other_settings": None,
        "status": "ok",
        "weights_gib": None,
        "available_kv_gib": 50.0,
        "kv_cache_tokens": None,
        "error": None,
        "raw": [],
        "notes": None,
    }
    r.update(kw)
    return r


def test_express_reads_every_field_form(acc, tmp_path):
    spec, note = acc.express(
        _rec(
            model="Qwen/Qwen2.5-7B-Instruct",
            gpu="2x H100 80GB HBM3",
            tensor_parallel_size=1,
            pipeline_parallel_size=2,
            dtype="float32",
            kv_cache_dtype="fp8_e4m3",
            quantization="fp8",
            enforce_eager=True,
        ),
        tmp_path,
    )
    assert note == ""  # catalog model, no bench-only facts
    assert spec["vllm_version"] == "0.19.0"
    assert spec["device"] == {"preset": "h100-80gb", "total_gib": 79.19, "count": 2}
    m = spec["models"][0]
    assert m["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert (m["tensor_parallel_size"], m["pipeline_parallel_size"]) == (1, 2)
    assert (m["dtype"], m["kv_cache_dtype"], m["quantization"]) == ("float32", "fp8_e4m3", "fp8")
    assert m["gpu_memory_utilization"] == 0.9
    assert (m["max_model_len"], m["max_num_seqs"], m["max_num_batched_tokens"]) == (131072, 1024, 8192)
    assert m["enforce_eager"] is True


def test_express_engine_missing_means_v1_and_model_notes_are_dropped(acc, tmp_path):
    spec, _ = acc.express(
        _rec(engine=None, vllm_version="v0.19.0 (report)", model="Qwen/Qwen2.5-7B (base, bf16)"), tmp_path
    )
    assert spec is not None and spec["models"][0]["model"] == "Qwen/Qwen2.5-7B"
    assert spec["vllm_version"] == "0.19.0"
    none, why = acc.express(_rec(engine="V0"), tmp_path)
    assert none is None and "V0" in why


def test_heldout_shaped_file_runs_as_is(acc, tmp_path, capsys):
    recs = [
        _rec(id="x001"),
        _rec(id="x002", tensor_parallel_size=2, gpu="2x H100 80GB HBM3"),
        _rec(id="x003", tensor_parallel_size=4, gpu="4x H100"),
        _rec(id="x004", pipeline_parallel_size=2, gpu="NVIDIA H100", total_gpu_memory_gib=None),
        _rec(id="x005", kv_cache_dtype="fp8"),
        _rec(id="x006", dtype="float32", model="Qwen/Qwen2.5-7B-Instruct", max_model_len="default (32768)"),
        _rec(id="x007", quantization="fp8", model="Qwen/Qwen2.5-7B-Instruct"),
        _rec(id="x008", model="org/not-a-known-model"),
        _rec(id="x009", vllm_version="not stated"),
        _rec(id="x010", status="failed", available_kv_gib=None, error="ValueError: ..."),
    ]
    path = tmp_path / "heldout.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert acc.main(["--records", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    s = out["summary"]
    assert {
        "median_abs_kv_err_gib",
        "max_abs_kv_err_gib",
        "verdict_accuracy",
        "expressed",
        "not_expressed",
    } <= set(s)
    ids = [r["id"] for r in out["rows"]]
    assert ids == ["x001", "x002", "x003", "x004", "x005", "x006", "x007", "x010"]
    assert s["expressed"] == 8
    assert [x["id"] for x in s["not_expressed"]] == ["x008", "x009"]
    assert all(x["reason"] for x in s["not_expressed"])
    rows = {r["id"]: r for r in out["rows"]}
    # TP halves the per-rank weights; PP's last stage holds half the layers plus the LM head
    assert rows["x002"]["weights_pred"] < rows["x001"]["weights_pred"] / 1.9
    assert rows["x004"]["weights_pred"] < rows["x001"]["weights_pred"] / 1.9
    # fp8 KV doubles the tokens of the same pool (same weights, same budget)
    assert rows["x005"]["tok_pred"] == pytest.approx(2 * rows["x001"]["tok_pred"], rel=0.001)
    # float32 doubles the bf16 weights; runtime fp8 shrinks them
    assert rows["x006"]["weights_pred"] > 2 * 14.0 and rows["x007"]["weights_pred"] < 8.5
    assert rows["x001"]["kv_err"] == pytest.approx(rows["x001"]["kv_pred"] - 50.0, abs=0.001)
