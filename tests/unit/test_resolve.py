"""resolve_model: local directories, the bundled catalog, the HF cache, manual facts, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_resolve_helpers import TINY_BYTES, TINY_CONFIG, write_checkpoint

from residency.errors import SpecError, UnknownModelError
from residency.memory import resolve
from residency.memory.resolve import (
    checkpoint_bytes_in_dir,
    find_cached_snapshot,
    resolve_model,
    safetensors_tensor_bytes,
)
from residency.spec import ModelFactsOverride, ModelSpec

GiB = 1 << 30


@pytest.fixture(autouse=True)
def _isolated_hf(tmp_path, monkeypatch):
    """No real HF cache, no token, no network: each test builds what it needs."""
    for k in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolve.clear_cache()
    yield
    resolve.clear_cache()


def spec(model: str, **kw) -> ModelSpec:
    return ModelSpec(name=kw.pop("name", "m"), model=model, **kw)


# ------------------------------------------------------------------ local directories


def test_safetensors_header_is_read_by_hand(tmp_path):
    total = write_checkpoint(tmp_path / "tiny")
    assert total == TINY_BYTES  # 90,432 bf16 params, worked out in test_resolve_helpers
    assert safetensors_tensor_bytes(tmp_path / "tiny" / "model.safetensors") == TINY_BYTES


def test_local_dir_single_file(tmp_path):
    d = tmp_path / "tiny"
    write_checkpoint(d)
    f = resolve_model(spec(str(d)))
    assert f.source == "local"
    assert f.id == str(d)
    assert (f.num_hidden_layers, f.num_key_value_heads, f.head_dim) == (2, 2, 16)  # 64 / 4 heads
    assert f.checkpoint_bytes == TINY_BYTES
    # the config-based estimate reproduces the hand-written inventory exactly
    assert f.estimated_bytes == TINY_BYTES


def test_local_dir_with_index_uses_total_size(tmp_path):
    d = tmp_path / "sharded"
    total = write_checkpoint(d, sharded=True)
    assert total == TINY_BYTES
    # the index wins over the headers: make it say something else to prove it is read
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    idx["metadata"]["total_size"] = 123_456_789
    (d / "model.safetensors.index.json").write_text(json.dumps(idx))
    assert checkpoint_bytes_in_dir(d) == 123_456_789
    assert resolve_model(spec(str(d))).checkpoint_bytes == 123_456_789


def test_local_dir_config_only_has_no_size(tmp_path):
    d = tmp_path / "cfg-only"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY_CONFIG))
    f = resolve_model(spec(str(d)))
    assert f.checkpoint_bytes is None and f.estimated_bytes == TINY_BYTES


def test_local_dir_reads_hf_quant_config(tmp_path):
    d = tmp_path / "nvfp4"
    write_checkpoint(d)
    (d / "hf_quant_config.json").write_text(
        json.dumps({"quantization": {"quant_algo": "NVFP4", "group_size": 16}})
    )
    f = resolve_model(spec(str(d)))
    assert (f.quantization, f.quant_bits) == ("modelopt_fp4", 4.5)


def test_local_dir_without_config_is_a_spec_error(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    with pytest.raises(SpecError) as ei:
        resolve_model(spec(str(d), name="big"))
    assert ei.value.field == "models[big].model"
    assert "no config.json" in ei.value.problem


def test_missing_local_path_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="not a directory"):
        resolve_model(spec(str(tmp_path / "nope")))


# ------------------------------------------------------------------ catalog


@pytest.mark.parametrize(
    "ref",
    [
        "Qwen/Qwen3-4B-Instruct-2507",
        "qwen/qwen3-4b-instruct-2507",
        "Qwen3-4B-Instruct-2507",
        "Qwen--Qwen3-4B-Instruct-2507",
    ],
)
def test_catalog_lookup_case_insensitive_and_aliases(ref):
    f = resolve_model(spec(ref))
    assert f.id == "Qwen/Qwen3-4B-Instruct-2507" and f.source == "catalog"
    assert f.checkpoint_bytes == 8_045_591_552


def test_story_models():
    small = resolve_model(spec("Qwen/Qwen3-4B-Instruct-2507"))
    big = resolve_model(spec("Qwen/Qwen3-Next-80B-A3B-Instruct-FP8"))
    assert small.num_attention_layers == 36 and not small.is_hybrid
    assert big.layer_kinds.count("full") == 12 and big.layer_kinds.count("gdn") == 36
    assert big.quantization == "fp8" and big.checkpoint_bytes == 82_032_869_120
    assert big.unloaded_bytes > 0  # MTP head


def test_results_are_cached_in_process():
    a = resolve_model(spec("Qwen/Qwen3-8B"))
    b = resolve_model(spec("Qwen/Qwen3-8B", name="other"))
    assert a is resolve_model(spec("Qwen/Qwen3-8B"))
    assert a == b  # same facts, whatever the served name


def test_catalog_path_does_not_import_huggingface_hub():
    code = (
        "import sys; from residency.spec import ModelSpec; from residency.memory.resolve import resolve_model;"
        "resolve_model(ModelSpec(name='m', model='Qwen/Qwen3-4B-Instruct-2507'));"
        "print('huggingface_hub' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ HF cache


def _cache_repo(hub: Path, repo: str, snapshots: dict[str, dict], main: str) -> Path:
    root = hub / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(main)
    for sha, cfg in snapshots.items():
        snap = root / "snapshots" / sha
        snap.mkdir(parents=True)
        (snap / "config.json").write_text(json.dumps(cfg))
    return root


SHA_NEW = "a" * 40
SHA_OLD = "b" * 40


def test_hf_cache_honours_refs_main(tmp_path):
    hf_home = tmp_path / "cache-home"
    old = {**TINY_CONFIG, "num_hidden_layers": 4}
    root = _cache_repo(hf_home / "hub", "acme/tiny", {SHA_NEW: TINY_CONFIG, SHA_OLD: old}, main=SHA_NEW)
    (root / "snapshots" / SHA_NEW / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 4242}, "weight_map": {}})
    )
    f = resolve_model(spec("acme/tiny"), hf_cache=str(hf_home))
    assert f.source == "hf-cache"
    assert f.num_hidden_layers == 2  # refs/main -> SHA_NEW, not the other snapshot
    assert f.checkpoint_bytes == 4242
    # an explicit revision picks its snapshot
    g = resolve_model(spec("acme/tiny", revision=SHA_OLD), hf_cache=str(hf_home))
    assert g.num_hidden_layers == 4


def test_hf_hub_cache_env_and_incomplete_download(tmp_path, monkeypatch):
    hub = tmp_path / "hub-cache"
    root = _cache_repo(hub, "acme/tiny", {SHA_NEW: TINY_CONFIG}, main=SHA_NEW)
    # a weights symlink to a blob that never finished downloading: size unknown, no crash
    (root / "snapshots" / SHA_NEW / "model.safetensors").symlink_to(root / "blobs" / "missing")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert find_cached_snapshot("acme/tiny") == root / "snapshots" / SHA_NEW
    f = resolve_model(spec("acme/tiny"))
    assert f.source == "hf-cache" and f.checkpoint_bytes is None and f.estimated_bytes == TINY_BYTES


def test_catalog_wins_over_cache(tmp_path):
    hf_home = tmp_path / "cache-home"
    _cache_repo(hf_home / "hub", "Qwen/Qwen3-8B", {SHA_NEW: TINY_CONFIG}, main=SHA_NEW)
    assert resolve_model(spec("Qwen/Qwen3-8B"), hf_cache=str(hf_home)).source == "catalog"


# ------------------------------------------------------------------ manual facts and errors


def test_manual_facts_alone_describe_a_model():
    o = ModelFactsOverride(
        num_hidden_layers=24,
        hidden_size=2048,
        num_attention_heads=16,
        num_key_value_heads=4,
        vocab_size=50000,
        weights_gib=3,
    )
    f = resolve_model(spec("private/model-x", facts=o))
    assert f.source == "manual" and f.checkpoint_bytes == 3 * GiB and f.head_dim == 128


def test_facts_apply_on_top_of_the_catalog():
    f = resolve_model(
        spec("Qwen/Qwen3-4B-Instruct-2507", facts=ModelFactsOverride(weights_gib=7.0, head_dim=64))
    )
    assert f.source == "catalog"
    assert f.checkpoint_bytes == 7 * GiB and f.head_dim == 64 and f.num_hidden_layers == 36


def test_unknown_model_offline_names_the_field_and_the_fix():
    with pytest.raises(SpecError) as ei:
        resolve_model(spec("Qwen/Qwen3-4B-Instrct-2507", name="fast"))
    e = ei.value
    assert not isinstance(e, UnknownModelError)
    assert e.field == "models[fast].model"
    assert "unknown model 'Qwen/Qwen3-4B-Instrct-2507'" in e.problem
    assert "HF_HUB_OFFLINE" in e.problem
    assert "did you mean Qwen/Qwen3-4B-Instruct-2507" in e.fix
    assert "models[fast].facts" in e.fix and "weights_gib" in e.fix
    assert e.exit_code == 2


def test_not_a_repo_id():
    with pytest.raises(SpecError, match="neither a local directory nor a Hugging Face id"):
        resolve_model(spec("just-a-name-that-is-not-in-the-catalog"))


def test_unknown_architecture_in_a_local_dir(tmp_path):
    d = tmp_path / "weird"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["WeirdForCausalLM"], "hidden_size": 8}))
    with pytest.raises(UnknownModelError) as ei:
        resolve_model(spec(str(d), name="w"))
    assert ei.value.field == "models[w].model"
    assert "num_hidden_layers" in ei.value.problem and "vocab_size" in ei.value.problem
    assert "models[w].facts" in ei.value.fix


def test_unknown_model_with_incomplete_facts_says_what_is_missing():
    with pytest.raises(SpecError) as ei:
        resolve_model(
            spec("private/model-y", name="y", facts=ModelFactsOverride(num_hidden_layers=24, weights_gib=3))
        )
    assert "models[y].facts lacks hidden_size, num_attention_heads, vocab_size" in ei.value.problem
