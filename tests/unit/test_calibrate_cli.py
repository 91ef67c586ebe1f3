"""`residency calibrate` and `residency explain` through the real CLI entry point: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from residency.calibrate import store
from residency.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
CONTRACT = [
    "vllm_version",
    "model",
    "weights_gib",
    "activation_gib",
    "non_torch_gib",
    "cudagraph_gib",
    "kv_cache_gib",
    "kv_cache_tokens",
    "max_concurrency",
    "block_size",
    "error",
]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(store.ENV, str(tmp_path / "default-cal.json"))
    monkeypatch.setenv("COLUMNS", "200")


def run(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_dry_run_json_one_object_per_launch(capsys, tmp_path):
    code, out, _ = run(capsys, "calibrate", str(FIXTURES / "restarts.log"), "--json", "--dry-run")
    assert code == 0
    objs = json.loads(out)
    assert len(objs) == 3
    assert list(objs[0])[: len(CONTRACT)] == CONTRACT
    assert objs[1]["model"] == "ibm-granite/granite-4.0-micro" and objs[1]["kv_cache_gib"] == 35.34
    assert objs[1]["cudagraph_gib"] == 0.72 and objs[1]["error"] is None
    assert objs[2]["error"]["kind"] == "max_seq_len"
    assert objs[2]["error"]["message"].startswith("To serve at least one request")
    assert not (tmp_path / "default-cal.json").exists()  # dry run stores nothing


def test_store_and_find(capsys, tmp_path):
    cal = tmp_path / "cal.json"
    code, out, _ = run(
        capsys,
        "calibrate",
        str(FIXTURES / "v1-0.11.0-granite-ok.log"),
        "--device",
        "l40s",
        "--file",
        str(cal),
    )
    assert code == 0, out
    assert "stored 1 calibration" in out
    key = store.CalibrationKey(
        model="ibm-granite/granite-4.0-micro", vllm_version="0.11.0", device="NVIDIA L40S"
    )
    found = store.find_calibration(key, str(cal))
    assert found is not None and found.launch.kv_cache_gib == 35.34


def test_json_store_reports_each_launch(capsys, tmp_path):
    cal = tmp_path / "cal.json"
    code, out, _ = run(
        capsys, "calibrate", str(FIXTURES / "restarts.log"), "--device", "gb10", "--file", str(cal), "--json"
    )
    assert code == 0
    objs = json.loads(out)
    assert [o["stored"] for o in objs] == [True, True, False]
    assert "failed" in objs[2]["reason"]
    assert objs[0]["key"]["vllm_version"] == "0.11.0" and objs[0]["key"]["device"] == "NVIDIA GB10"
    assert len(store.load(cal)) == 2


def test_spec_gives_device_and_file(capsys, tmp_path):
    spec = tmp_path / "stack.yaml"
    cal = tmp_path / "from-spec.json"
    spec.write_text(
        f"vllm_version: 0.20.0\ndevice: {{preset: rtx-5090}}\ncalibration_file: {cal}\n"
        "models:\n  - name: qwen\n    model: RedHatAI/Qwen3.6-35B-A3B-NVFP4\n    max_num_seqs: 1\n"
    )
    code, out, _ = run(capsys, "calibrate", str(FIXTURES / "v1-0.20.0-hybrid-ok.log"), "--spec", str(spec))
    assert code == 0, out
    (c,) = store.load(cal)
    # r028 states no vLLM version (the spec's 0.20.0 is used) and no total (the rtx-5090 preset's 31.36)
    assert (
        c.key.vllm_version == "0.20.0"
        and c.key.max_num_seqs == 1
        and c.key.device == "NVIDIA GeForce RTX 5090"
    )
    # non_kv = 0.9 x 31.36 - 1.28 = 28.224 - 1.28 = 26.944 GiB
    assert c.non_kv_gib == pytest.approx(26.944)


def test_missing_log_is_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "calibrate", str(tmp_path / "nope.log"))
    assert code == 2 and "no such file" in err and "Traceback" not in err
    code, _, err = run(capsys, "explain", str(tmp_path / "nope.log"))
    assert code == 2 and "no such file" in err


def test_no_device_is_exit_2(capsys, tmp_path):
    code, _, err = run(
        capsys, "calibrate", str(FIXTURES / "v1-0.11.0-granite-ok.log"), "--file", str(tmp_path / "c.json")
    )
    assert code == 2 and "--device" in err


def test_only_failures_is_exit_1(capsys, tmp_path):
    code, _, err = run(
        capsys,
        "calibrate",
        str(FIXTURES / "v1-free-memory.log"),
        "--device",
        "h200",
        "--file",
        str(tmp_path / "c.json"),
    )
    assert code == 1 and "nothing calibrated" in err


def test_human_output_lists_launches(capsys):
    code, out, _ = run(capsys, "calibrate", str(FIXTURES / "v0-0.7.2-qwen2.5-ok.log"), "--dry-run")
    assert code == 0
    assert "Qwen/Qwen2.5-1.5B-Instruct" in out and "2.36" in out and "2.69x" in out


def test_explain_json(capsys):
    code, out, _ = run(capsys, "explain", str(FIXTURES / "restarts.log"), "--json")
    assert code == 0
    (item,) = json.loads(out)  # only the failed launch (3 of 3) is explained
    assert item["launch"] == 3 and item["kind"] == "max_seq_len"
    assert set(item) >= {"kind", "message", "meaning", "fix", "numbers"}


def test_explain_text(capsys):
    code, out, _ = run(capsys, "explain", str(FIXTURES / "v1-free-memory.log"))
    assert code == 0
    assert "free_memory" in out and "vLLM said: Free memory on device (7.34/139.72 GiB)" in out
    assert "0.04" in out


def test_explain_ok_log(capsys):
    code, out, _ = run(capsys, "explain", str(FIXTURES / "v1-0.11.0-granite-ok.log"))
    assert code == 0
    lines = out.splitlines()
    # r027's one launch came up: the verdict ends the header line, and no failure kind is named
    assert lines[0] == "launch 1 of 1 (ibm-granite/granite-4.0-micro, vLLM 0.11.0): ok"
    assert "no startup failure" in out and "vLLM said" not in out


def test_version_missing_from_log(capsys, tmp_path):
    # r028's lines state no vLLM version: exit 2 naming the fix, then --vllm-version supplies it
    log = str(FIXTURES / "v1-0.20.0-hybrid-ok.log")
    cal = tmp_path / "c.json"
    code, _, err = run(capsys, "calibrate", log, "--device", "rtx-5090", "--file", str(cal))
    assert code == 2 and "--vllm-version" in err
    code, _, _ = run(
        capsys, "calibrate", log, "--device", "rtx-5090", "--file", str(cal), "--vllm-version", "0.20.0"
    )
    assert code == 0
    (c,) = store.load(cal)
    assert c.key.vllm_version == "0.20.0" and c.key.kv_cache_dtype == "fp8_e4m3"


@pytest.mark.parametrize(
    "cmd", [["calibrate", "--dry-run"], ["calibrate"], ["explain"], ["explain", "--json"]]
)
def test_a_log_without_a_vllm_start_is_bad_input(capsys, tmp_path, cmd):
    # the wrong file is bad input (exit 2, one line), not "ok, nothing to say" (exit 0)
    junk = tmp_path / "junk.log"
    junk.write_text("hello world\n")
    code, out, err = run(
        capsys, *cmd, str(junk), *(["--file", str(tmp_path / "c.json")] if cmd == ["calibrate"] else [])
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "junk.log: no vLLM engine start found" in err
