"""Planner accuracy against real vLLM launches (issue 2 item 9).

Runs `plan_stack` on every record of vllm-logs.jsonl it can express (V1 engine, vLLM 0.10.1-0.33.0,
known model, known device total and fraction) and prints predicted vs logged "Available KV cache
memory", KV tokens and verdict per record, then the median / max absolute KV error and the verdict
accuracy. Records it cannot express are listed with the reason.

    python bench/accuracy.py [--jsonl PATH] [--json]

The records file is ../shared/reference/vllm-logs.jsonl relative to the repo, or
$RESIDENCY_SHARED/reference/vllm-logs.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from residency.errors import ResidencyError  # noqa: E402
from residency.planner.plan import plan_stack  # noqa: E402
from residency.spec import SUPPORTED_VLLM_VERSIONS, parse_spec, version_key  # noqa: E402

GPU_PRESETS = [  # substring of the record's gpu field -> device preset
    ("gh200", "gh200"),
    ("h200", "h200"),
    ("h100", "h100-80gb"),
    ("a100-80", "a100-80gb"),
    ("a100 80", "a100-80gb"),
    ("l40s", "l40s"),
    ("l4 ", "l4"),
    ("1x l4", "l4"),
    ("2x l4", "l4"),
    ("rtx 3090", "rtx-3090"),
    ("rtx 5090", "rtx-5090"),
    ("rtx 4090", "rtx-4090"),
    ("gb10", "dgx-spark"),
    ("jetson agx thor", "jetson-thor"),
]

# Models not in the bundled catalog, with facts from their published config.json. The checkpoint
# size is the HF index total_size where known; otherwise the weights the record logs (flagged).
HAND_MODELS: dict[str, dict] = {
    "Qwen/Qwen3-14B": {
        "config": {
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "hidden_size": 5120,
            "num_hidden_layers": 40,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "intermediate_size": 17408,
            "vocab_size": 151936,
            "max_position_embeddings": 40960,
            "tie_word_embeddings": False,
            "torch_dtype": "bfloat16",
        },
        "total_size": 29536614400,
    },
    "Qwen/Qwen3-14B-AWQ": {
        "config": {
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "hidden_size": 5120,
            "num_hidden_layers": 40,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "intermediate_size": 17408,
            "vocab_size": 151936,
            "max_position_embeddings": 40960,
            "tie_word_embeddings": False,
            "torch_dtype": "float16",
            "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128},
        },
        "weights_gib_logged": 9.44,
    },
    "ibm-granite/granite-4.0-micro": {
        "config": {
            "architectures": ["GraniteMoeHybridForCausalLM"],
            "model_type": "granitemoehybrid",
            "hidden_size": 2560,
            "num_hidden_layers": 40,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "intermediate_size": 8192,
            "shared_intermediate_size": 8192,
            "num_local_experts": 0,
            "layer_types": ["attention"] * 40,
            "vocab_size": 100352,
            "max_position_embeddings": 131072,
            "tie_word_embeddings": True,
            "torch_dtype": "bfloat16",
        },
        # bf16 checkpoint estimated from the config: 0.257 G embedding + 40 x 78.6 M = 3.40 G params x 2 B
        "total_size": 6_806_000_000,
    },
    "Mistral-7B GPTQ": {
        "config": {
            "architectures": ["MistralForCausalLM"],
            "model_type": "mistral",
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "intermediate_size": 14336,
            "vocab_size": 32000,
            "max_position_embeddings": 32768,
            "tie_word_embeddings": False,
            "torch_dtype": "float16",
            "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128},
        },
        "weights_gib_logged": 3.8844,
    },
    "Qwen/Qwen3-VL-30B-A3B-Instruct-FP8": {
        "config": {
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            "hidden_size": 2048,
            "num_hidden_layers": 48,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "intermediate_size": 6144,
            "moe_intermediate_size": 768,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "vocab_size": 151936,
            "max_position_embeddings": 262144,
            "tie_word_embeddings": False,
            "torch_dtype": "bfloat16",
            "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
        },
        # text FP8 checkpoint (Qwen3-30B-A3B-*-FP8, 31,170,895,872 B) + ~0.6 B vision params in bf16
        "total_size": 31170895872 + 1_150_000_000,
        "multimodal_note": "vision tower modelled only as its weights",
    },
    "RedHatAI/Mixtral-8x7B-Instruct-v0.1-FP8": {
        "config": {
            "architectures": ["MixtralForCausalLM"],
            "model_type": "mixtral",
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "intermediate_size": 14336,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "vocab_size": 32000,
            "max_position_embeddings": 32768,
            "torch_dtype": "bfloat16",
            "quantization_config": {"quant_method": "fp8"},
        },
        "total_size": 47_000_000_000,
    },
}
HAND_MODELS["Qwen/Qwen2.5-7B-Instruct"] = {
    "config": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "vocab_size": 152064,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    },
    "total_size": 15231233024,  # index metadata.total_size
}
HAND_MODELS["Qwen/Qwen2.5-7B-Instruct-AWQ"] = {
    "config": {
        **HAND_MODELS["Qwen/Qwen2.5-7B-Instruct"]["config"],
        "torch_dtype": "float16",
        "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128},
    },
    "total_size": 5_579_000_000,  # ~5.58 GB of safetensors (4-bit body + fp16 embeddings)
}
RECORD_MODEL = {"r052": "Mistral-7B GPTQ", "r050": "Qwen/Qwen3-VL-30B-A3B-Instruct-FP8"}


def records_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    base = os.environ.get("RESIDENCY_SHARED")
    if base:
        return Path(base) / "reference" / "vllm-logs.jsonl"
    return REPO.parent / "shared" / "reference" / "vllm-logs.jsonl"


def num(v) -> int | float | None:
    """12 -> 12; 'default (8192)' -> 8192; 'default' / None -> None."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return v
    m = re.search(r"\(([\d.]+)", str(v))
    if m and str(v).startswith(("default", "auto")):
        x = float(m.group(1))
        return int(x) if x.is_integer() else x
    m = re.match(r"\s*([\d.]+)", str(v))
    if m:
        x = float(m.group(1))
        return int(x) if x.is_integer() else x
    return None


def version_of(r: dict) -> str | None:
    m = re.search(r"(\d+\.\d+\.\d+)", str(r.get("vllm_version") or ""))
    return m.group(1) if m else None


def _local_model(name: str, tmp: Path) -> str:
    h = HAND_MODELS[name]
    d = tmp / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(h["config"]))
    total = h.get("total_size")
    if total is None:
        total = int(h["weights_gib_logged"] * 2**30)
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": {}})
    )
    return str(d)


def express(r: dict, tmp: Path) -> tuple[dict | None, str]:
    """A one-model stack spec for the record, or None and why not."""
    if not str(r.get("engine", "")).startswith("V1"):
        return None, f"engine {r.get('engine')} (the model covers the V1 engine only)"
    v = version_of(r)
    if v is None:
        return None, f"vLLM version not stated ({str(r.get('vllm_version'))[:40]})"
    lo, hi = (version_key(x) for x in SUPPORTED_VLLM_VERSIONS)
    if not lo <= version_key(v)[:3] <= hi:
        return None, f"vLLM {v} outside {SUPPORTED_VLLM_VERSIONS[0]}-{SUPPORTED_VLLM_VERSIONS[1]}"
    model = RECORD_MODEL.get(r["id"], r["model"])
    from residency.catalog import __file__ as catfile  # noqa: F401

    note = ""
    if model in HAND_MODELS:
        if "weights_gib_logged" in HAND_MODELS[model]:
            note = "weights as logged"
        model_ref = _local_model(model, tmp)
    else:
        model_ref = model
    dev: dict = {}
    gpu = str(r.get("gpu") or "").lower()
    preset = next((p for k, p in GPU_PRESETS if k in gpu + " "), None)
    if preset == "l4" and "l40" in gpu:
        preset = "l40s"
    if preset:
        dev["preset"] = preset
    if r.get("total_gpu_memory_gib"):
        dev["total_gib"] = r["total_gpu_memory_gib"]
    if not dev:
        return None, "device total not logged and GPU not named"
    tp = num(r.get("tensor_parallel_size")) or 1
    pp = num(r.get("pipeline_parallel_size")) or 1
    if tp * pp > 1:
        dev["count"] = tp * pp
    util = num(r.get("gpu_memory_utilization"))
    if (
        r.get("gpu_memory_utilization") is not None
        and util is None
        and "default" not in str(r["gpu_memory_utilization"])
    ):
        return None, "gpu_memory_utilization not stated"
    util = util or 0.9
    m: dict = {
        "name": "m",
        "model": model_ref,
        "gpu_memory_utilization": util,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
    }
    for k in ("max_model_len", "max_num_seqs", "max_num_batched_tokens"):
        x = num(r.get(k))
        if x:
            m[k] = int(x)
    if r.get("enforce_eager") is True:
        m["enforce_eager"] = True
    kvd = str(r.get("kv_cache_dtype") or "auto")
    if kvd.startswith("fp8"):
        m["kv_cache_dtype"] = kvd.split()[0]
    q = str(r.get("quantization") or "").lower()
    if q.startswith("fp8"):
        m["quantization"] = "fp8"  # online fp8 on a bf16 checkpoint; a no-op for an fp8 checkpoint
    dt = str(r.get("dtype") or "").lower()
    for name in ("float32", "float16", "bfloat16"):
        if dt.startswith(name) or dt == name.replace("float", "fp"):
            m["dtype"] = name
    other = str(r.get("other_settings") or "")
    if (
        "offline LLM" in other
        or "offline LLM" in str(r.get("gpu_memory_utilization"))
        or r["id"] in ("r027",)
    ):
        # LLM class batch defaults (8192 / 256 below 70 GiB) instead of the OpenAI server's
        m.setdefault("max_num_batched_tokens", 8192)
        m.setdefault("max_num_seqs", 256)
    err = str(r.get("error") or "")
    fm = re.search(r"Free memory on device (?:\S+ )?\(([\d.]+)/([\d.]+) GiB\)", err)
    if fm:
        dev["total_gib"] = float(fm.group(2))
        dev["used_gib"] = round(float(fm.group(2)) - float(fm.group(1)), 3)
    spec = {"vllm_version": v, "device": dev, "models": [m]}
    return spec, note


def logged_verdict(r: dict) -> str:
    return "ok" if str(r.get("status", "")).startswith("ok") else "fail"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jsonl")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    path = records_path(a.jsonl)
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as td:
        for r in recs:
            if r["id"] == "r009":
                skipped.append(
                    (
                        r["id"],
                        "27.72 GiB of weights per rank implies an 8-way split of a 220 GiB checkpoint; the record states TP 4 on 44 GiB GPUs",
                    )
                )
                continue
            if r["id"] == "r026":
                skipped.append(
                    (
                        r["id"],
                        "14.04 GiB KV with TP 1 on a 22 GiB L4 is impossible next to 9.44 GiB of weights; the parallel layout is not stated",
                    )
                )
                continue
            spec, why = express(r, Path(td))
            if spec is None:
                skipped.append((r["id"], why))
                continue
            if (
                r.get("available_kv_gib") is None
                and logged_verdict(r) == "ok"
                and r.get("kv_cache_tokens") is None
            ):
                skipped.append((r["id"], "no logged KV figure and no failure to compare"))
                continue
            try:
                p = plan_stack(parse_spec(spec), use_calibration=False)
            except ResidencyError as e:
                skipped.append((r["id"], f"cannot resolve: {e}"))
                continue
            mp = p.models[0]
            rows.append(
                {
                    "id": r["id"],
                    "model": str(r["model"])[:38],
                    "vllm": spec["vllm_version"],
                    "kv_logged": r.get("available_kv_gib"),
                    "kv_pred": mp.kv_cache_gib,
                    "tok_logged": r.get("kv_cache_tokens"),
                    "tok_pred": mp.kv_cache_tokens,
                    "verdict_logged": logged_verdict(r),
                    "verdict_pred": mp.verdict,
                    "error_pred": mp.error.kind if mp.error else None,
                    "note": why,
                }
            )
    errs = [abs(x["kv_pred"] - x["kv_logged"]) for x in rows if x["kv_logged"] is not None]
    verdict_ok = sum(1 for x in rows if x["verdict_logged"] == x["verdict_pred"])
    summary = {
        "records": len(recs),
        "expressed": len(rows),
        "with_kv": len(errs),
        "median_abs_kv_error_gib": round(statistics.median(errs), 3) if errs else None,
        "max_abs_kv_error_gib": round(max(errs), 3) if errs else None,
        "verdict_accuracy": round(verdict_ok / len(rows), 3) if rows else None,
    }
    if a.json:
        print(json.dumps({"rows": rows, "skipped": skipped, "summary": summary}, indent=1))
        return 0
    print(
        f"{'id':5} {'vLLM':7} {'model':38} {'KV log':>7} {'KV pred':>7} {'err':>6} {'tok log':>9} {'tok pred':>9} verdict log/pred"
    )
    for x in rows:
        kl = f"{x['kv_logged']:.2f}" if x["kv_logged"] is not None else "-"
        er = f"{x['kv_pred'] - x['kv_logged']:+.2f}" if x["kv_logged"] is not None else "-"
        tl = f"{x['tok_logged']:,}" if x["tok_logged"] else "-"
        v = f"{x['verdict_logged']}/{x['verdict_pred']}" + (
            f" ({x['error_pred']})" if x["error_pred"] else ""
        )
        print(
            f"{x['id']:5} {x['vllm']:7} {x['model']:38} {kl:>7} {x['kv_pred']:7.2f} {er:>6} {tl:>9} {x['tok_pred']:>9,} {v} {x['note']}"
        )
    print()
    print(
        f"median |KV error| {summary['median_abs_kv_error_gib']} GiB, max {summary['max_abs_kv_error_gib']} GiB "
        f"over {summary['with_kv']} records with a logged KV; verdicts right {verdict_ok}/{len(rows)} "
        f"({summary['verdict_accuracy']})"
    )
    print(f"\ncannot express {len(skipped)} of {len(recs)} records:")
    for rid, why in skipped:
        print(f"  {rid}: {why}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # piped into head
        sys.stderr.close()
        raise SystemExit(0) from None
