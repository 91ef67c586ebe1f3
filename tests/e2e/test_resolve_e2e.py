"""The resolver on real checkpoints: the toy models written by transformers + safetensors.

No server is started. The safetensors library of the stack's vLLM venv is the reference for
the tensor byte count that residency reads from the header by hand, and the config-based
estimate must reproduce it exactly for these plain Qwen3 checkpoints.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from residency.memory import resolve
from residency.memory.resolve import resolve_model
from residency.spec import ModelSpec
from tests.e2e.stackkit import MODELS, model_path, require_stack, stack_dir

pytestmark = pytest.mark.e2e

_COUNT = """
import json, sys
from safetensors import safe_open
total = 0
with safe_open(sys.argv[1], framework="pt") as f:
    for k in f.keys():
        t = f.get_slice(k)
        n = 1
        for d in t.get_shape():
            n *= d
        total += n * {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "I64": 8, "I32": 4}[t.get_dtype()]
print(json.dumps(total))
"""


@pytest.mark.parametrize("toy", MODELS)
def test_toy_checkpoint_bytes_match_safetensors(toy):
    require_stack(models=[toy])
    d = model_path(toy)
    ref = json.loads(
        subprocess.run(
            [str(stack_dir() / "vllm" / "bin" / "python"), "-c", _COUNT, str(d / "model.safetensors")],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
    )
    resolve.clear_cache()
    f = resolve_model(ModelSpec(name=toy, model=str(d)))
    cfg = json.loads((d / "config.json").read_text())
    assert f.source == "local"
    assert f.num_hidden_layers == cfg["num_hidden_layers"]
    assert f.num_key_value_heads == cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    assert f.checkpoint_bytes == ref
    assert f.estimated_bytes == ref
