"""explain_launch: the verdict, vLLM's words, what they mean and the fix, with worked numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from residency.calibrate.explain import explain_launch
from residency.calibrate.logparse import parse_log
from residency.calibrate.record import Launch, LaunchError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def _one(name: str) -> Launch:
    (ln,) = parse_log((FIXTURES / name).read_text())
    return ln


def test_free_memory():
    # r059: Free memory on device (7.34/139.72 GiB) ... (0.9, 125.75 GiB)
    ex = explain_launch(_one("v1-free-memory.log"))
    assert ex.kind == "free_memory"
    assert ex.message.startswith("Free memory on device (7.34/139.72 GiB)")
    # held by others = 139.72 - 7.34 = 132.38; max utilization = floor((7.34/139.72 - 0.01) x 100)/100
    # = floor((0.05253 - 0.01) x 100)/100 = floor(4.25)/100 = 0.04
    assert ex.numbers["held_by_others_gib"] == 132.38
    assert ex.numbers["max_utilization"] == 0.04
    assert "7.34/139.72 - 0.01 = 0.04" in ex.fix
    assert "132.38 GiB" in ex.fix and "one at a time" in ex.fix


def test_free_memory_when_nothing_fits():
    # r060: 0.49 of 79.32 GiB free: 0.49/79.32 - 0.01 = -0.0038 -> no utilization fits
    (ln,) = parse_log(
        "ValueError: Free memory on device (0.49/79.32 GiB) on startup is less than desired GPU memory "
        "utilization (0.6, 47.59 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes."
    )
    ex = explain_launch(ln)
    assert "no utilization fits" in ex.fix and "78.83 GiB" in ex.fix
    assert "lower gpu_memory_utilization to" not in ex.fix


def test_max_seq_len_with_vllm_estimate():
    # r030: needs 6.66 GiB, 5.44 available, vLLM estimates 13528
    ex = explain_launch(_one("v1-max-seq-len.log"))
    assert ex.kind == "max_seq_len"
    assert ex.fix.startswith("Lower max_model_len to 13528 (vLLM's estimate)")
    assert ex.numbers["short_gib"] == 1.22  # 6.66 - 5.44


def test_max_seq_len_utilization_needed():
    # r030's numbers on a device whose total is known (GH200 94.5 GiB, utilization 0.95):
    # 0.95 + (6.66 - 5.44)/94.5 = 0.95 + 0.01291 = 0.96291 -> rounded up 0.97
    ln = Launch(
        gpu_memory_utilization=0.95,
        total_gib=94.5,
        error=LaunchError(
            kind="max_seq_len",
            message="To serve at least one request ...",
            numbers={
                "max_model_len": 30000,
                "needed_gib": 6.66,
                "available_gib": 5.44,
                "estimated_max_len": 13528,
            },
        ),
    )
    ex = explain_launch(ln)
    assert ex.numbers["min_utilization"] == 0.97
    assert "0.95 + (6.66 - 5.44)/94.50 = 0.97" in ex.fix


def test_v0_max_seq_len():
    # r057: 2.89 GiB holds 23,648 tokens, max_model_len 29,000, utilization 0.9 of 23.58 GiB.
    # extra KV = 2.89 x (29000/23648 - 1) = 2.89 x 0.22632 = 0.654 GiB; 0.9 + 0.654/23.58 = 0.9277 -> 0.93
    (ln,) = parse_log(
        "Loading model weights took 14.9888 GB\n"
        "Memory profiling results: total_gpu_memory=23.58GiB initial_memory_usage=15.34GiB peak_torch_memory=17.98GiB "
        "memory_usage_post_profile=15.35GiB non_torch_memory=0.35GiB kv_cache_size=2.89GiB gpu_memory_utilization=0.90\n"
        "# GPU blocks: 1478, # CPU blocks: 2048\n"
        "Maximum concurrency for 29000 tokens per request: 0.82x\n"
        "The model's max seq len (29000) is larger than the maximum number of tokens that can be stored in KV cache "
        "(23648). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
    )
    ex = explain_launch(ln)
    assert ex.kind == "max_seq_len"
    assert "<= 23648" in ex.fix
    assert ex.numbers["min_utilization"] == 0.93
    assert ex.numbers["extra_kv_gib"] == pytest.approx(0.65, abs=0.01)


def test_mamba():
    ex = explain_launch(_one("v1-mamba.log"))  # r061: max_num_seqs (1024) exceeds ... (969)
    assert ex.kind == "mamba_cache_blocks"
    assert "max_num_seqs <= 969" in ex.fix
    assert "1024" in ex.meaning and "969" in ex.meaning


def test_no_cache_blocks_with_components():
    # r038-like V0 components with a budget too small: 0.5 x 7.65 = 3.825 GiB requested,
    # weights 3.26 + activation 1.22 + non-torch 0.02 = 4.50 GiB -> KV 3.825 - 4.50 = -0.675.
    # To hold 1 GiB of KV: (4.50 + 1)/7.65 = 0.719 -> 0.72
    ln = Launch(
        gpu_memory_utilization=0.5,
        total_gib=7.65,
        weights_gib=3.26,
        activation_gib=1.22,
        non_torch_gib=0.02,
        kv_cache_gib=-0.675,
        error=LaunchError(kind="no_cache_blocks", message="No available memory for the cache blocks."),
    )
    ex = explain_launch(ln)
    assert ex.numbers["non_kv_gib"] == 4.5
    assert ex.numbers["min_utilization"] == 0.72
    assert "weights 3.26 GiB" in ex.meaning and "-0.68 GiB" in ex.meaning


def test_negative_kv_without_error_line_is_no_cache_blocks():
    # r015: Model loading took 65.9651 GiB; Available KV cache memory: -2.14 GiB; EngineCore failed to start.
    (ln,) = parse_log(
        "INFO 08-20 18:04:10 [gpu_model_runner.py:2007] Model loading took 65.9651 GiB and 12.799889 seconds\n"
        "INFO 08-20 18:04:22 [gpu_worker.py:276] Available KV cache memory: -2.14 GiB\n"
        "ERROR 08-20 18:04:22 [core.py:700] EngineCore failed to start."
    )
    ex = explain_launch(ln)
    assert ex.kind == "no_cache_blocks"
    assert "-2.14" in ex.message


def test_graph_capture_oom():
    ex = explain_launch(_one("compose-ansi-graph-oom.log"))  # r046
    assert ex.kind == "cuda_oom"
    assert "enforce_eager" in ex.fix and "graph" in ex.meaning.lower()


@pytest.mark.parametrize(
    ("kind", "numbers", "needle"),
    [
        ("profiling", {"initial_free_gib": 40.1, "current_free_gib": 41.3}, "one at a time"),
        ("sampler_oom", {"dummy_requests": 256}, "max_num_seqs"),
        ("weights_do_not_fit", {}, "quantized"),
        ("other", {}, "traceback"),
    ],
)
def test_other_kinds_have_a_fix(kind, numbers, needle):
    ex = explain_launch(Launch(error=LaunchError(kind=kind, message="x", numbers=numbers)))
    assert ex.kind == kind and ex.meaning and needle in ex.fix


def test_ok_and_unknown():
    assert explain_launch(_one("v1-0.11.0-granite-ok.log")).kind == "ok"
    assert explain_launch(Launch(weights_gib=3.0)).kind == "unknown"
