"""Bad input, every command: exit 2, one line on stderr naming the file/field and the fix, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from residency.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dgx-spark-qwen3.yaml"


def _files(tmp_path: Path) -> dict[str, Path]:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n  - name: a\n")  # a flow sequence never closed
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(EXAMPLE.read_text().replace("models:", "colour: blue\nmodels:", 1))
    return {"missing": tmp_path / "missing.yaml", "malformed": bad, "unknown": unknown}


# argv builders: the spec (or log) path goes where each command takes it.
COMMANDS = {
    "plan": lambda f, t: ["plan", str(f)],
    "render": lambda f, t: ["render", str(f), "-o", str(t / "out")],
    "up": lambda f, t: ["up", str(f), "--state-dir", str(t / "state")],
    "down": lambda f, t: ["down", str(f), "--state-dir", str(t / "state")],
    "verify": lambda f, t: ["verify", str(f)],
    "status": lambda f, t: ["status", str(f)],
    "calibrate": lambda f, t: ["calibrate", "--dry-run", "--spec", str(f), str(_log(t))],
    "calibrate-log": lambda f, t: ["calibrate", "--dry-run", str(f)],
    "explain": lambda f, t: ["explain", str(f)],
}

# What the one line must name, per case: the path (or field) and the fix.
EXPECT = {
    "missing": ("missing.yaml", "no such file", "give the path of a"),
    "malformed": ("bad.yaml:2:", "malformed YAML", "fix the YAML syntax"),
    "unknown": ("colour", "Extra inputs are not permitted", "remove it or check the spelling"),
}

# explain and calibrate's positional argument are vLLM logs, not specs: only a missing file is bad input there.
CASES = [
    (cmd, case)
    for cmd in COMMANDS
    for case in EXPECT
    if not (cmd in ("explain", "calibrate-log") and case != "missing")
]


def _log(t: Path) -> Path:
    p = t / "vllm.log"
    p.write_text("INFO vLLM API server version 0.33.0\n")
    return p


@pytest.mark.parametrize(("cmd", "case"), CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_bad_input_exits_2_with_one_line(cmd, case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = _files(tmp_path)[case]
    with pytest.raises(SystemExit) as ex:
        main(COMMANDS[cmd](f, tmp_path))
    out, err = capsys.readouterr()
    assert ex.value.code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert "Traceback" not in err
    where, problem, fix = EXPECT[case]
    assert where in line and problem in line and fix in line, line
    # nothing was started or written
    assert not (tmp_path / "out").exists() and not (tmp_path / "state").exists()


def test_a_solver_failure_is_printed_once(tmp_path, capsys):
    # the solver's text is its own line; its copy in the warnings is not printed again
    spec = tmp_path / "one.yaml"
    spec.write_text(
        'vllm_version: "0.33.0"\ndevice: {preset: h100-80gb}\nmodels:\n'
        "  - {name: quick, model: meta-llama/Llama-3.1-8B-Instruct, max_model_len: 8192, max_num_seqs: 4096}\n"
    )
    with pytest.raises(SystemExit) as ex:
        main(["plan", str(spec), "--no-calibration"])
    out = capsys.readouterr().out
    assert ex.value.code == 1
    assert " ".join(out.split()).count("cannot serve 4096 requests") == 1
