"""`residency status` command wiring (no servers: every model is down here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from residency.cli import main

FIX = Path(__file__).parent.parent / "fixtures" / "nvml"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "stack.yaml"
    # ports 1 and 2: nothing listens there (privileged, never bound by tests)
    p.write_text(
        "vllm_version: 0.11.0\n"
        "device: {name: GB10, total_gib: 119.67, unified: true}\n"
        "models:\n"
        "  - {name: qwen, model: Qwen/Qwen3-8B, port: 1}\n"
        "proxy: {port: 2}\n"
    )
    return p


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_json_once_with_recorded_gb10(spec, capsys):
    code, out, _ = run(
        ["status", str(spec), "--json", "--no-plan", "--reader", str(FIX / "gb10-two-vllm.json")], capsys
    )
    assert code == 1  # not every model is ready
    d = json.loads(out)
    assert d["models"][0]["name"] == "qwen" and d["models"][0]["state"] == "down"
    assert d["device"]["reader"] == "recorded" and d["device"]["devices"][0]["total_bytes"] is None
    assert d["device"]["host"]["page_cache_bytes"] == 24 << 30
    assert {w["kind"] for w in d["warnings"]} >= {"down", "proxy", "page_cache"}


def test_watch_json_emits_one_line_per_refresh(spec, capsys):
    code, out, _ = run(
        [
            "status",
            str(spec),
            "--watch",
            "--json",
            "--count",
            "2",
            "--interval",
            "0.2",
            "--no-plan",
            "--reader",
            "host",
        ],
        capsys,
    )
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert all(json.loads(x)["device"]["reader"] == "host" for x in lines)


def test_table_names_models_and_warnings(spec, capsys):
    code, out, _ = run(["status", str(spec), "--no-plan", "--reader", "host"], capsys)
    assert code == 1
    assert "qwen" in out and "down" in out and "unified memory" in out
    assert "LiteLLM proxy at http://127.0.0.1:2 is down" in out


def test_bad_spec_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = run(["status", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and err.count("\n") == 1 and "no such file" in err


def test_view_gb10_totals_na_and_busy_model():
    from rich.console import Console

    from residency.gpu import RecordedReader
    from residency.spec import parse_spec
    from residency.status.ledger import build_ledger
    from residency.status.view import render_ledger

    spec = parse_spec(
        {
            "device": {"name": "GB10", "total_gib": 119.67, "unified": True},
            "models": [{"name": "qwen", "model": "Qwen/Qwen3-8B", "port": 1}],
            "proxy": {"port": 2},
        }
    )
    led = build_ledger(
        spec,
        RecordedReader(FIX / "gb10-two-vllm.json"),
        state=None,
        alive_fn=lambda p: False,
        discover_pids=False,
    )
    led.models[0].state, led.models[0].detail = "ready", "busy: /health slow to answer"
    con = Console(record=True, width=120)
    con.print(render_ledger(led))
    text = con.export_text()
    assert "GPU 0 NVIDIA GB10: memory totals N/A" in text
    assert "busy" in text and "unified memory: total 119.67 GiB" in text
    assert "page cache 24.00" in text


def test_table_names_the_master_key_file_never_the_key(spec, tmp_path, capsys):
    from residency.runtime.keys import stack_master_key

    _, out, _ = run(["status", str(spec), "--no-plan", "--reader", "host"], capsys)
    assert "master key: not created yet" in out
    key, where = stack_master_key(spec.parent / ".residency" / spec.stem, "LITELLM_MASTER_KEY")
    _, out, _ = run(["status", str(spec), "--no-plan", "--reader", "host"], capsys)
    assert f"master key: LITELLM_MASTER_KEY in {where}" in out.replace("\n", "")
    assert key not in out
