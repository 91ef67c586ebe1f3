"""Issue 13.7/13.8: absurd numbers in logs never become stored figures, tracebacks or quadratic time;
a bad stored calibration is reported and skipped. Plus property tests (hypothesis) for the parser."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from residency.calibrate.explain import explain_launch
from residency.calibrate.logparse import parse_log, plausible_figure
from residency.calibrate.record import CalibrationKey, Launch
from residency.calibrate.store import find_calibration, load, record
from residency.errors import SpecError

BIG = "9" * 400
HUGE = "7" * 5000


def _one(text: str) -> Launch:
    launches = parse_log(text)
    assert len(launches) == 1, launches
    return launches[0]


def test_400_digit_kv_memory_is_not_read_as_infinity():
    ln = _one(f"INFO Available KV cache memory: {BIG}.5 GiB\nINFO Model loading took 7.5 GiB and 3 seconds\n")
    assert ln.kv_cache_gib is None and ln.weights_gib == 7.5


def test_a_longer_digit_run_is_not_read_as_its_tail():
    ln = _one("INFO Available KV cache memory: 12345678901234567890 GiB\nINFO Using max model len 4096\n")
    assert ln.kv_cache_gib is None and ln.max_model_len == 4096


@pytest.mark.parametrize("value", ["9" * 5000, "1e309", "inf", "-1e400"])
def test_absurd_max_model_len_flag_is_dropped(value):
    ln = _one(f"$ vllm serve Qwen/Qwen3-4B --max-model-len {value} --max-num-seqs 4\n")
    assert ln.max_model_len is None and ln.max_num_seqs == 4


def test_absurd_values_in_non_default_args_are_dropped():
    ln = _one(
        f"INFO non-default args: {{'model': 'm', 'max_model_len': {HUGE}, 'gpu_memory_utilization': 1e309}}\n"
    )
    assert ln.model == "m" and ln.max_model_len is None and ln.gpu_memory_utilization is None


@pytest.mark.parametrize(
    "line",
    [
        f"INFO GPU KV cache size: {HUGE} tokens",
        f"ERROR ValueError: max_num_seqs ({HUGE}) exceeds available Mamba cache blocks ({HUGE})",
        f"ERROR CUDA out of memory occurred when warming up sampler with {HUGE} dummy requests",
        f"ERROR Free memory on device cuda:0 ({BIG}/{BIG} GiB) on startup is less than desired GPU memory "
        f"utilization (0.9, {BIG} GiB)",
    ],
)
def test_huge_numbers_in_error_lines_parse_and_explain(line):
    for ln in parse_log(line + "\n"):
        ex = explain_launch(ln)
        assert ex.kind and all(math.isfinite(v) for v in ex.numbers.values())


def test_optional_groups_and_absurd_counts_keep_the_error_kind():
    ln = _one("INFO CUDA graph pool memory: 0.5 GiB (actual)\nINFO reserved 3.0 GiB memory for KV Cache\n")
    assert (ln.cudagraph_gib, ln.cudagraph_estimate_gib, ln.kv_cache_gib) == (0.5, None, 3.0)
    ln = _one(f"ERROR CUDA out of memory occurred when warming up sampler with {HUGE} dummy requests\n")
    assert ln.error.kind == "sampler_oom" and ln.error.numbers == {} and len(ln.error.message) < 700
    ln = _one(f"ERROR ValueError: max_num_seqs (4) exceeds available Mamba cache blocks ({HUGE})\n")
    assert ln.error.kind == "mamba_cache_blocks" and ln.max_num_seqs == 4


def test_explain_zero_total_free_memory():
    ln = _one(
        "ERROR ValueError: Free memory on device cuda:0 (7.34/0 GiB) on startup is less than desired GPU "
        "memory utilization (0.9, 107.7 GiB)\n"
    )
    ex = explain_launch(ln)
    assert ex.kind == "free_memory" and "gpu_memory_utilization" in ex.fix


@pytest.mark.timeout(60)  # a hang guard, not a speed target: the old pattern took > 120 s at 50k digits
def test_long_digit_run_after_gib_is_linear():
    assert parse_log("INFO GiB " + "1" * 200_000 + "\n") == []


def test_implausible_launch_is_not_stored(tmp_path):
    key = CalibrationKey(model="m", vllm_version="0.11.0", device="h100-80gb")
    with pytest.raises(SpecError, match="kv_cache_gib"):
        record(Launch(kv_cache_gib=math.inf, weights_gib=7.5), key, tmp_path / "cal.json")
    assert not (tmp_path / "cal.json").exists()


def test_bad_stored_entry_is_reported_and_skipped(tmp_path, capsys):
    p = tmp_path / "cal.json"
    key = CalibrationKey(model="m", vllm_version="0.11.0", device="h100-80gb")
    good = record(Launch(kv_cache_gib=10.0, weights_gib=7.5), key, p)
    data = json.loads(p.read_text())
    bad = json.loads(json.dumps(data["calibrations"][0]))
    bad["key"]["model"] = "other"
    bad["launch"]["kv_cache_gib"] = math.inf  # json writes Infinity, as the old calibrate did
    data["calibrations"].append(bad)
    data["calibrations"].append({"key": "garbage"})
    p.write_text(json.dumps(data))
    cals = load(p)
    assert [c.key.model for c in cals] == ["m"] and cals[0].launch == good.launch
    err = capsys.readouterr().err
    assert "entry 1 skipped" in err and "kv_cache_gib" in err and "entry 2 skipped" in err
    assert (
        find_calibration(CalibrationKey(model="other", vllm_version="0.11.0", device="h100-80gb"), p) is None
    )


# ---------------------------------------------------------------- properties

_NUMS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=1, max_value=3000).map(lambda n: "9" * n),
    st.sampled_from(["0", "0.0", "-0", "1e309", "nan", "1,234,567", "32k", "32K"]),
)
_TEMPLATES = [
    "INFO Model loading took {} GiB and {} seconds",
    "INFO Available KV cache memory: {} GiB",
    "INFO GPU KV cache size: {} tokens",
    "INFO Maximum concurrency for {} tokens per request: {}x",
    "INFO init engine (profile, create kv cache, warmup model) took {} seconds",
    "ERROR Free memory on device cuda:0 ({}/{} GiB) on startup is less than desired GPU memory utilization ({}, {} GiB)",
    "ERROR To serve at least one request with the models's max seq len ({}), ({} GiB KV cache is needed, which is "
    "larger than the available KV cache memory ({} GiB). Based on the available memory, the estimated maximum model "
    "length is {}",
    "ERROR max_num_seqs ({}) exceeds available Mamba cache blocks ({})",
    "ERROR CUDA out of memory. Tried to allocate {} MiB. GPU 0 has a total capacity of {} GiB of which {} MiB is free",
    "INFO non-default args: {{'model': 'm', 'max_model_len': {}, 'gpu_memory_utilization': {}}}",
    "$ vllm serve m --max-model-len {} --gpu-memory-utilization {} --max-num-seqs {}",
    "INFO Initializing a V1 LLM engine (v0.11.0) with config: model='m', max_seq_len={}, tensor_parallel_size={}",
    "DEBUG Memory profiling takes {} seconds. Total non KV cache memory: {}GiB; torch peak memory increase: {}GiB",
    "INFO GiB {}",
    "INFO CUDA graph pool memory: {} GiB (actual)",
    "INFO CUDA graph pool memory: {} GiB (actual), {} GiB (estimated)",
    "INFO reserved {} GiB memory for KV Cache",
    "INFO Initial free memory {} GiB, reserved {} GiB memory for KV Cache",
    "WARNING Free memory on device cuda:0 ({}/{} GiB) on startup. Desired GPU memory utilization is ({}, {} GiB). "
    "Actual usage is {} GiB for weight, {} GiB for peak activation, {} GiB for non-torch memory, and {} GiB for "
    "CUDAGraph memory. Replace gpu_memory_utilization config with `--kv-cache-memory={}`",
]


@st.composite
def _log_lines(draw):
    lines = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        if draw(st.booleans()):
            t = draw(st.sampled_from(_TEMPLATES))
            lines.append(t.format(*[draw(_NUMS) for _ in range(t.count("{}"))]))
        else:
            lines.append(draw(st.text(max_size=200)))
    return "\n".join(lines)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_log_lines())
def test_property_parse_never_raises_and_figures_are_plausible(text):
    for ln in parse_log(text):
        for k, v in ln.model_dump(exclude={"error", "explicit"}).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                assert plausible_figure(k, v), (k, v)
        if ln.error is not None:
            assert all(math.isfinite(v) for v in ln.error.numbers.values())
        explain_launch(ln)
