"""The README's sample blocks are what the CLI prints today (scripts/readme_samples.py regenerates them)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.conftest import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "readme_samples.py"
FIX = "README samples are out of date: run `.venv/bin/python scripts/readme_samples.py` and commit README.md"


@pytest.fixture(scope="module")
def rs():
    return load_script(SCRIPT, "readme_samples")


def test_readme_has_samples(rs):
    specs = [s.spec for s in rs.samples(rs.README.read_text())]
    assert "plan examples/dgx-spark-qwen3.yaml" in specs


def test_readme_samples_match_the_cli(rs):
    with rs.clean_env():
        _, changed = rs.regenerate(rs.README.read_text())
    diffs = [
        f"<!-- sample: {s.spec} -->\n"
        + "".join(difflib.unified_diff(s.body.splitlines(True), new.splitlines(True), "README", "CLI now"))
        for s, new in changed
    ]
    assert not diffs, FIX + "\n\n" + "\n".join(diffs)


def test_drift_is_detected(rs):
    text = rs.README.read_text()
    (first, *_) = rs.samples(text)
    stale = text[: first.start] + first.body.replace("launch order", "start order") + text[first.end :]
    with rs.clean_env():
        _, changed = rs.regenerate(stale)
    assert [s.spec for s, _ in changed] == [first.spec]


def test_steps_edit_a_copy_and_cut_lines(rs):
    example = rs.REPO / "examples" / "dgx-spark-qwen3.yaml"
    before = example.read_text()
    with rs.clean_env():
        body = rs.render(
            'plan examples/dgx-spark-qwen3.yaml | set models.heavy.gpu_memory_utilization=0.80 | lines "1. heavy:" "   fix:"'
        )
    lines = body.splitlines()
    assert lines[0].startswith("1. heavy:") and "Free memory on device" in lines[0]
    assert lines[-1].startswith("   fix:")
    assert example.read_text() == before  # the example itself is not touched
