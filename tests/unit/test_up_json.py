"""`residency up --json` through the CLI: one JSON document on stdout (progress on stderr), against the fake
vllm/litellm executables of test_runtime_process (tiny HTTP servers printing vLLM's log lines)."""

from __future__ import annotations

import json

import psutil
import pytest
from test_runtime_process import _plan, _spec, fakes  # noqa: F401 - fakes is a fixture

import residency.render.stack as render_stack
from residency.cli import main
from residency.jsonout import SCHEMA_VERSION


def test_up_json_is_one_document_naming_every_started_process(tmp_path, fakes, monkeypatch, capsys):  # noqa: F811
    vllm, litellm, _ = fakes
    spec_path = _spec(tmp_path)
    # the toy dirs hold no checkpoint: the plan is given (CPU-sized) instead of resolved
    monkeypatch.setattr(render_stack, "plan_for", lambda s: _plan(s))
    state = tmp_path / "state"
    common = ["--state-dir", str(state)]
    with pytest.raises(SystemExit) as ex:
        main(["up", str(spec_path), "--cpu", "--json", "--vllm", vllm, "--litellm", litellm,
              "--settle-seconds", "0.6", "--timeout", "30", *common])  # fmt: skip
    out, err = capsys.readouterr()
    try:
        assert ex.value.code == 0, err
        doc = json.loads(out)  # stdout is exactly one JSON document; progress went to stderr
        assert "alpha: ready" in err and "litellm: ready" in err
        assert doc["schema_version"] == SCHEMA_VERSION and doc["runtime"] == "process"
        assert doc["state_file"] == str(state / "state.json")
        assert [m["name"] for m in doc["models"]] == ["alpha", "beta"]
        for m in doc["models"]:
            assert _alive(m["pid"]) and m["kept"] is False
            assert m["kv_cache_gib"] == 0.25 and m["kv_cache_tokens"] == 4096  # the fake's log lines
        assert doc["proxy"]["port"] == _spec_port(spec_path) and _alive(doc["proxy"]["pid"])
        assert "sk-" not in out  # the master key never reaches stdout
    finally:
        with pytest.raises(SystemExit):
            main(["down", str(spec_path), *common])
        capsys.readouterr()
    assert not any(_alive(m["pid"]) for m in doc["models"])


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _spec_port(spec_path) -> int:
    import yaml

    return yaml.safe_load(spec_path.read_text())["proxy"]["port"]
