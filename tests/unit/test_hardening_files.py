"""Issue 13.1: every file write is exclusive and no-follow; a key is only kept from a file residency wrote."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from test_render_helpers import two_model_plan, two_model_spec

from residency.fsutil import UnsafePathError, child, open_append, open_lock, read_own_secret, write_file
from residency.render.stack import render_files
from residency.render.writer import read_env_value, write_files
from residency.runtime.keys import stack_master_key
from residency.runtime.state import StackState, StateStore


def _plant_tmp_links(folder: Path, name: str, victim: Path) -> None:
    """The attack from the issue: symlinks named like the old temp files (pid-based) for nearby pids."""
    pid = os.getpid()
    for p in range(max(1, pid - 5), pid + 50):
        (folder / f".{name}.tmp-{p}").symlink_to(victim)


def test_render_never_writes_through_planted_temp_symlinks(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    victim.chmod(0o644)
    _plant_tmp_links(out, ".env", victim)
    spec, plan = two_model_spec(), two_model_plan()
    write_files(out, render_files(spec, plan, out), force=False)
    assert victim.read_text() == "untouched\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    env = out / ".env"
    assert not env.is_symlink() and stat.S_IMODE(env.lstat().st_mode) == 0o600
    assert "LITELLM_MASTER_KEY=sk-" in env.read_text()


def test_render_refuses_symlinked_env_and_never_adopts_its_key(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    planted = tmp_path / "planted"
    planted.write_text("LITELLM_MASTER_KEY=sk-attacker-chosen\n")
    planted.chmod(0o600)
    (out / ".env").symlink_to(planted)
    spec, plan = two_model_spec(), two_model_plan()
    files = render_files(spec, plan, out)
    assert "sk-attacker-chosen" not in files[".env"].content
    with pytest.raises(UnsafePathError, match="symlink"):
        write_files(out, files, force=True)
    assert planted.read_text() == "LITELLM_MASTER_KEY=sk-attacker-chosen\n"
    assert not (out / "compose.yaml").exists()  # refused before anything was written


def test_key_not_adopted_from_group_readable_file(tmp_path):
    env = tmp_path / ".env"
    env.write_text("LITELLM_MASTER_KEY=sk-planted\n")
    env.chmod(0o644)
    assert read_env_value(env, "LITELLM_MASTER_KEY") is None
    env.chmod(0o600)
    assert read_env_value(env, "LITELLM_MASTER_KEY") == "sk-planted"
    assert read_own_secret(tmp_path / "missing") is None


def test_state_dir_env_symlink_not_adopted(tmp_path):
    store = StateStore(tmp_path / "state")
    store.dir.mkdir()
    planted = tmp_path / "planted"
    planted.write_text("LITELLM_MASTER_KEY=sk-attacker\n")
    planted.chmod(0o600)
    (store.dir / ".env").symlink_to(planted)
    with pytest.raises(UnsafePathError):
        stack_master_key(store.dir, "LITELLM_MASTER_KEY")
    assert planted.read_text() == "LITELLM_MASTER_KEY=sk-attacker\n"


def test_state_json_not_written_through_planted_links(tmp_path):
    store = StateStore(tmp_path / "state")
    store.dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("x")
    _plant_tmp_links(store.dir, "state.json", victim)
    store.save(StackState(spec_path="s.yaml", runtime="process"))
    assert victim.read_text() == "x"
    assert store.load() is not None
    (store.dir / "state.json").unlink()
    (store.dir / "state.json").symlink_to(victim)
    with pytest.raises(UnsafePathError):
        store.save(StackState(spec_path="s.yaml", runtime="process"))
    assert victim.read_text() == "x"


def test_write_file_secret_mode_and_symlinked_parent(tmp_path):
    old = os.umask(0o077)
    try:
        write_file(tmp_path / "a.txt", "x", 0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644  # fchmod, not the umask
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "linkdir").symlink_to(real)
    with pytest.raises(UnsafePathError, match="real folder"):
        write_file(tmp_path / "linkdir" / ".env", "K=v\n", 0o600)
    assert not (real / ".env").exists()
    write_file(tmp_path / "linkdir" / "plain.yaml", "a: 1\n")  # a non-secret may go through a linked folder
    assert (real / "plain.yaml").read_text() == "a: 1\n"
    assert [p.name for p in real.iterdir() if p.name.endswith(".tmp")] == []


def test_logs_and_locks_refuse_symlinks(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "m.log").symlink_to(victim)
    with pytest.raises(UnsafePathError):
        open_append(tmp_path / "m.log")
    (tmp_path / "lock").symlink_to(victim)
    with pytest.raises(UnsafePathError):
        open_lock(tmp_path / "lock")
    assert victim.read_text() == "keep"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "logs").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="real folder"):
        open_append(tmp_path / "logs" / "m.log")
    assert list(elsewhere.iterdir()) == []
    with open_append(tmp_path / "ok.log") as f:
        f.write(b"line\n")
    assert stat.S_IMODE((tmp_path / "ok.log").stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["../../evil", "a/b", "..", "", "x" * 300])
def test_child_refuses_non_component_names(tmp_path, name):
    with pytest.raises(UnsafePathError):
        child(tmp_path, name, ".log")


def test_no_module_writes_files_another_way():
    """Keep it that way: every file write goes through residency.fsutil (exclusive, no-follow)."""
    import re

    src = Path(__file__).resolve().parents[2] / "src" / "residency"
    pattern = re.compile(
        r"\.write_text\(|\.write_bytes\(|os\.replace\(|os\.rename\(|mkstemp\(|O_CREAT|"
        r"open\([^)]*[\"'](?:w|a|x|r\+)b?[\"']"
    )
    offenders = [
        f"{p.relative_to(src)}:{i}: {line.strip()}"
        for p in sorted(src.rglob("*.py"))
        if p.name != "fsutil.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == [], "write through residency.fsutil instead:\n" + "\n".join(offenders)
