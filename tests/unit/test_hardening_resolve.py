"""Issue 13.9/13.10: malformed checkpoint files and deeply nested specs are one-line errors naming the
file, never a traceback and never a wrong size taken as right."""

from __future__ import annotations

import json
import struct

import pytest
from test_resolve_helpers import TINY_CONFIG, write_checkpoint

from residency.errors import SpecError
from residency.memory.resolve import clear_cache, facts_from_local_dir
from residency.spec import load_spec


@pytest.fixture(autouse=True)
def _fresh():
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize(
    ("index", "words"),
    [
        ([1, 2], "not an object"),
        ({"metadata": [1]}, "metadata is a JSON list"),
        ({"metadata": {"total_size": -5}}, "not a byte count"),
        ({"metadata": {"total_size": 9e30}}, "not a byte count"),
        ({"metadata": {"total_size": True}}, "not a byte count"),
    ],
)
def test_malformed_index_is_an_error_naming_the_file(tmp_path, index, words):
    d = tmp_path / "ckpt"
    write_checkpoint(d, sharded=True)
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(SpecError) as ei:
        facts_from_local_dir(d, field="models[a].model")
    msg = str(ei.value)
    assert ei.value.field == "models[a].model" and "model.safetensors.index.json" in msg and words in msg, msg


def _header_file(path, header) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ([1, 2], "not an object"),
        ({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [900_000_000_000, 0]}}, "data_offsets"),
        ({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, -4]}}, "data_offsets"),
        ({"w": {"dtype": "BF16", "shape": [2], "data_offsets": "0-4"}}, "data_offsets"),
        ({"w": [1]}, "data_offsets"),
    ],
)
def test_malformed_safetensors_header_is_an_error(tmp_path, header, words):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY_CONFIG))
    _header_file(d / "model.safetensors", header)
    with pytest.raises(SpecError) as ei:
        facts_from_local_dir(d)
    assert "model.safetensors" in str(ei.value) and words in str(ei.value)


def test_deeply_nested_files(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SpecError, match="config.json"):
        facts_from_local_dir(d)
    spec = tmp_path / "s.yaml"
    spec.write_text("device: {total_gib: 24}\nmodels: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SpecError, match="nests too deeply"):
        load_spec(spec)


@pytest.mark.parametrize("endpoint", ["http://[bad", "ftp://mirror", " ", "http://a b"])
def test_a_malformed_hf_endpoint_is_one_line_not_a_traceback(tmp_path, monkeypatch, endpoint):
    # huggingface_hub splits HF_ENDPOINT when imported ('http://[bad' raises ValueError there) and
    # residency's Hub probe splits it again: both before any request, so no server is needed
    from residency.memory.resolve import resolve_model
    from residency.spec import ModelSpec

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(SpecError, match="HF_ENDPOINT=.* is not an http"):
        resolve_model(ModelSpec(name="m", model="acme/not-in-the-catalog"))


def test_an_unusable_proxy_variable_is_a_reason_not_a_traceback(tmp_path, monkeypatch):
    # httpx refuses the proxy URL when the transport is built (ValueError), before any connection
    from residency.memory.resolve import resolve_model
    from residency.spec import ModelSpec

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for k in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "socks9://proxy.invalid")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(SpecError, match="Unknown scheme for proxy URL"):
        resolve_model(ModelSpec(name="m", model="acme/not-in-the-catalog"))


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        ("top", "head_dim", "x"),  # int("x") in the layout reader
        ("vision_config", "deepstack_visual_indexes", 5),  # len(5) in the Qwen3-VL tower reader
        ("vision_config", "mlp_ratio", "x"),  # float("x") in the Qwen2-VL width reader
    ],
)
def test_a_config_value_of_the_wrong_type_is_one_line(where, key, value):
    from residency.memory import catalog
    from residency.memory.config_facts import facts_from_config

    cfg = json.loads(json.dumps(catalog.lookup("Qwen/Qwen3-VL-8B-Instruct").config))
    if key == "mlp_ratio":
        del cfg["vision_config"]["intermediate_size"]
    (cfg["text_config"] if where == "top" else cfg[where])[key] = value
    with pytest.raises(SpecError, match=r"models\[m\]\.model.*cannot read \((TypeError|ValueError)"):
        facts_from_config(cfg, model_id="acme/vl", source="local", field="models[m].model")
