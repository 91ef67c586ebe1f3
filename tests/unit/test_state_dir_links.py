"""A symlinked state folder (`.residency`, the stack's folder, `--state-dir`) is refused in one line, exit 2:
a planted link would move state.json, the key and the logs into someone else's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from residency.cli import main
from residency.errors import UnsafePathError
from residency.runtime.state import StateStore, state_dir

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dgx-spark-qwen3.yaml"


def _spec(tmp_path: Path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    spec = d / "stack.yaml"
    spec.write_text(EXAMPLE.read_text())
    return spec


def test_real_folders_pass(tmp_path):
    spec = _spec(tmp_path)
    assert state_dir(spec) == spec.parent / ".residency" / "stack"
    (spec.parent / ".residency" / "stack").mkdir(parents=True)
    assert state_dir(spec) == spec.parent / ".residency" / "stack"
    assert state_dir(spec, tmp_path / "mine") == tmp_path / "mine"


@pytest.mark.parametrize("link", [".residency", ".residency/stack"])
def test_linked_state_folder_refused(tmp_path, link):
    spec = _spec(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = spec.parent / link
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(elsewhere)
    with pytest.raises(UnsafePathError) as ei:
        state_dir(spec)
    assert str(target) in str(ei.value) and "symlink" in str(ei.value)


def test_linked_override_refused_but_linked_ancestors_allowed(tmp_path):
    real = tmp_path / "real"
    (real / "st").mkdir(parents=True)
    (tmp_path / "via").symlink_to(real)
    # the user's own path above the state folder may contain links (/home -> /usr/home)
    assert state_dir(Path("x.yaml"), tmp_path / "via" / "st") == tmp_path / "via" / "st"
    (tmp_path / "st-link").symlink_to(real / "st")
    with pytest.raises(UnsafePathError, match="st-link"):
        state_dir(Path("x.yaml"), tmp_path / "st-link")


@pytest.mark.parametrize("cmd", ["down", "status"])
def test_cli_one_line_exit_2_and_nothing_written(tmp_path, capsys, cmd):
    spec = _spec(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "stack").mkdir()
    (elsewhere / "stack" / "state.json").write_text('{"spec_path": "planted", "runtime": "process"}')
    (spec.parent / ".residency").symlink_to(elsewhere)
    with pytest.raises(SystemExit) as ei:
        main([cmd, str(spec)])
    assert ei.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ".residency" in err and "real folder" in err, err
    assert sorted(p.name for p in (elsewhere / "stack").iterdir()) == ["state.json"]


def test_store_in_a_real_folder_still_works(tmp_path):
    spec = _spec(tmp_path)
    store = StateStore(state_dir(spec))
    with store.lock("test"):
        pass
    assert (spec.parent / ".residency" / "stack" / "lock").is_file()
