"""Vision tower facts from a checkpoint: config.json's `vision_config` + preprocessor_config.json.

vLLM's profile run pushes dummy images of the processor's maximum size through the vision encoder
(gpu_model_runner.profile_run, v1/worker/gpu_model_runner.py:5788-5840@0.20.2); how large they are,
and how many, decides the encoder's share of the activation peak (activation.encoder_profile).
Two encoder code paths are read from vLLM's source; any other multimodal checkpoint gets
`vision=None` and activation's placeholder.

* "qwen-vl" - Qwen2-VL, Qwen2.5-VL, Qwen3-VL (dense and MoE): the image is resized so it holds at
  most `max_pixels` pixels, in units of (patch x spatial_merge) pixels
  (Qwen2VLProcessingInfo.get_image_size_with_most_features, model_executor/models/qwen2_vl.py:914-965
  @0.20.2, used by Qwen3VLProcessingInfo, qwen3_vl.py:854@0.20.2); the patches of all items are packed
  into one sequence.
* "siglip" - gemma-3: 896 x 896 crops of 14-pixel patches, `mm_tokens_per_image` decoder tokens per
  crop, one crop per image without pan-and-scan (its default: Gemma3ProcessingInfo.get_num_crops,
  gemma3_mm.py:104-118@0.20.2).
"""

from __future__ import annotations

import math
from typing import Any

from residency.bounds import MAX_TOKENS
from residency.errors import UnknownModelError
from residency.memory.model_facts import VisionFacts

# transformers' Qwen2VLImageProcessor default when the checkpoint has no preprocessor_config.json:
# size {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}
# (models/qwen2_vl/image_processing_qwen2_vl.py:96 @transformers 5.19.0); vLLM builds that processor
# for Qwen2-VL, Qwen2.5-VL and Qwen3-VL alike (qwen2_vl.py:801-806, qwen3_vl.py:858-866@0.20.2).
QWEN_VL_DEFAULT_MAX_PIXELS = 28 * 28 * 1280
# vLLM refuses aspect ratios above 200 when it factors the token count into a dummy image
# (qwen2_vl.py:951-963@0.20.2)
_MAX_RATIO = 200
_QWEN_VL_TYPES = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"}
# patch_size when vision_config omits it: the transformers config defaults (Qwen2VLVisionConfig 14,
# Qwen3VLVisionConfig 16: models/qwen2_vl/configuration_qwen2_vl.py:40, qwen3_vl/configuration_qwen3_vl.py:50
# @transformers 5.19.0); Qwen2.5-VL's is 14 too
QWEN2_VL_PATCH, QWEN3_VL_PATCH = 14, 16
# transformers Gemma3Config default (models/gemma3/configuration_gemma3.py:211 @transformers 5.19.0)
GEMMA3_DEFAULT_TOKENS_PER_IMAGE = 256


def max_pixels_of(preprocessor: dict[str, Any] | None) -> tuple[int | None, str]:
    """The image processor's maximum pixel count and where it was read: `size.longest_edge`
    (transformers >= 4.5x, Qwen3-VL), else `max_pixels` / `size.max_pixels` (Qwen2/2.5-VL) - vLLM
    maps the latter onto the former (qwen2_vl.py:1482-1486@0.20.2)."""
    if not isinstance(preprocessor, dict):
        return None, ""
    size = preprocessor.get("size")
    if isinstance(size, dict):
        for k in ("longest_edge", "max_pixels"):
            if isinstance(size.get(k), int) and size[k] > 0:
                return int(size[k]), f"preprocessor_config.json size.{k}"
    v = preprocessor.get("max_pixels")
    if isinstance(v, int) and v > 0:
        return v, "preprocessor_config.json max_pixels"
    return None, ""


def qwen_vl_item_tokens(max_pixels: int, patch: int, merge: int) -> int:
    """Decoder tokens of the largest dummy image: max_pixels // (patch x merge)^2, factored into
    height x width units with aspect <= 200, one fewer until it can be (qwen2_vl.py:949-965@0.20.2).
    Qwen3-VL at 16,777,216 pixels, 16-pixel patches merged 2 x 2: 16,384 tokens (128 x 128 units)."""
    unit = patch * merge
    n = max_pixels // (unit * unit)
    for seq_len in range(n, 0, -1):
        d = next(d for d in range(math.isqrt(seq_len), 0, -1) if seq_len % d == 0)
        if (seq_len // d) / d <= _MAX_RATIO:
            return seq_len
    return 1


def _int(d: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
            return int(v)
    return None


def vision_facts(
    top: dict[str, Any], text_hidden: int, preprocessor: dict[str, Any] | None = None, *, field: str = "model"
) -> VisionFacts | None:
    """VisionFacts for the encoder paths above, else None (vision_config absent or another tower).
    `field` names the spec entry in the error for a processor maximum no context could hold."""
    vc = top.get("vision_config")
    if not isinstance(vc, dict):
        return None
    mt = str(top.get("model_type") or "")
    if mt in _QWEN_VL_TYPES:
        patch = QWEN3_VL_PATCH if mt.startswith("qwen3") else QWEN2_VL_PATCH
        return _qwen_vl(vc, text_hidden, preprocessor, gated=mt == "qwen2_5_vl", patch=patch, field=field)
    if mt == "gemma3" and str(vc.get("model_type") or "siglip_vision_model").startswith("siglip"):
        return _siglip_gemma3(top, vc, text_hidden)
    return None


def _qwen_vl(
    vc: dict[str, Any],
    text_hidden: int,
    preprocessor: dict[str, Any] | None,
    *,
    gated: bool,
    patch: int,
    field: str,
) -> VisionFacts | None:
    # Qwen2-VL names the tower width embed_dim (its hidden_size is the merger's output) and gives
    # mlp_ratio instead of intermediate_size (Qwen2VisionTransformer, qwen2_vl.py @0.20.2)
    width = _int(vc, "embed_dim") or _int(vc, "hidden_size")
    depth = _int(vc, "depth", "num_hidden_layers")
    if not width or not depth:
        return None
    inter = _int(vc, "intermediate_size") or int(width * float(vc.get("mlp_ratio") or 4))
    patch = _int(vc, "patch_size") or patch
    merge = _int(vc, "spatial_merge_size") or 2
    temporal = _int(vc, "temporal_patch_size") or 2
    channels = _int(vc, "in_channels", "in_chans") or 3
    out = (
        _int(vc, "out_hidden_size") or (_int(vc, "hidden_size") if "embed_dim" in vc else None) or text_hidden
    )
    deepstack = len(vc.get("deepstack_visual_indexes") or ())
    max_px, src = max_pixels_of(preprocessor)
    if max_px is None:
        max_px, src = (
            QWEN_VL_DEFAULT_MAX_PIXELS,
            "transformers Qwen2VLImageProcessor default (no preprocessor_config.json)",
        )
    if max_px // (patch * merge) ** 2 > MAX_TOKENS:
        # an image longer than any context; also keeps qwen_vl_item_tokens' factoring search (vLLM's,
        # ~sqrt(n) steps per candidate) from running for hours on a planted figure
        raise UnknownModelError(
            field,
            f"{src} gives images of {max_px:,} pixels, more than {MAX_TOKENS:,} tokens each",
            "correct the checkpoint's preprocessor_config.json (Qwen-VL's is 16,777,216 pixels or less)",
        )
    tokens = qwen_vl_item_tokens(max_px, patch, merge)
    return VisionFacts(
        kind="qwen-vl",
        depth=depth,
        hidden_size=width,
        intermediate_size=inter,
        # Qwen2.5-VL's MLP is gate_up + SiluAndMul (Qwen2_5_VisionMLP, qwen2_5_vl.py:302-306@0.20.2)
        gated_mlp=gated,
        patch_values=channels * temporal * patch * patch,
        item_patches=tokens * merge * merge,
        item_tokens=tokens,
        out_width=out * (1 + deepstack),
        deepstack=deepstack,
        pos_embeds="num_position_embeddings" in vc,
        max_pixels_source=f"{max_px:,} pixels ({src})",
    )


def _siglip_gemma3(top: dict[str, Any], vc: dict[str, Any], text_hidden: int) -> VisionFacts | None:
    width, inter, depth = (
        _int(vc, "hidden_size"),
        _int(vc, "intermediate_size"),
        _int(vc, "num_hidden_layers"),
    )
    image, patch = _int(vc, "image_size"), _int(vc, "patch_size")
    if not (width and inter and depth and image and patch):
        return None
    return VisionFacts(
        kind="siglip",
        depth=depth,
        hidden_size=width,
        intermediate_size=inter,
        gated_mlp=False,
        patch_values=3 * patch * patch,
        item_patches=(image // patch) ** 2,
        item_tokens=_int(top, "mm_tokens_per_image") or GEMMA3_DEFAULT_TOKENS_PER_IMAGE,
        out_width=text_hidden,
        max_pixels_source=f"{image} x {image} crop (vision_config.image_size), no pan-and-scan",
    )
