"""Planner accuracy against real vLLM launches (issue 2 item 9).

Runs `plan_stack` on every record of vllm-logs.jsonl it can express (V1 engine, vLLM 0.10.1-0.33.0,
known model, known device total and fraction) and prints predicted vs logged "Available KV cache
memory", KV tokens and verdict per record, then the median / max absolute KV error and the verdict
accuracy. Records it cannot express are listed with the reason. Unified-memory records (DGX Spark, Thor)
are reported apart: the start (cold/warm) is not logged, so they are compared at a warm start with the
plan's cold figure beside, and a fraction the plan calls at_risk counts as a load (the record's box
offered it). Then a leave-one-out figure: the
constants of memory/activation.py fitted by hand to KV figures (LOO_CONSTANTS) are refit by least
squares on all records but one, and that record is predicted with them, so the error printed is not
only in-sample (the fold-to-fold spread of the refit constants shows how well the records pin them).
--write-guard updates tests/fixtures/accuracy-guard.json, the accuracy guard's expectations.

    python bench/accuracy.py [--records PATH] [--json]

--records: a JSONL file in the schema of vllm-logs.jsonl (see vllm-logs.md), e.g. a held-out set;
default tests/fixtures/reference/vllm-logs.jsonl (the development set vendored in the repository).
--json prints {"rows": [...], "summary": {...}} with
summary keys median_abs_kv_err_gib, max_abs_kv_err_gib, verdict_accuracy, expressed, not_expressed.

The record's fields are read in every form the schema uses: numbers or "default (8192)" /
"2048 (auto)"; "auto (default)", "default (False)"; dtype "float32" or "default (bf16 per model
config)"; quantization "fp8" on an unquantized checkpoint = runtime --quantization fp8; GPU names
("2x H100 80GB HBM3", "NVIDIA H100") -> device presets and counts; total_gpu_memory_gib.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from residency.errors import ResidencyError  # noqa: E402
from residency.memory import catalog  # noqa: E402
from residency.memory.config_facts import _qwen3_vl_vision_params  # noqa: E402
from residency.planner.plan import plan_stack  # noqa: E402
from residency.spec import SUPPORTED_VLLM_VERSIONS, parse_spec, version_key  # noqa: E402


def _catalog_entry(model_id: str) -> catalog.CatalogEntry:
    e = catalog.lookup(model_id)
    assert e is not None, model_id
    return e


# (pattern in the lower-cased gpu field, preset); first match wins, so the specific names come first.
GPU_PRESETS = [
    (r"gh200", "gh200"),
    (r"h200", "h200"),
    (r"h100\s*nvl|h100.*94\s*gb", "h100-94gb"),
    (r"h100|h800", "h100-80gb"),
    (r"a100.*40\s*gb|a100-40", "a100-40gb"),
    (r"a100", "a100-80gb"),
    (r"b200", "b200"),
    (r"l40s", "l40s"),
    (r"\bl40\b", "l40"),
    (r"\bl4\b", "l4"),
    (r"\ba10g\b", "a10g"),
    (r"\ba10\b", "a10"),
    (r"\bt4\b", "t4"),
    (r"v100", "v100-32gb"),
    (r"rtx\s*3090", "rtx-3090"),
    (r"rtx\s*4090", "rtx-4090"),
    (r"rtx\s*5090", "rtx-5090"),
    (r"gb10|dgx spark", "dgx-spark"),
    (r"jetson agx thor", "jetson-thor"),
]


def parse_gpu(v) -> tuple[str | None, int]:
    """'2x H100 80GB HBM3' -> ('h100-80gb', 2); 'NVIDIA H100' -> ('h100-80gb', 1); None -> (None, 1)."""
    g = str(v or "").lower()
    m = re.match(r"\s*(\d+)\s*x\s", g)
    count = int(m.group(1)) if m else 1
    for pat, preset in GPU_PRESETS:
        if re.search(pat, g):
            return preset, count
    return None, count


# BENCH-ONLY MODEL FACTS, not in the bundled catalog because no authoritative copy of their config.json
# was found offline: architecture keys as published on the model cards (from memory), checkpoint size
# the HF index total_size where known, else an estimate, else the weights the record itself logs
# (such rows are flagged "weights as logged" and do not test the weights model).
_QWEN3_14B = {
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
}
HAND_MODELS: dict[str, dict] = {
    "Qwen/Qwen3-14B": {"config": _QWEN3_14B, "total_size": 29536614400},
    "Qwen/Qwen3-14B-AWQ": {
        "config": {
            **_QWEN3_14B,
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
# Qwen3-VL-30B-A3B-Instruct: the catalog's config.json (as vendored by aiconfigurator-core 0.12.0, PyPI),
# + the FP8 checkpoint's block quantization (as for the text Qwen3-30B-A3B FP8 checkpoints).
_QWEN3_VL_30B = {
    **_catalog_entry("Qwen/Qwen3-VL-30B-A3B-Instruct").config,
    "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
}
# Vision tower parameters, counted by the planner's own reader from vLLM's module shapes
# (config_facts._qwen3_vl_vision_params, qwen3_vl.py:346-600@0.20.2): 538,631,408.
_QWEN3_VL_VISION_PARAMS = _qwen3_vl_vision_params(
    _QWEN3_VL_30B["vision_config"], _QWEN3_VL_30B["text_config"]["hidden_size"]
)
HAND_MODELS["Qwen/Qwen3-VL-30B-A3B-Instruct-FP8"] = {
    "config": _QWEN3_VL_30B,
    # the Qwen3-VL processor's maximum image: 16,384 tokens of 32 x 32 pixels = 16,777,216 pixels
    # (qwen-vl-utils 0.0.14, Qwen's own package on PyPI: vision_process.py:27 IMAGE_MAX_TOKEN_NUM = 16384,
    # max_pixels = IMAGE_MAX_TOKEN_NUM x (patch 16 x merge 2)^2, :132); the catalog entry carries the
    # checkpoint's preprocessor_config.json (size.longest_edge)
    "preprocessor": _catalog_entry("Qwen/Qwen3-VL-30B-A3B-Instruct").preprocessor_config,
    # text FP8 checkpoint (same text tensors as Qwen3-30B-A3B-*-FP8, 31,170,895,872 B exact inventory)
    # + the vision tower in bf16 (an estimate: whether the FP8 checkpoint keeps it unquantized is unchecked)
    "total_size": 31_170_895_872 + 2 * _QWEN3_VL_VISION_PARAMS,
}
_QWEN25_7B = {  # the catalog's Qwen/Qwen2.5-7B-Instruct architecture (published config values)
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
}
HAND_MODELS["Qwen/Qwen2.5-7B-Instruct-AWQ"] = {
    "config": {
        **_QWEN25_7B,
        "torch_dtype": "float16",
        "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128},
    },
    "total_size": 5_579_000_000,  # ~5.58 GB of safetensors (4-bit body + fp16 embeddings), rounded
}
# Record model strings that name no exact repo -> the bench model standing in for them.
MODEL_ALIASES = [
    (r"^Mistral-7B GPTQ", "Mistral-7B GPTQ"),
    (r"^Qwen3-VL-30B-A3B FP8", "Qwen/Qwen3-VL-30B-A3B-Instruct-FP8"),
]
# Dev-set records whose stated layout contradicts their own figures (checked on the model too, so a
# held-out record reusing an id is not skipped by mistake).
CONTRADICTORY = {
    ("r009", "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8"): (
        "27.72 GiB of weights per rank implies an 8-way split of a 220 GiB checkpoint; the record states TP 4 on 44 GiB GPUs"
    ),
    ("r026", "Qwen/Qwen3-14B-AWQ"): (
        "14.04 GiB KV with TP 1 on a 22 GiB L4 is impossible next to 9.44 GiB of weights; the parallel layout is not stated"
    ),
}


DEV_RECORDS = REPO / "tests" / "fixtures" / "reference" / "vllm-logs.jsonl"


def records_path(arg: str | None) -> Path:
    return Path(arg) if arg else DEV_RECORDS


def _number(text: str) -> int | float:
    x = float(text.replace(",", ""))
    return int(x) if x.is_integer() else x


def num(v) -> int | float | None:
    """12 -> 12; '2048 (auto)' -> 2048; 'default (8192)' / 'default (model max, 40960)' -> 8192 / 40960;
    'default' / 'default (not in non-default args)' / None / booleans -> None."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return v
    t = str(v).strip()
    m = re.match(r"([\d][\d,]*(?:\.\d+)?)\b", t)
    if m:
        return _number(m.group(1))
    if t.lower().startswith(("default", "auto")):
        m = re.search(r"\(([^)]*)\)", t)
        if m:
            nums = re.findall(r"\d[\d,]*(?:\.\d+)?", m.group(1))
            if nums:
                return _number(nums[-1] if "max" in m.group(1) else nums[0])
    return None


def flag(v) -> bool | None:
    """True / 'True' / 'default (False)' / 'true (--enforce-eager)' -> bool; None / unknown -> None."""
    if isinstance(v, bool):
        return v
    t = str(v or "").lower()
    m = re.search(r"\b(true|false)\b", t)
    return None if m is None else m.group(1) == "true"


_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def parse_dtype(v) -> str:
    """--dtype as given: 'float32' -> float32; 'float16 (cast from bf16)' / 'half' -> float16;
    'default (bf16 per model config)' / 'auto (not shown)' / None -> auto (the checkpoint's dtype)."""
    t = str(v or "").strip().lower()
    if not t or t.startswith(("default", "auto", "none")):
        return "auto"
    m = re.match(r"(?:torch\.)?([a-z0-9]+)", t)
    return _DTYPES.get(m.group(1), "auto") if m else "auto"


def parse_kv_cache_dtype(v) -> str:
    """'fp8' / 'fp8_e4m3' / 'fp8_e5m2 (...)' -> that; 'auto (default)' / None -> auto."""
    m = re.match(r"\s*(fp8(?:_e4m3|_e5m2|_inc)?)\b", str(v or "").lower())
    return m.group(1) if m else "auto"


def parse_quantization(v) -> str | None:
    """The --quantization flag the record implies. 'fp8' / 'fp8 (online, quantization=fp8)' -> fp8:
    online FP8 when the checkpoint is unquantized (the planner ignores it for an FP8 checkpoint, whose
    own config decides, as vLLM does). Every other method is read from the checkpoint's config: None."""
    t = str(v or "").strip().lower()
    if t.startswith("fp8") and "native" not in t and "checkpoint" not in t:
        return "fp8"
    return None


def version_of(r: dict) -> str | None:
    m = re.search(r"(\d+\.\d+\.\d+)", str(r.get("vllm_version") or ""))
    return m.group(1) if m else None


def model_of(r: dict) -> str:
    """The record's model: a bench alias, else its leading org/name (notes after it dropped)."""
    raw = str(r.get("model") or "").strip()
    for pat, name in MODEL_ALIASES:
        if re.search(pat, raw):
            return name
    m = re.match(r"([\w.-]+/[\w.-]+)(?:\s|$)", raw)
    return m.group(1) if m else raw


def _local_model(name: str, tmp: Path) -> str:
    h = HAND_MODELS[name]
    d = tmp / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(h["config"]))
    if "preprocessor" in h:
        (d / "preprocessor_config.json").write_text(json.dumps(h["preprocessor"]))
    total = h.get("total_size")
    if total is None:
        total = int(h["weights_gib_logged"] * 2**30)
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": {}})
    )
    return str(d)


def _offline_llm(r: dict) -> bool:
    text = " ".join(str(r.get(k) or "") for k in ("other_settings", "gpu_memory_utilization", "notes"))
    return bool(re.search(r"offline LLM|LLM\(\)|LLM class", text))


def express(r: dict, tmp: Path) -> tuple[dict | None, str]:
    """A one-model stack spec for the record, or None and why not."""
    v = version_of(r)
    engine = str(r.get("engine") or "")
    if engine and not engine.startswith("V1"):
        return None, f"engine {engine} (the model covers the V1 engine only)"
    if v is None:
        return None, f"vLLM version not stated ({str(r.get('vllm_version'))[:40]})"
    lo, hi = (version_key(x) for x in SUPPORTED_VLLM_VERSIONS)
    if not lo <= version_key(v)[:3] <= hi:
        return None, f"vLLM {v} outside {SUPPORTED_VLLM_VERSIONS[0]}-{SUPPORTED_VLLM_VERSIONS[1]}"
    model = model_of(r)
    why = CONTRADICTORY.get((str(r.get("id")), model))
    if why:
        return None, why
    note = ""
    if model in HAND_MODELS:
        note = "bench-only model facts" + (
            ", weights as logged" if "weights_gib_logged" in HAND_MODELS[model] else ""
        )
        model_ref = _local_model(model, tmp)
    else:
        model_ref = model
    dev: dict = {}
    preset, count = parse_gpu(r.get("gpu"))
    if preset:
        dev["preset"] = preset
    total = num(r.get("total_gpu_memory_gib"))
    if total:
        dev["total_gib"] = float(total)
    if not dev:
        return None, "device total not logged and GPU not named"
    tp = int(num(r.get("tensor_parallel_size")) or 1)
    pp = int(num(r.get("pipeline_parallel_size")) or 1)
    if max(tp * pp, count) > 1:
        dev["count"] = max(tp * pp, count)
    util = num(r.get("gpu_memory_utilization"))
    raw_util = r.get("gpu_memory_utilization")
    if raw_util is not None and util is None and "default" not in str(raw_util).lower():
        return None, "gpu_memory_utilization not stated"
    m: dict = {
        "name": "m",
        "model": model_ref,
        "gpu_memory_utilization": util or 0.9,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "dtype": parse_dtype(r.get("dtype")),
        "kv_cache_dtype": parse_kv_cache_dtype(r.get("kv_cache_dtype")),
    }
    for k in ("max_model_len", "max_num_seqs", "max_num_batched_tokens"):
        x = num(r.get(k))
        if x:
            m[k] = int(x)
    if flag(r.get("enforce_eager")):
        m["enforce_eager"] = True
    q = parse_quantization(r.get("quantization"))
    if q:
        m["quantization"] = q
    if _offline_llm(r):
        # LLM class batch defaults (8192 / 256 below 70 GiB) instead of the OpenAI server's
        m.setdefault("max_num_batched_tokens", 8192)
        m.setdefault("max_num_seqs", 256)
    err = str(r.get("error") or "")
    fm = re.search(r"Free memory on device (?:\S+ )?\(([\d.]+)/([\d.]+) GiB\)", err)
    if fm:
        dev["total_gib"] = float(fm.group(2))
        dev["used_gib"] = round(float(fm.group(2)) - float(fm.group(1)), 3)
    if _unified(dev):
        # start not logged: compared at a warm start (the upper end of the plan's cold..warm range; cold is
        # printed beside it). Both unified records load in seconds, i.e. from page cache.
        dev["start"] = "warm"
        note = ", ".join(x for x in (note, "unified: warm start compared") if x)
    spec = {"vllm_version": v, "device": dev, "models": [m]}
    return spec, note


def _unified(dev: dict) -> bool:
    from residency.memory.device import PRESETS

    p = PRESETS.get(str(dev.get("preset") or ""))
    return bool(dev.get("unified", p.unified if p else False))


def logged_verdict(r: dict) -> str:
    return "ok" if str(r.get("status", "")).strip().lower().startswith("ok") else "fail"


def run(recs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Plan every record it can express: (rows, not_expressed [{id, reason}])."""
    rows: list[dict] = []
    skipped: list[dict] = []
    with tempfile.TemporaryDirectory() as td:
        for r in recs:
            rid = str(r.get("id"))
            spec, why = express(r, Path(td))
            if spec is None:
                skipped.append({"id": rid, "reason": why})
                continue
            kv_logged = num(r.get("available_kv_gib"))
            tok_logged = num(r.get("kv_cache_tokens"))
            if kv_logged is None and tok_logged is None and logged_verdict(r) == "ok":
                skipped.append({"id": rid, "reason": "no logged KV figure and no failure to compare"})
                continue
            try:
                p = plan_stack(parse_spec(spec), use_calibration=False)
            except ResidencyError as e:
                skipped.append({"id": rid, "reason": f"cannot resolve: {e}"})
                continue
            mp = p.models[0]
            rows.append(
                {
                    "id": rid,
                    "model": str(r.get("model"))[:38],
                    "vllm": spec["vllm_version"],
                    "kv_logged": kv_logged,
                    "kv_pred": mp.kv_cache_gib,
                    "kv_err": None if kv_logged is None else round(mp.kv_cache_gib - kv_logged, 3),
                    "tok_logged": tok_logged,
                    "tok_pred": mp.kv_cache_tokens,
                    "weights_logged": num(r.get("weights_gib")),
                    "weights_pred": mp.weights_gib,
                    "verdict_logged": logged_verdict(r),
                    # at_risk = loads on a box that offers what the record's did, fails on an idle Spark that
                    # offers less: a load prediction for the record, with the risk kept beside it
                    "verdict_pred": "ok" if mp.verdict == "at_risk" else mp.verdict,
                    "error_pred": mp.error.kind if mp.error and mp.verdict != "at_risk" else None,
                    "at_risk": mp.verdict == "at_risk",
                    "unified": mp.kv_cache_gib_cold is not None,
                    "kv_pred_cold": mp.kv_cache_gib_cold,
                    "note": why,
                }
            )
    return rows, skipped


# Issue 14's accuracy targets: dev-set mean |available KV error| and every verdict right; the
# leave-one-out mean (constants refit without the record) measures what the fit alone buys.
TARGET_MEAN_GIB = 0.3
TARGET_LOO_GIB = 0.5


def targets(rows: list[dict], summary: dict) -> dict:
    """The issue-14 targets, measured: each figure and whether it is met."""
    loo = [abs(x["kv_err_loo"]) for x in rows if x.get("kv_err_loo") is not None]
    loo_mean = round(statistics.fmean(loo), 3) if loo else None
    mean = summary["mean_abs_kv_err_gib"]
    return {
        "mean_abs_kv_err_gib": mean,
        "mean_met": mean is not None and mean <= TARGET_MEAN_GIB,
        "verdicts_met": all(x["verdict_logged"] == x["verdict_pred"] for x in rows),
        "loo_mean_abs_kv_err_gib": loo_mean,
        "loo_met": loo_mean is not None and loo_mean <= TARGET_LOO_GIB,
    }


def _figures(rows: list[dict]) -> dict:
    errs = [abs(x["kv_err"]) for x in rows if x["kv_err"] is not None]
    right = sum(1 for x in rows if x["verdict_logged"] == x["verdict_pred"])
    return {
        "expressed": len(rows),
        "with_kv": len(errs),
        "mean_abs_kv_err_gib": round(statistics.fmean(errs), 3) if errs else None,
        "median_abs_kv_err_gib": round(statistics.median(errs), 3) if errs else None,
        "max_abs_kv_err_gib": round(max(errs), 3) if errs else None,
        "verdict_accuracy": round(right / len(rows), 3) if rows else None,
    }


def summarize(recs: list[dict], rows: list[dict], skipped: list[dict]) -> dict:
    """Figures over all expressed records, and unified-memory records (DGX Spark, Thor) on their own: their
    KV depends on the start (cold..warm) and on a host-growth model the discrete records do not test."""
    uni = [x for x in rows if x.get("unified")]
    within = [
        x
        for x in uni
        if x["kv_logged"] is not None
        and x["kv_pred_cold"] is not None
        and x["kv_pred_cold"] - 0.5 <= x["kv_logged"] <= x["kv_pred"] + 0.5
    ]
    return {
        "records": len(recs),
        **_figures(rows),
        "discrete": _figures([x for x in rows if not x.get("unified")]),
        "unified": {**_figures(uni), "logged_kv_within_cold_warm_range": len(within)},
        "not_expressed": skipped,
    }


# --- leave-one-out ------------------------------------------------------------------------------------
# The constants of memory/activation.py chosen so the planner reproduces the logged KV of dev records
# (their comments say "fitted to records ..."): they are hand-picked, not fitted by code. To report an
# error that is not only in-sample, each is refit here by least squares on every record but one, and
# that record is predicted with the refit values. Only constants fitted to KV figures are refit; the
# others (non-torch, graphs, unified-memory host growth) were set from other logged figures and stay.
LOO_CONSTANTS = ("ACT_BASE", "ACT_HIDDEN_COPIES")
_STEP = 0.2  # relative perturbation for the numeric derivative (the KV is linear in both constants)


def _with_constants(scales: dict[str, float]):
    """Context manager: the LOO constants of memory/activation.py scaled by 1 + scales[name]."""
    import contextlib

    from residency.memory import activation as act

    @contextlib.contextmanager
    def cm():
        saved = {n: getattr(act, n) for n in scales}
        try:
            for n, x in scales.items():
                setattr(act, n, saved[n] * (1 + x))
            yield
        finally:
            for n, v in saved.items():
                setattr(act, n, v)

    return cm()


def _kv_by_id(recs: list[dict], scales: dict[str, float]) -> dict[str, float]:
    with _with_constants(scales):
        rows, _ = run(recs)
    return {x["id"]: x["kv_pred"] for x in rows}


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Least squares min |A x - b| through the normal equations (k <= a few unknowns)."""
    k = len(a[0])
    m = [
        [sum(r[i] * r[j] for r in a) for j in range(k)] + [sum(r[i] * y for r, y in zip(a, b, strict=True))]
        for i in range(k)
    ]
    for c in range(k):
        piv = max(range(c, k), key=lambda r: abs(m[r][c]))
        if abs(m[piv][c]) < 1e-12:
            raise ValueError("constants not identifiable from these records")
        m[c], m[piv] = m[piv], m[c]
        for r in range(k):
            if r != c:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c], strict=True)]
    return [m[i][k] / m[i][i] for i in range(k)]


def leave_one_out(recs: list[dict], rows: list[dict], names: tuple[str, ...] = LOO_CONSTANTS) -> dict:
    """Refit `names` without each record (least squares on the others' logged KV), predict it.

    Returns {"constants": {name: {"written", "all_records", "folds": [min, max]}}, "rows": {id: {...}},
    "median_abs_kv_err_gib", "max_abs_kv_err_gib"}.
    """
    from residency.memory import activation as act

    with_kv = [x for x in rows if x["kv_logged"] is not None]
    ids = [x["id"] for x in with_kv]
    logged = {x["id"]: x["kv_logged"] for x in with_kv}
    base = {x["id"]: x["kv_pred"] for x in with_kv}
    jac: dict[str, list[float]] = {i: [] for i in ids}
    for n in names:
        kv = _kv_by_id(recs, {n: _STEP})
        for i in ids:
            jac[i].append((kv[i] - base[i]) / _STEP)

    def fit(use: list[str]) -> list[float]:
        return _solve([jac[i] for i in use], [logged[i] - base[i] for i in use])

    empty = {"constants": {}, "rows": {}, "median_abs_kv_err_gib": None, "max_abs_kv_err_gib": None}
    try:
        everything = fit(ids)
    except ValueError as e:
        return {**empty, "not_computed": f"{e} ({len(ids)} records with a logged KV)"}
    by_id = {r.get("id"): r for r in recs}
    out_rows: dict[str, dict] = {}
    folds: list[list[float]] = []
    for i in ids:
        try:
            x = fit([j for j in ids if j != i])
        except ValueError:
            continue  # the others alone do not pin the constants down: no held-out figure for i
        folds.append(x)
        kv = _kv_by_id([by_id[i]], dict(zip(names, x, strict=True)))[i]
        out_rows[i] = {"kv_pred_loo": round(kv, 3), "kv_err_loo": round(kv - logged[i], 3)}
    if not folds:
        return {**empty, "not_computed": "no record can be left out and the constants still fitted"}
    errs = [abs(v["kv_err_loo"]) for v in out_rows.values()]
    consts = {}
    for k, n in enumerate(names):
        w = getattr(act, n)
        unit, div = ("GiB", 2**30) if w > 1000 else ("", 1)
        consts[n] = {
            "unit": unit,
            "written": round(w / div, 4),
            "all_records": round(w * (1 + everything[k]) / div, 4),
            "folds": [
                round(w * (1 + min(f[k] for f in folds)) / div, 4),
                round(w * (1 + max(f[k] for f in folds)) / div, 4),
            ],
        }
    return {
        "constants": consts,
        "rows": out_rows,
        "median_abs_kv_err_gib": round(statistics.median(errs), 3) if errs else None,
        "max_abs_kv_err_gib": round(max(errs), 3) if errs else None,
    }


# --- accuracy guard ------------------------------------------------------------------------------------
GUARD = REPO / "tests" / "fixtures" / "accuracy-guard.json"
GUARD_MARGIN_GIB = 0.02  # tolerance = today's |KV error| + this, rounded up to 0.01 GiB
GUARD_HOW = [
    "Expectations of tests/unit/test_accuracy_guard.py: per dev record the planner expresses, the verdict and",
    "error kind it must predict and how far its available-KV figure may be from the logged one (GiB).",
    "After improving predictions run `python bench/accuracy.py --write-guard`: it adds newly expressed",
    "records and TIGHTENS tolerances to today's |error| + margin; it never loosens one. A change that makes",
    "a prediction worse fails the test: fix the change, or edit the record here by hand, raise",
    "kv_tolerance_gib and say why in `why` and in the commit message. `verdict` is the verdict predicted when",
    "written; where it differs from `verdict_logged`, a fix that makes them agree updates it (by hand).",
]


def write_guard(rows: list[dict], path: Path = GUARD) -> dict:
    """Merge today's rows into the guard: new records added, tolerances only ever tightened."""
    old = json.loads(path.read_text())["records"] if path.exists() else {}
    recs: dict[str, dict] = {}
    for x in rows:
        g = dict(old.get(x["id"], {}))
        # the verdict predicted today (normally the logged one; a record predicted wrong says why)
        g.update(
            verdict=x["verdict_pred"],
            verdict_logged=x["verdict_logged"],
            error_kind=x["error_pred"],
            kv_logged=x["kv_logged"],
        )
        if x["kv_err"] is not None:
            tol = math.ceil((abs(x["kv_err"]) + GUARD_MARGIN_GIB) * 100 - 1e-9) / 100
            g["kv_tolerance_gib"] = min(tol, g.get("kv_tolerance_gib", tol))
            g["kv_pred_when_written"] = x["kv_pred"]
        recs[x["id"]] = g
    for rid, g in old.items():
        recs.setdefault(rid, g)  # no longer expressed: kept, so the test says so
    data = {"how_to_update": GUARD_HOW, "margin_gib": GUARD_MARGIN_GIB, "records": dict(sorted(recs.items()))}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--records", "--jsonl", dest="records", help="JSONL records (default: the vendored dev set)"
    )
    ap.add_argument("--json", action="store_true", help="rows and summary as JSON")
    ap.add_argument(
        "--write-guard",
        action="store_true",
        help=f"update {GUARD.relative_to(REPO)} (adds records, only tightens tolerances)",
    )
    a = ap.parse_args(argv)
    path = records_path(a.records)
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    rows, skipped = run(recs)
    summary = summarize(recs, rows, skipped)
    if a.write_guard:
        data = write_guard(rows)
        print(f"wrote {GUARD.relative_to(REPO)}: {len(data['records'])} records")
        return 0
    loo = leave_one_out(recs, rows)
    summary["leave_one_out"] = {k: v for k, v in loo.items() if k != "rows"}
    for x in rows:
        x.update(loo["rows"].get(x["id"], {"kv_pred_loo": None, "kv_err_loo": None}))
    summary["targets"] = targets(rows, summary)
    if a.json:
        print(json.dumps({"rows": rows, "summary": summary}, indent=1))
        return 0
    print(
        f"{'id':5} {'vLLM':7} {'model':38} {'KV log':>7} {'KV pred':>7} {'err':>6} {'tok log':>9} {'tok pred':>9} verdict log/pred"
    )
    for x in rows:
        kl = f"{x['kv_logged']:.2f}" if x["kv_logged"] is not None else "-"
        er = f"{x['kv_err']:+.2f}" if x["kv_err"] is not None else "-"
        tl = f"{x['tok_logged']:,}" if x["tok_logged"] else "-"
        v = f"{x['verdict_logged']}/{x['verdict_pred']}" + (
            f" ({x['error_pred']})" if x["error_pred"] else ""
        )
        print(
            f"{x['id']:5} {x['vllm']:7} {x['model']:38} {kl:>7} {x['kv_pred']:7.2f} {er:>6} {tl:>9} {x['tok_pred']:>9,} {v} {x['note']}"
        )
    right = sum(1 for x in rows if x["verdict_logged"] == x["verdict_pred"])
    print()
    print(
        f"median |KV error| {summary['median_abs_kv_err_gib']} GiB, max {summary['max_abs_kv_err_gib']} GiB "
        f"over {summary['with_kv']} records with a logged KV; verdicts right {right}/{len(rows)} "
        f"({summary['verdict_accuracy']})"
    )
    d, u = summary["discrete"], summary["unified"]
    print(
        f"discrete GPUs: median |KV error| {d['median_abs_kv_err_gib']} GiB, max {d['max_abs_kv_err_gib']} GiB over "
        f"{d['with_kv']} records; verdicts {d['verdict_accuracy']}"
    )
    print(
        f"unified memory (warm start compared): median |KV error| {u['median_abs_kv_err_gib']} GiB, max "
        f"{u['max_abs_kv_err_gib']} GiB over {u['with_kv']} records; logged KV within the plan's cold..warm range "
        f"(+-0.5 GiB) {u['logged_kv_within_cold_warm_range']}/{u['with_kv']}"
    )
    for x in rows:
        if x.get("unified"):
            print(
                f"  {x['id']}: KV logged {x['kv_logged']}, predicted cold {x['kv_pred_cold']} .. warm {x['kv_pred']}"
            )
    if loo.get("not_computed"):
        print(f"leave-one-out: not computed: {loo['not_computed']}")
    print(
        f"leave-one-out: median |KV error| {loo['median_abs_kv_err_gib']} GiB, max {loo['max_abs_kv_err_gib']} GiB "
        "(each record predicted with the KV-fitted constants refit by least squares on the others)"
    )
    for n, c in loo["constants"].items():
        u = f" {c['unit']}" if c["unit"] else ""
        print(
            f"  {n}: written {c['written']}{u}; least squares on all records {c['all_records']}{u}; "
            f"without one record {c['folds'][0]}-{c['folds'][1]}{u}"
        )
    worst = sorted(rows, key=lambda x: -abs(x["kv_err_loo"] or 0))[:3]
    print(
        "  largest: "
        + ", ".join(f"{x['id']} {x['kv_err_loo']:+.2f}" for x in worst if x["kv_err_loo"] is not None)
    )
    t = summary["targets"]
    print(
        f"targets (issue 14): mean |KV error| {t['mean_abs_kv_err_gib']} <= {TARGET_MEAN_GIB} GiB "
        f"{'met' if t['mean_met'] else 'NOT met'}; every verdict right {'met' if t['verdicts_met'] else 'NOT met'}; "
        f"leave-one-out mean {t['loo_mean_abs_kv_err_gib']} <= {TARGET_LOO_GIB} GiB {'met' if t['loo_met'] else 'NOT met'}"
    )
    print(f"\ncannot express {len(skipped)} of {len(recs)} records:")
    for x in skipped:
        print(f"  {x['id']}: {x['reason']}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # piped into head
        sys.stderr.close()
        raise SystemExit(0) from None
