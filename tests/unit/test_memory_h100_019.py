"""vLLM 0.19.x on H100 (checked against the 0.19.1 wheel): float32, runtime fp8, fp8 KV, TP 2/4, PP 2,
the large batch tier and the CUDA-graph estimate that is computed but not subtracted.

Numbers are worked by hand in the comments from the catalog configs:
  Llama-3.1-8B: checkpoint 16,060,522,496 B, vocab 128,256, hidden 4,096, 32 layers, 8 KV heads x 128,
                rope cache 131,072 x 128 x 2 B = 33,554,432 B
  Qwen2.5-7B-Instruct: checkpoint 15,231,233,024 B, vocab 152,064, hidden 3,584, 28 layers,
                4 KV heads x 128, rope cache 32,768 x 128 x 2 B = 8,388,608 B
"""

from __future__ import annotations

import pytest

from residency.memory import activation as act
from residency.memory import kv_specs as kv
from residency.memory.device import resolve_device
from residency.memory.engine import EngineSettings, kv_settings, simulate_startup, stage_facts
from residency.memory.resolve import resolve_model
from residency.memory.versions import rules_for
from residency.memory.weights import pp_layer_partition, runtime_dtype, weights_bytes_per_rank
from residency.planner.plan import batch_defaults
from residency.spec import DeviceSpec, ModelSpec

GiB = 2**30
H100 = resolve_device(DeviceSpec(preset="h100-80gb", count=4))
A100 = resolve_device(DeviceSpec(preset="a100-80gb"))
R019 = rules_for("0.19.1")
LLAMA = resolve_model(ModelSpec(name="l", model="meta-llama/Llama-3.1-8B-Instruct"))
QWEN = resolve_model(ModelSpec(name="q", model="Qwen/Qwen2.5-7B-Instruct"))

LLAMA_EMB = 128256 * 4096 * 2  # one of embed_tokens / lm_head in bf16: 1,050,673,152 B
LLAMA_BODY = 16_060_522_496 - 2 * LLAMA_EMB  # 13,959,176,192 B of decoder layers + final norm
LLAMA_ROPE = 131072 * 128 * 2
QWEN_EMB = 152064 * 3584 * 2  # 1,089,994,752 B (152,064 is already a multiple of 64)
QWEN_BODY = 15_231_233_024 - 2 * QWEN_EMB  # 13,051,243,520 B
QWEN_ROPE = 32768 * 128 * 2


def es(**kw) -> EngineSettings:
    base = dict(
        gpu_memory_utilization=0.9, max_model_len=131072, max_num_seqs=1024, max_num_batched_tokens=8192
    )
    base.update(kw)
    return EngineSettings(**base)


def test_h100_large_tier_on_019():
    # get_batch_defaults @0.19.1: 79.19 GiB >= 70 and "a100" not in the name -> serve 8192 / 1024
    assert batch_defaults(H100, R019)[:2] == (8192, 1024)
    # the A100 exception (PR #17885): small tier although 79.15 GiB >= 70
    assert batch_defaults(A100, R019)[:2] == (2048, 256)


def test_graph_estimate_not_subtracted_on_019_but_in_020():
    free = H100.total_bytes
    # the same launch with --enforce-eager is the twin without graphs
    st = simulate_startup(LLAMA, es(), H100, R019, free)
    eager = simulate_startup(LLAMA, es(enforce_eager=True), H100, R019, free)
    # requested = ceil(0.9 x 79.19 GiB) = ceil(0.9 x 85,029,615,043) = 76,526,653,539 B;
    # weights = 16,060,522,496 + rope cache 33,554,432 = 16,094,076,928 B
    assert (st.requested_bytes, st.weights_bytes) == (76_526_653_539, 16_094_076_928)
    # graph estimate: capture sizes for max_num_seqs 1024 -> cap 512: 1, 2, 4, 8..248 step 8, 256..512
    # step 16 = 51 sizes; 0.05 GiB + 51 x 32 layers x 0.30 MiB = 53,687,091.2 + 513,382,809.6 B
    assert st.cudagraph_bytes == 567_069_900 and eager.cudagraph_bytes == 0
    assert st.cudagraph_in_budget is False
    # 0.19.1 computes the estimate but does not subtract it: the KV pool is the eager one's ...
    assert st.available_kv_bytes == eager.available_kv_bytes
    # ... and the graphs are held outside the budget, on top of the footprint
    assert st.footprint_bytes - eager.footprint_bytes == 567_069_900
    r020 = rules_for("0.20.2")
    st20 = simulate_startup(LLAMA, es(), H100, r020, free)
    eager20 = simulate_startup(LLAMA, es(enforce_eager=True), H100, r020, free)
    # 0.20: inside the budget: the KV pool shrinks by the estimate, the footprint does not grow
    assert st20.cudagraph_in_budget is True
    assert eager20.available_kv_bytes - st20.available_kv_bytes == 567_069_900
    assert st20.footprint_bytes == eager20.footprint_bytes


def test_float32_doubles_weights_kv_and_activations():
    assert runtime_dtype(LLAMA, "float32") == "float32"
    assert runtime_dtype(LLAMA, "auto") == "bfloat16"
    # 2 x (16,060,522,496 + 33,554,432) = 32,188,153,856 B = 29.98 GiB
    assert weights_bytes_per_rank(LLAMA, dtype="float32") == 2 * (16_060_522_496 + LLAMA_ROPE)
    # KV: 2 x 8 heads x 128 x 4 B = 8,192 B per token per layer (bf16: 4,096)
    lay = kv.build_kv_layout(LLAMA, kv_settings(es(dtype="float32"), H100, LLAMA), R019)
    assert lay.layers[0].page_bytes == 16 * 8192
    # sampler at 0.19.1 with fp32 logits: logits 4 (the .to(float32) is a no-op) + probs 4 + q 4 = 12 B
    assert act.sampler_bytes_per_elem(4, R019.sampler_bytes_per_elem) == 12
    assert act.sampler_bytes_per_elem(2, R019.sampler_bytes_per_elem) == 14  # bf16 logits 2 + fp32 copy 4 + probs 4 + q 4
    st = simulate_startup(LLAMA, es(dtype="float32"), H100, R019, H100.total_bytes)
    assert st.weights_bytes == 2 * (16_060_522_496 + LLAMA_ROPE)
    # forward peak at 8192 tokens in fp32 (4 hidden copies + q/k/v of 48 heads x 128 + 3 x 14,336):
    # (4 x 4096 + 48 x 128 + 3 x 14336) x 4 B x 8192 = 65,536 x 32,768 = 2,147,483,648 B (2 GiB)
    # > sampler 1024 x 128,256 x 12 + hidden rows 1024 x 4096 x 4 = 1,592,786,944 B
    assert st.activation_bytes == int(act.ACT_BASE) + 2_147_483_648


def test_runtime_fp8_linears_one_byte_embeddings_stay_bf16():
    # Fp8OnlineLinearMethod @0.19.1: linear weights 1 B + a per-tensor fp32 scale; embed_tokens and
    # lm_head (not LinearBase) stay bf16. Qwen2.5-7B: 13,051,243,520 / 2 = 6,525,621,760 B of body
    # + 2 x 1,089,994,752 B embeddings + 8,388,608 B rope = 8,713,999,872 B = 8.12 GiB
    assert weights_bytes_per_rank(QWEN, 1, None, "fp8") == QWEN_BODY // 2 + 2 * QWEN_EMB + QWEN_ROPE
    assert weights_bytes_per_rank(QWEN, 1, None, "fp8") == 8_713_999_872
    # an FP8 checkpoint decides by itself: the flag changes nothing there (the facts carry the method)
    fp8_ckpt = resolve_model(ModelSpec(name="f", model="Qwen/Qwen3-8B-FP8"))
    assert weights_bytes_per_rank(fp8_ckpt, 1, None, "fp8") == weights_bytes_per_rank(fp8_ckpt)


def test_fp8_kv_cache_halves_the_page():
    # Qwen2.5-7B: 2 x 4 heads x 128 x 1 B = 1,024 B per token per layer, x 16 tokens per block
    lay = kv.build_kv_layout(QWEN, kv_settings(es(kv_cache_dtype="fp8"), H100, QWEN), R019)
    assert lay.layers[0].page_bytes == 16 * 1024
    lay16 = kv.build_kv_layout(QWEN, kv_settings(es(), H100, QWEN), R019)
    assert lay16.layers[0].page_bytes == 2 * lay.layers[0].page_bytes


@pytest.mark.parametrize("tp", [2, 4])
def test_tp_weights_and_kv_heads_per_rank(tp):
    # body / tp + (vocab padded to 64) / tp x hidden x 2 B x 2 (embed + lm_head) + rope (replicated)
    # TP 4: 3,489,794,048 + 32,064 x 4,096 x 2 x 2 = 525,336,576 + 33,554,432 = 4,048,685,056 B
    want = LLAMA_BODY // tp + 2 * (128256 // tp) * 4096 * 2 + LLAMA_ROPE
    assert weights_bytes_per_rank(LLAMA, tp) == want
    if tp == 4:
        assert want == 4_048_685_056
    # KV heads: Llama 8 / tp; Qwen2.5 4 / tp (one per rank at TP 4)
    assert kv.kv_heads_per_rank(LLAMA, tp) == 8 // tp
    assert kv.kv_heads_per_rank(QWEN, tp) == 4 // tp
    st = simulate_startup(
        QWEN, es(max_model_len=32768, tensor_parallel_size=tp), H100, R019, H100.total_bytes
    )
    # >= 0.11: NCCL buffers come before the baseline snapshot -> outside the budget, in the context
    assert st.non_torch_bytes == int(act.NON_TORCH)
    assert st.context_bytes == int(act.CUDA_CONTEXT + act.NCCL_CONTEXT)


def test_pp_layer_partition_like_get_pp_indices():
    assert pp_layer_partition(32, 2) == [16, 16]
    assert pp_layer_partition(28, 2) == [14, 14]
    # remainder to the stages before the last, counted back from the second-to-last
    assert pp_layer_partition(28, 3) == [9, 10, 9]
    assert pp_layer_partition(30, 4) == [7, 8, 8, 7]
    assert pp_layer_partition(31, 4) == [8, 8, 8, 7]


def test_pp2_stages_weights_sampler_and_kv():
    # last stage: 16 of 32 layers = 6,979,588,096 + lm_head 1,050,673,152 + rope = 8,063,815,680 B
    last = weights_bytes_per_rank(LLAMA, 1, None, None, "auto", 2, 1)
    assert last == LLAMA_BODY // 2 + LLAMA_EMB + LLAMA_ROPE == 8_063_815_680
    # first stage: the same layers' share plus embed_tokens instead of lm_head
    assert weights_bytes_per_rank(LLAMA, 1, None, None, "auto", 2, 0) == last
    # tied embeddings: the last stage builds its own embedding too (llama.py:373-375 @0.19.1)
    from dataclasses import replace

    tied = replace(LLAMA, tie_word_embeddings=True, checkpoint_bytes=16_060_522_496 - LLAMA_EMB)
    assert (
        weights_bytes_per_rank(tied, 1, None, None, "auto", 2, 1) == LLAMA_BODY // 2 + LLAMA_EMB + LLAMA_ROPE
    )
    # the last stage's KV covers its 16 layers only
    assert stage_facts(LLAMA, 2).num_hidden_layers == 16
    assert stage_facts(QWEN, 2, 0).layer_kinds == ("full",) * 14
    one = simulate_startup(LLAMA, es(), H100, R019, H100.total_bytes)
    two = simulate_startup(LLAMA, es(pipeline_parallel_size=2), H100, R019, H100.total_bytes)
    assert two.weights_bytes == 8_063_815_680
    # last stage: same sampler-dominated peak + the IntermediateTensors buffer it receives:
    # hidden_states + residual = 2 x 8192 x 4096 x 2 B = 134,217,728 B
    assert two.activation_bytes - one.activation_bytes == 134_217_728
    # KV per token on the last stage: 16 layers x 4,096 B; tokens = blocks x 16 with the smaller stage's blocks
    assert len(two.layout.layers) == 16
    per_block = 16 * 16 * 4096  # 16 layers x 16 tokens x 4,096 B = 1,048,576 B
    assert two.layout.bytes_per_block == per_block
    # stage 0 has no sampler and no receive buffer, so more room: the last stage's blocks are the minimum
    assert two.num_blocks == two.available_kv_bytes // per_block
    # the first stage runs no sampler: its profile is the forward pass alone
    ps0 = act.ProfileSettings(8192, 1024, 131072, pipeline_parallel_size=2, runs_sampler=False)
    assert act.activation_bytes(LLAMA, ps0, R019) == int(act.ACT_BASE) + act.forward_peak_bytes(LLAMA, ps0, R019)
