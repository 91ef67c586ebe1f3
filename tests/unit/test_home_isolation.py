"""tests/conftest.py: every test has a home of its own, and a write under the real home is caught."""

from __future__ import annotations

import os
from pathlib import Path

from residency.calibrate.store import calibration_path
from tests.conftest import CLEARED, REAL_HOME, changes, snapshot


def test_home_and_per_user_paths_are_temporary(_isolated_home: Path):
    assert Path.home() == _isolated_home != REAL_HOME
    assert Path("~/.config").expanduser().is_relative_to(_isolated_home)
    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "HF_HOME", "RESIDENCY_CALIBRATION"):
        assert Path(os.environ[var]).is_relative_to(_isolated_home), var
    assert calibration_path().is_relative_to(_isolated_home)
    assert not any(os.environ.get(v) for v in CLEARED)


def test_real_stack_dir_is_resolved_from_the_real_home():
    # e2e tests need the installed stack; the conftest exports it before HOME moves
    stack = Path(os.environ["RESIDENCY_STACK_DIR"])
    assert not stack.is_relative_to(Path.home())


def test_calibrate_writes_into_the_test_home(_isolated_home: Path):
    from typer.testing import CliRunner

    from residency.cli import app

    log = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "v1-0.11.0-granite-ok.log"
    r = CliRunner().invoke(app, ["calibrate", str(log), "--device", "h100-80gb"])
    assert r.exit_code == 0, r.output
    assert (_isolated_home / ".config" / "residency" / "calibration.json").is_file()


def test_guard_sees_created_modified_and_deleted_files(tmp_path: Path):
    home = tmp_path
    (home / ".config" / "residency").mkdir(parents=True)
    (home / ".config" / "residency" / "calibration.json").write_text("{}")
    before = snapshot(home)
    assert changes(before, snapshot(home)) == []
    (home / ".config" / "residency" / "calibration.json").write_text('{"records": []}')
    (home / ".cache").mkdir()
    (home / ".cache" / "vllm").mkdir()
    (home / ".new-tool").write_text("x")
    got = changes(before, snapshot(home))
    assert "modified ~/.config/residency/calibration.json" in got
    assert "created ~/.cache" in got and "created .new-tool" not in got
    assert "created ~/.new-tool" in got
    (home / ".config" / "residency" / "calibration.json").unlink()
    assert "deleted ~/.config/residency/calibration.json" in changes(before, snapshot(home))
