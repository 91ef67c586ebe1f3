"""calibrate / explain on the logs of real vLLM CPU servers (the session toy stack)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from residency.calibrate.explain import explain_launch
from residency.calibrate.logparse import parse_log

pytestmark = pytest.mark.e2e


def test_real_cpu_logs_parse_and_calibrate(toy_stack, tmp_path):
    srv = toy_stack.servers["hermes"]
    text = srv.log_path.read_text(errors="replace")
    launches = parse_log(text)
    assert len(launches) == 1, [ln.vllm_version for ln in launches]
    ln = launches[0]
    # the CPU build logs its version, the engine config, the KV pool and the end of startup
    assert ln.vllm_version and ln.vllm_version[0].isdigit()
    assert ln.error is None
    assert ln.kv_cache_tokens and ln.kv_cache_tokens > 0
    assert ln.max_concurrency and ln.max_concurrency > 0
    assert ln.kv_cache_gib and ln.kv_cache_gib > 0  # VLLM_CPU_KVCACHE_SPACE
    assert ln.init_seconds and ln.init_seconds > 0
    assert ln.max_model_len == 4096 and ln.max_num_seqs == 4  # CPU_VLLM_ARGS
    assert explain_launch(ln).kind == "ok"

    out = subprocess.run(
        [sys.executable, "-m", "residency.cli", "calibrate", str(srv.log_path), "--json", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    (obj,) = json.loads(out.stdout)
    assert obj["vllm_version"] == ln.vllm_version and obj["kv_cache_tokens"] == ln.kv_cache_tokens

    cal = tmp_path / "cal.json"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "residency.cli",
            "calibrate",
            str(srv.log_path),
            "--device",
            "cpu-box",
            "--file",
            str(cal),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    (obj,) = json.loads(out.stdout)
    assert obj["stored"] is True and obj["key"]["device"] == "cpu-box"
    assert json.loads(cal.read_text())["calibrations"][0]["launch"]["kv_cache_tokens"] == ln.kv_cache_tokens
