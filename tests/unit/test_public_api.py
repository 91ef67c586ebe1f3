"""The library surface: `residency` exports what the CLI uses (lazily), and every --json output comes
from one serializer carrying schema_version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import residency
from residency.cli import main
from residency.jsonout import SCHEMA_VERSION, dumps

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "tests" / "fixtures" / "logs"


def test_all_is_sorted_complete_and_resolves():
    assert residency.__all__ == sorted(residency.__all__) == sorted(residency._EXPORTS)
    for name in residency.__all__:
        assert getattr(residency, name) is not None, name
    assert residency.plan_stack.__module__ == "residency.planner.plan"
    assert issubclass(residency.SpecError, residency.ResidencyError)
    with pytest.raises(AttributeError):
        residency.not_a_name  # noqa: B018
    assert (REPO / "src" / "residency" / "py.typed").is_file()


def test_importing_residency_loads_no_area_package():
    code = "import sys, residency; print(sorted(m for m in sys.modules if m.startswith('residency.')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_serializer_versions_objects_and_lists():
    assert list(json.loads(dumps({"a": 1, "b": 2}))) == ["a", "b", "schema_version"]
    assert json.loads(dumps([{"a": 1}, {"b": 2}])) == [
        {"schema_version": SCHEMA_VERSION, "a": 1},
        {"schema_version": SCHEMA_VERSION, "b": 2},
    ]


def _json_of(argv: list[str], capsys) -> object:
    with pytest.raises(SystemExit):
        main(argv)
    return json.loads(capsys.readouterr().out)


def test_every_json_output_carries_schema_version(capsys):
    plan = _json_of(["plan", str(REPO / "examples" / "dgx-spark-qwen3.yaml"), "--json"], capsys)
    assert plan["schema_version"] == SCHEMA_VERSION and "models" in plan
    log = str(LOGS / "cpu-0.32.0-toy-hermes.log")
    cal = _json_of(["calibrate", log, "--json", "--dry-run"], capsys)
    assert cal and all(x["schema_version"] == SCHEMA_VERSION for x in cal)
    ex = _json_of(["explain", log, "--json"], capsys)
    assert ex and all(x["schema_version"] == SCHEMA_VERSION for x in ex)


def test_render_and_down_json(tmp_path, capsys):
    spec = tmp_path / "stack.yaml"
    spec.write_text((REPO / "examples" / "dgx-spark-qwen3.yaml").read_text())
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as ei:
        main(["render", str(spec), "-o", str(out), "--json"])
    assert ei.value.code == 0
    r = json.loads(capsys.readouterr().out)
    assert r["schema_version"] == SCHEMA_VERSION and "compose.yaml" in r["created"] and r["updated"] == []
    assert r["key_file"] == str((out / ".env").resolve())
    d = _json_of(["down", str(spec), "--json"], capsys)
    assert d == {
        "spec": str(spec.resolve()),
        "state_file": str(spec.parent / ".residency" / "stack" / "state.json"),
        "stopped": [],
        "schema_version": SCHEMA_VERSION,
    }
