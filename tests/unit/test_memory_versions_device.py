"""Version rules (vllm-memory.md §11), device presets and the activation/graph estimates by version."""

from __future__ import annotations

import pytest
from memfacts import dense

from residency.errors import SpecError
from residency.memory import activation as act
from residency.memory.device import PRESETS, resolve_device
from residency.memory.versions import cudagraphs_in_budget, rules_for, uses_v2_runner
from residency.spec import DeviceSpec


@pytest.mark.parametrize(
    "field,before,after",
    [
        ("requested_ceil", "0.13.0", "0.14.1"),
        ("uma_free_is_memavailable", "0.11.0", "0.11.1"),
        ("cudagraph_in_budget", "0.19.1", "0.20.0"),
        ("need_minus_null_block", "0.28.0", "0.29.0"),
        ("has_kv_cache_memory_bytes", "0.10.1", "0.10.2"),
        ("uniform_type_specs", "0.10.2", "0.11.0"),
        ("big_batch_tier", "0.27.1", "0.28.0"),
        ("gb10_small_tier", "0.32.0", "0.33.0"),
        ("hybrid_prefix_caching_default", "0.25.1", "0.26.0"),
        ("mamba_cache_modes", "0.14.1", "0.15.1"),
        ("gdn_ssm_dtype_separate", "0.16.0", "0.17.1"),
        ("block_from_backend", "0.19.1", "0.20.0"),
        ("v2_graph_estimate", "0.28.0", "0.29.0"),
    ],
)
def test_rule_switches_on_at_its_version(field, before, after):
    assert getattr(rules_for(before), field) is False
    assert getattr(rules_for(after), field) is True


@pytest.mark.parametrize(
    "field,before,after",
    [
        ("nccl_in_budget", "0.10.2", "0.11.0"),
        ("models_typo", "0.21.0", "0.22.1"),
        ("mla_use_mla_flag", "0.10.1.1", "0.11.0"),
    ],
)
def test_rule_switches_off_at_its_version(field, before, after):
    assert getattr(rules_for(before), field) is True
    assert getattr(rules_for(after), field) is False


def test_tiered_values():
    assert [rules_for(v).log_tokens for v in ("0.10.2", "0.11.0", "0.20.0", "0.20.1")] == [
        "blocks",
        "groups",
        "groups",
        "concurrency",
    ]
    assert [rules_for(v).group_size_threshold for v in ("0.11.2", "0.12.0", "0.17.1", "0.18.0")] == [
        None,
        1.25,
        1.25,
        1.5,
    ]
    assert [rules_for(v).capture_scheme for v in ("0.11.0", "0.11.1", "0.32.0", "0.33.0")] == [
        "step8",
        "step16",
        "step16",
        "v033",
    ]
    assert (
        rules_for("0.26.0").mamba2_default_mode == "all"
        and rules_for("0.28.0").mamba2_default_mode == "align"
    )


def test_device_presets_and_overrides():
    d = resolve_device(DeviceSpec(preset="dgx-spark"))
    assert (d.total_gib, d.unified, d.compute_capability, d.nvml_memory) == (119.67, True, "12.1", False)
    assert resolve_device(DeviceSpec(preset="h100-80gb")).total_gib == pytest.approx(79.19)
    # GH200 is coherent but not integrated: vLLM uses cudaMemGetInfo there
    assert resolve_device(DeviceSpec(preset="gh200")).unified is False
    o = resolve_device(DeviceSpec(preset="dgx-spark", total_gib=121.69, unified=False))
    assert (o.total_gib, o.unified) == (121.69, False)
    assert resolve_device(DeviceSpec(total_gib=47.5)).total_gib == 47.5
    for name in (
        "h200",
        "a100-80gb",
        "a100-40gb",
        "l40s",
        "l4",
        "rtx-4090",
        "rtx-5090",
        "rtx-3090",
        "jetson-thor",
    ):
        assert name in PRESETS


def test_device_errors_name_the_field():
    with pytest.raises(SpecError) as e:
        resolve_device(DeviceSpec(preset="h900"))
    assert e.value.field == "device.preset" and "dgx-spark" in str(e.value)
    with pytest.raises(SpecError) as e2:
        resolve_device(DeviceSpec())
    assert e2.value.field == "device.total_gib"


def P(seqs=256, mnbt=2048, eager=False, tp=1):
    return act.ProfileSettings(
        max_num_batched_tokens=mnbt,
        max_num_seqs=seqs,
        max_model_len=32768,
        tensor_parallel_size=tp,
        enforce_eager=eager,
    )


def test_capture_sizes_by_version():
    # <= 0.11.0: [1, 2, 4] + 8..512 step 8 = 67 sizes for max_num_seqs 256 (cap min(512, 512))
    assert len(act.cudagraph_capture_sizes(P(mnbt=8192), rules_for("0.11.0"))) == 67
    # 0.11.1-0.32: step 8 below 256, step 16 from 256: 3 + 31 + 17 = 51
    s = act.cudagraph_capture_sizes(P(mnbt=8192), rules_for("0.20.0"))
    assert len(s) == 51 and s[-1] == 512 and 264 not in s and 272 in s
    # capped at max_num_batched_tokens
    assert max(act.cudagraph_capture_sizes(P(mnbt=2048), rules_for("0.20.0"))) == 512
    assert max(act.cudagraph_capture_sizes(P(seqs=8, mnbt=2048), rules_for("0.20.0"))) == 16
    # 0.33: max_num_seqs added as a uniform-decode size: seqs 6 -> cap 12 -> [1,2,4,6,8]
    assert act.cudagraph_capture_sizes(P(seqs=6), rules_for("0.33.0")) == [1, 2, 4, 6, 8]
    assert act.cudagraph_capture_sizes(P(eager=True), rules_for("0.33.0")) == []


def test_sampler_peak_by_version():
    f = dense()  # Qwen3ForCausalLM, dense, bf16
    # V1 runner (docs/vllm-versions.md [V17-sampler], [V21-flashinfer-sampler]): torch sort path through
    # 0.16 (256 x 151,936 x 36 B = 1.304 GiB), Triton top-k/top-p from 0.17 and FlashInfer from 0.21: 14 B
    assert act.sampler_peak_bytes(f, P(), rules_for("0.16.0")) == 256 * 151936 * 36
    assert act.sampler_peak_bytes(f, P(), rules_for("0.17.0")) == 256 * 151936 * 14
    assert act.sampler_peak_bytes(f, P(), rules_for("0.21.0")) == 256 * 151936 * 14
    # 0.17-0.20: fewer than 8 rows keep the sort path
    assert act.sampler_peak_bytes(f, P(seqs=4), rules_for("0.19.1")) == 4 * 151936 * 36
    # V2 runner for Qwen3 from 0.22 [V22-v2-runner]: no sampling parameters in the profile; logits + fp32
    # copy through 0.25, the logits only from 0.26
    assert act.sampler_peak_bytes(f, P(), rules_for("0.22.0")) == 256 * 151936 * 6
    assert act.sampler_peak_bytes(f, P(), rules_for("0.26.0")) == 256 * 151936 * 2
    # ... but not for a quantized Qwen3 until 0.24, nor for another dense architecture until 0.23/0.25
    from dataclasses import replace

    assert (
        act.sampler_peak_bytes(replace(f, quantization="awq"), P(), rules_for("0.23.0")) == 256 * 151936 * 14
    )
    assert (
        act.sampler_peak_bytes(replace(f, quantization="awq"), P(), rules_for("0.24.0")) == 256 * 151936 * 6
    )
    gemma = replace(f, architecture="Gemma2ForCausalLM")
    assert act.sampler_peak_bytes(gemma, P(), rules_for("0.24.0")) == 256 * 151936 * 14
    assert act.sampler_peak_bytes(gemma, P(), rules_for("0.25.0")) == 256 * 151936 * 6
    # 0.33: a second warm-up-parameters pass [V33-sampler-two-pass]
    assert act.sampler_peak_bytes(f, P(), rules_for("0.33.0")) == 256 * 151936 * 14
    # rows = min(max_num_seqs, max_num_batched_tokens)
    assert act.sampler_peak_bytes(f, P(seqs=1024, mnbt=512), rules_for("0.20.0")) == 512 * 151936 * 14
    # float32 logits: the fp32 copy is the logits themselves
    assert act.sampler_bytes_per_elem(4, 14) == 12
    assert act.sampler_bytes_per_elem(4, 2) == 4
    assert act.sampler_bytes_per_elem(4, 6) == 4


def test_forward_peak_llama_8b():
    llama = dense(n_layers=32, hidden=4096, inter=14336, vocab=128256)
    # (4 x 4096 + (32 + 16) x 128 + 3 x 14336) x 2 B x 8192 tokens = 1.03 GiB
    per_tok = (4 * 4096 + 48 * 128 + 3 * 14336) * 2
    assert act.forward_peak_bytes(llama, P(mnbt=8192), rules_for("0.19.1")) == per_tok * 8192


def test_v2_runner_default_by_version():
    from residency.memory.versions import uses_v2_runner

    def v2(version, arch="Qwen3ForCausalLM", moe=False, quantized=False, stateful=False):
        return uses_v2_runner(rules_for(version), arch, moe=moe, quantized=quantized, stateful=stateful)

    assert not v2("0.21.0")  # V1 only before 0.22 [V22-v2-runner]
    assert v2("0.22.0") and not v2("0.22.0", "LlamaForCausalLM") and not v2("0.22.0", quantized=True)
    assert v2("0.23.0", "LlamaForCausalLM") and not v2("0.23.0", "Qwen3MoeForCausalLM", moe=True)
    assert v2("0.24.0", "Qwen2MoeForCausalLM", moe=True) and not v2("0.24.0", "Gemma2ForCausalLM")
    assert v2("0.25.0", "Gemma2ForCausalLM") and not v2("0.25.0", "Qwen3MoeForCausalLM", moe=True)
    assert not v2("0.27.0", "NemotronHForCausalLM", stateful=True)  # hybrids stay on V1 until 0.29
    assert v2("0.29.0", "Qwen3NextForCausalLM", moe=True, stateful=True)  # every model [V29-v2-runner]


@pytest.mark.parametrize(
    "version,arch,moe,in_budget",
    [
        ("0.19.1", "Qwen3ForCausalLM", False, False),  # graphs after the KV pool before 0.20
        ("0.20.2", "Qwen3ForCausalLM", False, True),  # V1 runner subtracts its estimate
        (
            "0.22.0",
            "Qwen3ForCausalLM",
            False,
            False,
        ),  # V2 runner (Qwen3 dense): profile_cudagraph_memory -> 0
        ("0.28.0", "Qwen3ForCausalLM", False, False),
        ("0.22.0", "Qwen3MoeForCausalLM", True, True),  # MoE stays on V1 in 0.22
        ("0.29.0", "Qwen3ForCausalLM", False, True),  # V2 estimates from 0.29
    ],
)
def test_graph_estimate_in_budget_by_runner(version, arch, moe, in_budget):
    rules = rules_for(version)
    v2 = uses_v2_runner(rules, arch, moe=moe, quantized=False, stateful=False)
    assert cudagraphs_in_budget(rules, on_v2_runner=v2) is in_budget


def test_v2_sampler_state_counted_from_0_27_and_beyond_the_budget_before():
    """docs/vllm-versions.md V22-v2-sampler-state: PenaltiesState holds max_num_seqs x (vocab + vocab/32) int32."""
    from memfacts import dense

    from residency.memory.engine import v2_state_bytes

    f = dense()  # Qwen3ForCausalLM, vocab 151,936: on the V2 runner from 0.22
    ps = act.ProfileSettings(max_num_batched_tokens=2048, max_num_seqs=256, max_model_len=4096)
    # 256 x (151,936 + cdiv(151,936, 32) = 4748) x 4 B
    assert act.v2_sampler_state_bytes(f, ps) == 256 * (151_936 + 4748) * 4 == 160_444_416
    assert v2_state_bytes(f, ps, rules_for("0.21.0")) == 0  # V1 runner: no such state
    assert v2_state_bytes(f, ps, rules_for("0.26.0")) == 160_444_416
    assert not rules_for("0.26.0").persistent_in_non_kv and rules_for("0.27.0").persistent_in_non_kv
