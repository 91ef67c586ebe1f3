"""parse_log against the 64 real launches of tests/fixtures/reference/vllm-logs.jsonl, table-driven.

For every record with raw lines: parsing the raw lines gives the figures the record states
(weights, activation, non-torch, CUDA graphs, available KV, KV tokens, GPU blocks, block size,
concurrency, error kind), except where EXCLUDED says the record's figure comes from an author's
table or prose and not from a vLLM log line. Plus: multi-launch logs, prefixes/ANSI, wording
variants of the eras the set lacks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from residency.calibrate.logparse import _parse_dict_pairs, parse_log

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "logs"


RECORDS = [
    json.loads(line)
    for line in (FIXTURES.parent / "reference" / "vllm-logs.jsonl").read_text().splitlines()
    if line
]
WITH_RAW = [r for r in RECORDS if r.get("raw")]

# record field -> Launch field
FIGURES = {
    "weights_gib": "weights_gib",
    "activation_peak_gib": "activation_gib",
    "non_torch_gib": "non_torch_gib",
    "cuda_graph_gib": "cudagraph_gib",
    "available_kv_gib": "kv_cache_gib",
    "kv_cache_tokens": "kv_cache_tokens",
    "num_gpu_blocks": "num_gpu_blocks",
    "block_size": "block_size",
    "max_concurrency": "max_concurrency",
}
# Settings the record states, checked too (the calibration needs utilization x total).
SETTINGS = {
    "gpu_memory_utilization": "gpu_memory_utilization",
    "total_gpu_memory_gib": "total_gib",
    "max_model_len": "max_model_len",
}

_ALL = "*"
_AUTHOR_TABLE_4_RUNS = (
    "raw lines are the PR author's comparison table of four runs (7449/7351/31615/20865 blocks), not one log"
)
_KOREAN_TABLE = (
    "figures come from the blog author's Korean table of log values; raw holds the table rows, not log lines"
)
# (record id, field or "*") -> why the record's figure is not in its raw log lines
EXCLUDED: dict[tuple[str, str], str] = {
    ("r004", _ALL): _AUTHOR_TABLE_4_RUNS,
    ("r005", _ALL): _AUTHOR_TABLE_4_RUNS,
    ("r006", _ALL): _AUTHOR_TABLE_4_RUNS,
    ("r007", _ALL): _AUTHOR_TABLE_4_RUNS,
    ("r011", "available_kv_gib"): "12.26 GiB is not in raw: the TP0 usage line is cut off before its "
    "'Current kv cache memory in use'; the TP1 line says 12.24 GiB",
    ("r014", "available_kv_gib"): "2.30 GiB is quoted in the reporter's prose, not a log line",
    ("r022", _ALL): _KOREAN_TABLE,
    ("r023", "available_kv_gib"): _KOREAN_TABLE,
    ("r023", "kv_cache_tokens"): _KOREAN_TABLE,
    ("r023", "max_concurrency"): _KOREAN_TABLE,
    ("r024", _ALL): _KOREAN_TABLE,
    ("r025", _ALL): _KOREAN_TABLE,
    ("r026", _ALL): _KOREAN_TABLE,
    (
        "r049",
        "weights_gib",
    ): "author's Chinese transcription of the usage line (raw holds the breakdown, not the line)",
    ("r049", "activation_peak_gib"): "author's Chinese transcription of the usage line",
    ("r049", "non_torch_gib"): "author's Chinese transcription of the usage line",
    ("r049", "cuda_graph_gib"): "author's Chinese transcription of the usage line",
    ("r049", "total_gpu_memory_gib"): "author's Chinese transcription of the usage line",
    ("r050", "available_kv_gib"): "author's prose ('33.59 GiB is KV = 366,880 tokens'), not a log line",
    ("r050", "kv_cache_tokens"): "author's prose, not a log line",
    ("r050", "gpu_memory_utilization"): "author's prose ('At --gpu-memory-utilization 0.70 it holds')",
    ("r050", "total_gpu_memory_gib"): "converted by the record's author from nvidia-smi MiB; not in raw",
    ("r064", "max_concurrency"): "PR author's prose ('95 blocks / 1.44x KV concurrency'), not a log line",
    # settings given only in prose around the log
    ("r031", "gpu_memory_utilization"): "the command line in raw lacks 'vllm serve' (a bare flag list)",
    (
        "r031",
        "max_model_len",
    ): "raw mixes two attempts: the flags say 64000, the quoted error is from a 16000 run",
    ("r051", "max_model_len"): "stated in the author's prose ('refused to start at --max-model-len 32768')",
    ("r058", "gpu_memory_utilization"): "the raw excerpt is truncated before gpu_memory_utilization",
    ("r058", "max_model_len"): "stated only as the author's '35k - OK'",
    ("r061", "gpu_memory_utilization"): "stated in the author's markdown prose, not a command or log line",
    ("r061", "max_model_len"): "stated in the author's markdown prose, not a command or log line",
    ("r064", "max_model_len"): "stated in the PR author's prose ('at 128k')",
    # failures whose error text is not in the raw lines
    ("r017", "error"): "the failure is only in the issue title; raw stops at weight loading",
    ("r018", "error"): "the failure is only in the issue title; raw holds the weights lines",
    (
        "r034",
        "error",
    ): "raw shows only 'EngineCore failed to start.'; the cache-blocks text is the record's summary",
    ("r037", "error"): "raw says 'Same issue' in prose; the error text is the record's summary",
}

# Failed records: the kind their error text (in raw) names. Hand-assigned from each record's `error`.
EXPECTED_ERROR = {
    "r015": "no_cache_blocks",  # "Available KV cache memory: -2.14 GiB" then EngineCore failed: vLLM raises it at <= 0 (§6.1)
    "r016": "no_cache_blocks",  # the quoted ValueError
    "r029": "max_seq_len",
    "r030": "max_seq_len",
    "r031": "max_seq_len",  # the only vLLM error text in raw: "The model's max seq len (16000) is larger ..."
    "r032": "no_cache_blocks",
    "r033": "no_cache_blocks",
    "r034": "other",  # excluded above; the parser sees 'EngineCore failed to start.'
    "r035": "max_seq_len",
    "r036": "no_cache_blocks",  # "# GPU blocks: 0": V0 raises No available memory for the cache blocks
    "r046": "cuda_oom",  # exception inside capture_model (graph capture OOM)
    "r047": "cuda_oom",
    "r051": "max_seq_len",  # "4.5 GiB KV cache is needed"
    "r054": "max_seq_len",
    "r057": "max_seq_len",
    "r059": "free_memory",
    "r060": "free_memory",
    "r061": "mamba_cache_blocks",
    "r062": "mamba_cache_blocks",
    "r063": "mamba_cache_blocks",
    "r064": "mamba_cache_blocks",
}
# Records whose raw lines hold more than one start; the record is the last one.
LAUNCHES = {"r034": 2}  # the VLLM_USE_V1=0 command (success) and the V1 command (failure)


def _expected(v):
    """Record values: numbers, or strings like 'default (16)' (not stated by a log: None) / '2096 (auto-set ...)'."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        if v.startswith("default"):
            return None
        m = re.match(r"^(\d+(?:\.\d+)?)\b", v)
        return float(m.group(1)) if m else None
    return None


def _excluded(rid: str, field: str) -> bool:
    return (rid, _ALL) in EXCLUDED or (rid, field) in EXCLUDED


def _close(field: str, got, want) -> bool:
    if got is None:
        return False
    if field in ("kv_cache_tokens", "num_gpu_blocks", "block_size", "max_model_len"):
        return int(got) == int(want)
    # GiB: records keep whichever precision the source printed ("Model loading took 8.5107 GB" vs
    # the table's "8.51GiB"): agree to the table's 2 decimals.
    return abs(float(got) - float(want)) <= 0.0051


def test_reference_set_is_complete():
    assert len(RECORDS) == 64
    assert len(WITH_RAW) == 64
    assert all(k[0] in {r["id"] for r in RECORDS} for k in EXCLUDED)
    # every failed record has an expected kind or an exclusion saying why not
    for r in WITH_RAW:
        if not r["status"].startswith("ok"):
            assert r["id"] in EXPECTED_ERROR or (r["id"], "error") in EXCLUDED, r["id"]


# Records with a whole-record exclusion are checked by test_author_tables_give_no_record_figures instead.
COMPARED = [r for r in WITH_RAW if not _excluded(r["id"], _ALL)]
WITH_KIND = [r for r in COMPARED if not _excluded(r["id"], "error")]


@pytest.mark.parametrize("rec", COMPARED, ids=[r["id"] for r in COMPARED])
def test_record_figures(rec):
    launches = parse_log("\n".join(rec["raw"]))
    assert len(launches) == LAUNCHES.get(rec["id"], 1), [ln.model for ln in launches]
    ln = launches[-1]
    wrong = []
    for rf, lf in {**FIGURES, **SETTINGS}.items():
        want = _expected(rec.get(rf))
        if want is None or _excluded(rec["id"], rf):
            continue
        got = getattr(ln, lf)
        if not _close(rf, got, want):
            wrong.append(f"{lf}: want {want}, got {got}")
    assert not wrong, wrong


@pytest.mark.parametrize("rec", WITH_KIND, ids=[r["id"] for r in WITH_KIND])
def test_record_error_kind(rec):
    launches = parse_log("\n".join(rec["raw"]))
    ln = launches[-1]
    got = ln.error.kind if ln.error else None
    if rec["status"].startswith("ok"):
        assert got is None, ln.error
    else:
        assert got == EXPECTED_ERROR[rec["id"]], ln.error
        assert ln.error.message  # vLLM's own text, not empty


def test_author_tables_give_no_record_figures():
    # The excluded records' raw lines are tables written by people, not log lines: the parser must not
    # turn a table row into a launch's KV or weights. r004-r007 share one PR table whose
    # "- This PR: # GPU blocks: N" rows do match vLLM's V0 "# GPU blocks: N" wording (last one wins).
    excluded = sorted(r["id"] for r in WITH_RAW if _excluded(r["id"], _ALL))
    assert excluded == ["r004", "r005", "r006", "r007", "r022", "r024", "r025", "r026"]
    for rid in ("r004", "r005", "r006", "r007"):
        (ln,) = parse_log("\n".join(_raw(rid)))
        assert (ln.num_gpu_blocks, ln.kv_cache_gib, ln.weights_gib, ln.kv_cache_tokens) == (
            31615,
            None,
            None,
            None,
        )
    # r022: only its `vllm serve` command line starts a launch; the Korean table rows give no figure
    (ln,) = parse_log("\n".join(_raw("r022")))
    assert (ln.kv_cache_gib, ln.weights_gib, ln.kv_cache_tokens, ln.error) == (None, None, None, None)
    for rid in ("r024", "r025", "r026"):
        assert parse_log("\n".join(_raw(rid))) == [], rid


def _raw(rid: str) -> list[str]:
    return next(r["raw"] for r in RECORDS if r["id"] == rid)


# --- spot checks with hand-read numbers ----------------------------------------------------------


def test_usage_line_is_not_the_free_memory_error():
    # r009 (0.10.2-0.11.0, TP4): "Free memory on device (43.93/44.42 GiB) on startup. Desired GPU memory
    # utilization is (0.9, 39.98 GiB). Actual usage is 27.72 GiB for weight, 1.4 ... 0.21 ... 3.45 ..."
    (ln,) = parse_log("\n".join(_raw("r009")))
    assert ln.error is None
    assert (ln.free_at_start_gib, ln.total_gib, ln.gpu_memory_utilization) == (43.93, 44.42, 0.9)
    assert (ln.weights_gib, ln.activation_gib, ln.non_torch_gib, ln.cudagraph_gib) == (27.72, 1.4, 0.21, 3.45)
    assert ln.suggested_kv_cache_memory_bytes == 7564378828
    assert ln.max_model_len == 32768  # "--max-model-len 32K": upper-case K is 1024
    assert ln.explicit["tensor_parallel_size"] == 4


def test_newest_usage_line_reports_consumed_not_weights():
    # r011: "Actual usage is 15.03 GiB for consumed memory (weights + non-torch)" on TP0, 15.05 on TP1
    (ln,) = parse_log("\n".join(_raw("r011")))
    assert ln.weights_gib is None
    assert ln.consumed_gib == 15.05  # the larger rank
    assert ln.free_at_start_gib == 30.27  # the smaller rank: 30.27 < 30.5
    assert ln.cudagraph_gib == 0.09 and ln.cudagraph_estimate_gib == 0.13


def test_graph_estimate_and_actual_kept_apart():
    # r028 (0.20.0): "Estimated CUDA graph memory: 0.36 GiB total" ... "Graph capturing ... took 0.73 GiB"
    (ln,) = parse_log((FIXTURES / "v1-0.20.0-hybrid-ok.log").read_text())
    assert ln.cudagraph_estimate_gib == 0.36
    assert ln.cudagraph_gib == 0.73
    assert ln.block_size == 2096  # "Setting attention block size to 2096 tokens"
    assert ln.explicit["kv_cache_dtype"] == "fp8_e4m3"
    assert ln.explicit["max_num_seqs"] == 1


def test_v0_table_and_loading_line_agree():
    # r020 (0.7.2): "Loading model weights took 2.8884 GB" (GB = GiB here) and the table's 2.89GiB
    (ln,) = parse_log((FIXTURES / "v0-0.7.2-qwen2.5-ok.log").read_text())
    assert ln.weights_gib == 2.8884  # the 4-decimal line wins over the 2-decimal table
    assert (ln.activation_gib, ln.non_torch_gib, ln.kv_cache_gib) == (2.02, 0.01, 2.36)
    assert (ln.total_gib, ln.gpu_memory_utilization, ln.num_gpu_blocks) == (14.56, 0.5, 5517)
    assert (ln.vllm_version, ln.dtype, ln.max_model_len, ln.enforce_eager) == (
        "0.7.2",
        "float16",
        32768,
        False,
    )


# --- multi-launch logs --------------------------------------------------------------------------------


def test_restarts_give_one_launch_each():
    # tests/fixtures/logs/restarts.log = raw lines of r052, r027, r029 one after the other
    launches = parse_log((FIXTURES / "restarts.log").read_text())
    assert [ln.vllm_version for ln in launches] == [
        "0.11.0+582e4e37.nv25.11",
        "0.11.0",
        "0.8.3.dev172+g2b93162f",
    ]
    assert [ln.kv_cache_gib for ln in launches] == [102.56, 35.34, 0.93]
    assert [ln.error.kind if ln.error else None for ln in launches] == [None, None, "max_seq_len"]
    assert launches[0].num_gpu_blocks == 52510 and launches[1].num_gpu_blocks is None


def test_init_line_ends_a_launch_and_version_line_starts_one():
    # two V0 starts back to back: r041 (v0.6.6) then r020 (v0.7.2), each opened by its engine config line
    launches = parse_log("\n".join(_raw("r041") + _raw("r020")))
    assert [(ln.vllm_version, ln.kv_cache_gib) for ln in launches] == [("0.6.6", 4.36), ("0.7.2", 2.36)]


def test_repeated_args_line_after_figures_starts_a_new_launch():
    # r053 (non-default args, figures) followed by r010's non-default args and figures
    launches = parse_log("\n".join(_raw("r053")[1:] + _raw("r010")))
    assert [ln.kv_cache_gib for ln in launches] == [85.79, 5.98]
    assert launches[0].explicit["gpu_memory_utilization"] == 0.85
    assert launches[1].vllm_version == "0.24.0"


def test_no_vllm_lines_no_launch():
    assert parse_log("") == []
    assert parse_log("hello\nworld\n") == []


# --- prefixes and colour ---------------------------------------------------------------------------


def test_compose_prefix_and_ansi():
    (ln,) = parse_log((FIXTURES / "compose-ansi-graph-oom.log").read_text())
    assert (ln.weights_gib, ln.kv_cache_tokens, ln.max_concurrency) == (14.2474, 198784, 24.27)
    assert ln.error is not None and ln.error.kind == "cuda_oom"
    assert "\x1b" not in ln.error.message


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "(EngineCore_DP0 pid=175) INFO 11-14 14:26:16 [gpu_worker.py:298] ",
        "vllm-granite-1  | (EngineCore_DP0 pid=175) INFO 11-14 14:26:16 [gpu_worker.py:298] ",
        "2025-11-14T14:26:16.123456Z \x1b[1;32mINFO\x1b[0m ",
        "vLLM STDOUT: INFO 05-05 15:25:32 ",
    ],
)
def test_prefixes_do_not_matter(prefix):
    # r027's lines with other prefixes: 35.34 GiB, 463,136 tokens, 3.53x at 131,072
    text = "\n".join(
        prefix + line
        for line in (
            "Available KV cache memory: 35.34 GiB",
            "GPU KV cache size: 463,136 tokens",
            "Maximum concurrency for 131,072 tokens per request: 3.53x",
        )
    )
    (ln,) = parse_log(text)
    assert (ln.kv_cache_gib, ln.kv_cache_tokens, ln.max_concurrency, ln.max_model_len) == (
        35.34,
        463136,
        3.53,
        131072,
    )


# --- wordings of eras the reference set lacks (numbers reused from records) ---------------------------


def test_033_combined_capacity_line():
    # 0.33.0 prints both on one line (§7.5); r021's numbers: 75,824 tokens, 40,960 per request, 1.85x
    (ln,) = parse_log(
        "(EngineCore pid=1) INFO [kv_cache_utils.py:1150] GPU KV cache size: 75,824 tokens, "
        "Maximum concurrency for 40,960 tokens per request: 1.85x"
    )
    assert (ln.kv_cache_tokens, ln.max_concurrency, ln.max_model_len) == (75824, 1.85, 40960)


def test_debug_profiling_lines_both_formulas():
    # <= 0.26 (formula A) with r009's components; >= 0.27 (formula B) reports total consumed instead
    (a,) = parse_log(
        "DEBUG [gpu_worker.py:300] Memory profiling takes 5.47 seconds. Total non KV cache memory: 29.33GiB; "
        "torch peak memory increase: 1.4GiB; non-torch forward increase memory: 0.21GiB; weights memory: 27.72GiB."
    )
    assert (a.non_kv_cache_gib, a.activation_gib, a.non_torch_gib, a.weights_gib) == (29.33, 1.4, 0.21, 27.72)
    (b,) = parse_log(
        # the 0.32 wording (vllm/utils/mem_utils.py __repr__), with r011's 15.03 consumed and 1.59 peak
        "DEBUG [gpu_worker.py:740] Memory profiling takes 5.47 seconds. Total non KV cache memory: 16.62GiB; "
        "torch peak memory increase: 1.59GiB; total consumed (from mem_get_info): 15.03GiB; weights memory: 14.2GiB."
    )
    assert (b.non_kv_cache_gib, b.consumed_gib, b.weights_gib, b.activation_gib) == (16.62, 15.03, 14.2, 1.59)


def test_kv_cache_memory_bytes_line():
    # §9 wording; r011's suggested 12.03 GiB taken as the reservation
    (ln,) = parse_log(
        "INFO [gpu_worker.py:250] Initial free memory 30.27 GiB, reserved 12.03 GiB memory for KV Cache as "
        "specified by kv_cache_memory_bytes config and skipped memory profiling. This does not respect the "
        "gpu_memory_utilization config. Only use kv_cache_memory_bytes config when you want manual control."
    )
    assert (ln.kv_cache_gib, ln.free_at_start_gib, ln.error) == (12.03, 30.27, None)


@pytest.mark.parametrize(
    ("text", "kind", "numbers"),
    [
        (
            "ValueError: Free memory on device cuda:0 (7.34/139.72 GiB) on startup is less than desired GPU memory "
            "utilization (0.9, 125.75 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.",
            "free_memory",
            {"free_gib": 7.34, "total_gib": 139.72, "utilization": 0.9, "requested_gib": 125.75},
        ),
        (
            # 0.33 with weights held by an external loader process
            "ValueError: Free memory on device cuda:0 (30.27/31.4 GiB) on startup is less than the engine's budget "
            "after excluding external process's weights (0.92, 12.03 GiB). Decrease GPU memory utilization or reduce "
            "GPU memory used by other processes.",
            "free_memory",
            {"free_gib": 30.27, "total_gib": 31.4, "utilization": 0.92, "requested_gib": 12.03},
        ),
        (
            # CPU backend (0.32, vllm/v1/worker/cpu_worker.py); the toy box's 10.34 GiB node
            "ValueError: Available memory on node 0 (6.5/10.34 GiB) on startup is less than desired CPU memory "
            "utilization (0.9, 9.31 GiB). On the CPU backend, the `--gpu-memory-utilization` flag controls the "
            "fraction of CPU memory reserved (despite its name).",
            "free_memory",
            {"free_gib": 6.5, "total_gib": 10.34, "utilization": 0.9, "requested_gib": 9.31},
        ),
        (
            "AssertionError: Error in memory profiling. Initial free memory 40.1 GiB, current free memory 41.3 GiB. "
            "This happens when other processes sharing the same container release GPU memory while vLLM is profiling "
            "during initialization.",
            "profiling",
            {"initial_free_gib": 40.1, "current_free_gib": 41.3},
        ),
        (
            "RuntimeError: CUDA out of memory occurred when warming up sampler with 256 dummy requests. Please try "
            "lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine.",
            "sampler_oom",
            {"dummy_requests": 256},
        ),
        (
            "INFO [gpu_model_runner.py:2000] Starting to load model Qwen/Qwen3-32B...\n"
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB. GPU 0 has a total capacity of "
            "23.55 GiB of which 512.00 MiB is free.",
            "weights_do_not_fit",
            {"tried_gib": 1.0, "device_total_gib": 23.55, "device_free_gib": 0.5},
        ),
    ],
)
def test_error_wordings(text, kind, numbers):
    (ln,) = parse_log(text)
    assert ln.error is not None and ln.error.kind == kind
    assert ln.error.numbers == numbers
    assert not ln.error.message.startswith(("ValueError", "RuntimeError"))


def test_nondefault_args_nested_keys_do_not_leak():
    # r012's args line with '...' elisions; a nested 'model' inside speculative_config stays nested
    line = (
        "{... 'dtype': 'float16', 'max_model_len': 262144, 'quantization': 'auto_round', ... "
        "'tensor_parallel_size': 2, 'speculative_config': {'method': 'mtp', 'model': 'draft', "
        "'num_speculative_tokens': 3}, 'max_num_seqs': 2}"
    )
    pairs = _parse_dict_pairs(line)
    assert "model" not in pairs and "method" not in pairs
    assert (
        pairs["max_model_len"] == 262144
        and pairs["max_num_seqs"] == 2
        and pairs["quantization"] == "auto_round"
    )
    (ln,) = parse_log("non-default args: " + line)
    assert ln.model is None and ln.tensor_parallel_size == 2 and ln.dtype == "float16"


def test_real_cpu_build_log():
    # a vLLM 0.32.0 CPU-build start recorded on this project's test box (tests/fixtures/logs/cpu-0.32.0-toy-hermes.log):
    # banner "█  version 0.32.0", "Explicitly set (1.0/10.34) GiB for KV cache on node 0.",
    # "CPU KV cache size: 1,398,016 tokens, Maximum concurrency for 4,096 tokens per request: 341.31x",
    # "init engine (profile, create kv cache, warmup model) took 41.10 s"
    (ln,) = parse_log((FIXTURES / "cpu-0.32.0-toy-hermes.log").read_text())
    assert (ln.vllm_version, ln.kv_cache_gib, ln.kv_cache_tokens, ln.max_concurrency) == (
        "0.32.0",
        1.0,
        1398016,
        341.31,
    )
    assert (ln.init_seconds, ln.max_model_len, ln.max_num_seqs, ln.error) == (41.1, 4096, 4, None)
    assert ln.explicit["max_num_seqs"] == 4 and "port" not in ln.explicit


def test_generic_engine_failure_is_other():
    # r034's V1 run: the only failure line is "EngineCore failed to start."
    (ln,) = parse_log("ERROR 04-30 10:20:36 [core.py:396] EngineCore failed to start.")
    assert (
        ln.error is not None
        and ln.error.kind == "other"
        and ln.error.message == "EngineCore failed to start."
    )


def test_cpu_auto_kv_line():
    # 0.32 CPU backend without VLLM_CPU_KVCACHE_SPACE (wording from vllm/v1/worker/cpu_worker.py); the toy
    # box's 10.34 GiB node: 0.9 x 10.34 = 9.31 requested, 1.2 consumed, 8.11 left for KV
    (ln,) = parse_log(
        "(Worker pid=1) INFO 11-27 02:22:06 [cpu_worker.py:270] Auto set (8.11/10.34) GiB for KV cache on node 0, "
        "with 9.31 GiB requested memory for the worker. 1.2 GiB memory was consumed by non-kv usages."
    )
    assert (ln.kv_cache_gib, ln.total_gib, ln.consumed_gib, ln.error) == (8.11, 10.34, 1.2, None)
