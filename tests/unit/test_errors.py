"""One exception tree, one exit-code table (README documents it), --debug shows the traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from residency import errors
from residency.errors import ExitCode, ResidencyError

REPO = Path(__file__).resolve().parents[2]


def test_every_error_the_cli_can_show_derives_from_residency_error():
    from residency.fsutil import UnsafePathError
    from residency.render.stack import PlanDoesNotFitError
    from residency.render.writer import ChangedFilesError
    from residency.runtime.bringup import UpFailed
    from residency.runtime.state import LockedError
    from residency.verify.client import RequestFailed

    for cls in (
        PlanDoesNotFitError,
        ChangedFilesError,
        UpFailed,
        LockedError,
        RequestFailed,
        UnsafePathError,
    ):
        assert issubclass(cls, ResidencyError), cls
        assert getattr(errors, cls.__name__) is cls  # defined once, in residency.errors
        assert cls.exit_code in set(ExitCode)
    assert errors.SpecError("f", "bad").exit_code == ExitCode.BAD_INPUT == 2


def test_readme_exit_code_table_matches_the_enum():
    text = (REPO / "README.md").read_text()
    documented = {int(c) for c in re.findall(r"^\| (\d+) \| ", text, re.M)}
    assert documented == {int(c) for c in ExitCode}


def test_debug_flag_shows_the_traceback_the_one_line_message_hides(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    cmd = [sys.executable, "-m", "residency.cli"]
    plain = subprocess.run([*cmd, "plan", missing], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        f"residency: {missing}: no such file (give the path of a stack spec YAML)"
    ]
    debug = subprocess.run(
        [*cmd, "--debug", "plan", missing], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr and "SpecError" in debug.stderr
    assert debug.stderr.rstrip().endswith(plain.stderr.strip())
