"""The vision tower's share of vLLM's profile run (memory/vision.py, activation.encoder_profile).

Expected figures are worked by hand from vLLM's code with literal inputs (the arithmetic is in each test),
not read back from the implementation. The Qwen3-VL config is the bundled catalog's copy of
Qwen/Qwen3-VL-30B-A3B-Instruct (vendored by aiconfigurator-core 0.12.0).
"""

from __future__ import annotations

import json

import pytest

from residency.errors import SpecError, UnknownModelError
from residency.memory import activation as act
from residency.memory import catalog
from residency.memory.activation import ProfileSettings
from residency.memory.config_facts import facts_from_config
from residency.memory.resolve import facts_from_local_dir
from residency.memory.vision import max_pixels_of, qwen_vl_item_tokens, vision_facts

QWEN3_VL_30B = catalog.lookup("Qwen/Qwen3-VL-30B-A3B-Instruct").config  # aiconfigurator-core 0.12.0 copy
QWEN3_VL_PRE = {"size": {"longest_edge": 16777216, "shortest_edge": 65536}}


def test_item_tokens_follow_vllms_factoring():
    # 16,777,216 px / (16 x 2)^2 = 16,384 = 128 x 128 units
    assert qwen_vl_item_tokens(16_777_216, 16, 2) == 16_384
    # transformers' default 28 x 28 x 1280 px with 14-px patches merged 2x2: 1280 = 32 x 40
    assert qwen_vl_item_tokens(28 * 28 * 1280, 14, 2) == 1280
    # 1009 is prime: 1 x 1009 breaks the 200 aspect limit, so vLLM steps down to 1008 = 28 x 36
    assert qwen_vl_item_tokens(1009 * 1024, 16, 2) == 1008


def test_max_pixels_read_in_every_processor_form():
    assert max_pixels_of(QWEN3_VL_PRE)[0] == 16_777_216
    assert max_pixels_of({"max_pixels": 12_845_056, "min_pixels": 3136})[0] == 12_845_056
    assert max_pixels_of({"size": {"max_pixels": 1_003_520}})[0] == 1_003_520
    assert max_pixels_of(None) == (None, "")


def test_qwen3_vl_vision_facts_from_config_and_processor():
    v = vision_facts(QWEN3_VL_30B, 2048, QWEN3_VL_PRE)
    assert v is not None and v.kind == "qwen-vl"
    assert (v.item_tokens, v.item_patches) == (16_384, 65_536)  # 16,384 tokens x 2 x 2 patches
    assert v.patch_values == 3 * 2 * 16 * 16 == 1536
    assert (v.deepstack, v.out_width) == (3, 2048 * 4)
    assert not v.gated_mlp and v.pos_embeds
    # no preprocessor_config.json: transformers' 1,003,520-px default -> 980 = 28 x 35 units
    assert vision_facts(QWEN3_VL_30B, 2048, None).item_tokens == 980


def test_qwen3_vl_encoder_profile_worked_example():
    v = vision_facts(QWEN3_VL_30B, 2048, QWEN3_VL_PRE)
    s = ProfileSettings(max_num_batched_tokens=8192, max_num_seqs=4, max_model_len=32768)
    # budget max(8192, 16384) = 16384 -> 1 image; decoder side 4 x min(999, 32768 // 16384 = 2) = 8
    assert act.mm_dummy_items(v, s) == 1
    peak, held = act.encoder_profile(v, s)
    # per patch: pixels 1536 + positions 1152 + deepstack 3 x 2048 / 4 = 1536 + block 11 x 1152 = 12672
    assert peak == 65_536 * (1536 + 1152 + 1536 + 12_672) * 2 == 2_214_592_512
    # pixels 65,536 x 1536 x 2 + outputs 16,384 x 8192 x 2
    assert held == 201_326_592 + 268_435_456


def test_gemma3_dummy_images_and_siglip_peak():
    cfg = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "mm_tokens_per_image": 256,
        "text_config": {"hidden_size": 5376},
        "vision_config": {
            "hidden_size": 1152,
            "image_size": 896,
            "intermediate_size": 4304,
            "model_type": "siglip_vision_model",
            "num_attention_heads": 16,
            "num_hidden_layers": 27,
            "patch_size": 14,
        },
    }
    v = vision_facts(cfg, 5376)
    assert v is not None and (v.kind, v.item_patches, v.item_tokens) == ("siglip", 4096, 256)
    big = ProfileSettings(max_num_batched_tokens=8192, max_num_seqs=256, max_model_len=8192)
    assert act.mm_dummy_items(v, big) == 32  # min(8192 // 256, 256 x min(999, 32))
    small = ProfileSettings(max_num_batched_tokens=2048, max_num_seqs=2, max_model_len=512)
    assert act.mm_dummy_items(v, small) == 4  # min(2048 // 256 = 8, 2 x (512 // 256 = 2))
    peak, held = act.encoder_profile(v, big)
    # 32 x 4096 patches; MLP 2 x 1152 + 2 x 4304 = 10,912 > attention 7 x 1152; pixels 3 x 14 x 14
    assert peak == 131_072 * (588 + 10_912) * 2
    assert held == 131_072 * 588 * 2 + 32 * 256 * 5376 * 2


def test_tensor_parallel_splits_the_tower():
    v = vision_facts(QWEN3_VL_30B, 2048, QWEN3_VL_PRE)
    s = ProfileSettings(
        max_num_batched_tokens=8192, max_num_seqs=4, max_model_len=32768, tensor_parallel_size=2
    )
    peak, _ = act.encoder_profile(v, s)
    # attention per rank 3 x 1152 + 8 x 1152 / 2 = 8064 > MLP 2 x 1152 + 2 x 4304 / 2 = 6608
    assert peak == 65_536 * (1536 + 1152 + 1536 + 8064) * 2


def test_resolver_reads_preprocessor_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN3_VL_30B))
    f = facts_from_local_dir(tmp_path)
    assert f.multimodal and f.vision is not None and f.vision.item_tokens == 980  # processor default
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(QWEN3_VL_PRE))
    f = facts_from_local_dir(tmp_path)
    assert f.vision is not None and f.vision.item_tokens == 16_384
    # the deepstack buffers vLLM allocates with the model: 3 x 8192 x 2048 x 2 B = 96 MiB
    s = ProfileSettings(max_num_batched_tokens=8192, max_num_seqs=4, max_model_len=32768)
    assert act.deepstack_buffer_bytes(f, s) == 96 * 2**20


def test_multimodal_without_vision_config_keeps_the_placeholder():
    f = facts_from_config(
        {**QWEN3_VL_30B["text_config"], "architectures": ["Mistral3ForConditionalGeneration"]},
        model_id="x/y",
        source="manual",
        multimodal=True,
    )
    assert f.vision is None
    s = ProfileSettings(max_num_batched_tokens=8192, max_num_seqs=4, max_model_len=32768)
    text_only = act.activation_bytes(
        facts_from_config(QWEN3_VL_30B["text_config"], model_id="t", source="manual"), s, _rules("0.20.2")
    )
    # + 1.5 GiB + 8192 x 2048 x 2 B x 3
    assert act.activation_bytes(f, s, _rules("0.20.2")) - text_only == int(1.5 * 2**30) + 8192 * 2048 * 2 * 3


def _rules(v: str):
    from residency.memory.versions import rules_for

    return rules_for(v)


def test_v2_runner_keeps_only_the_encoder_outputs():
    # V2 (encoder_runner.py:100-161@0.28.0): the dummy pixel batch lives inside execute_mm_encoder only
    v = vision_facts(QWEN3_VL_30B, 2048, QWEN3_VL_PRE)
    s = ProfileSettings(max_num_batched_tokens=8192, max_num_seqs=4, max_model_len=32768)
    peak_v1, held_v1 = act.encoder_profile(v, s)
    peak_v2, held_v2 = act.encoder_profile(v, s, v2_runner=True)
    assert peak_v2 == peak_v1
    assert held_v2 == 16_384 * 8192 * 2 and held_v1 - held_v2 == 65_536 * 1536 * 2


def test_a_planted_processor_maximum_is_refused_not_factored():
    # (2**61 - 1) is prime: vLLM's factoring search would step through ~1.5e9 divisors per candidate;
    # 1024 px per merged 32 x 32 unit puts it far above MAX_TOKENS (2**25) tokens per image
    planted = {"size": {"longest_edge": (2**61 - 1) * 1024}}
    with pytest.raises(UnknownModelError) as e:
        vision_facts(QWEN3_VL_30B, 2048, planted, field="models[vl].model")
    assert e.value.field == "models[vl].model" and "preprocessor_config.json" in str(e.value)
    # the largest figure still taken: exactly 2**25 tokens of 32 x 32 px
    assert vision_facts(QWEN3_VL_30B, 2048, {"size": {"longest_edge": 2**25 * 1024}}) is not None


def test_a_qwen3_vl_config_without_patch_size_takes_transformers_default_16():
    # Qwen3VLVisionConfig.patch_size defaults to 16 (Qwen2-VL's to 14): 16,777,216 px / (16 x 2)^2 =
    # 16,384 tokens of 4 patches, 3 x 2 x 16 x 16 = 1536 values per patch
    cfg = json.loads(json.dumps(QWEN3_VL_30B))
    del cfg["vision_config"]["patch_size"]
    v = vision_facts(cfg, 2048, QWEN3_VL_PRE)
    assert v is not None and (v.item_tokens, v.patch_values) == (16_384, 1536)


def test_a_broken_preprocessor_config_names_that_file_in_the_fix(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN3_VL_30B))
    (tmp_path / "preprocessor_config.json").write_text('{"size": ')  # a truncated download
    with pytest.raises(SpecError) as e:
        facts_from_local_dir(tmp_path)
    msg = str(e.value)
    assert "preprocessor_config.json is not valid JSON" in msg
    assert msg.endswith("(re-download the model's preprocessor_config.json)")
