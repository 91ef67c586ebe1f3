"""No Docker engine: scripts/install-docker-stack records the daemon's own error and the docker tests
skip with it (an explained skip in the summary, never a silent pass). The engine, compose and
debootstrap are fakes on PATH here (this test must not start a daemon); tests/e2e runs the real one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DAEMON_ERROR = (
    'level=fatal msg="failed to start daemon: error initializing graphdriver: driver not supported"'
)


def _fake_bin(d: Path, name: str, body: str) -> None:
    p = d / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)


def test_daemon_that_cannot_start_is_recorded_and_the_docker_tests_skip_with_its_error(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_bin(
        bin_dir,
        "docker",
        'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2; exit 1',
    )
    _fake_bin(bin_dir, "dockerd", f"echo '{DAEMON_ERROR}' >&2; exit 1")
    _fake_bin(bin_dir, "docker-compose", "exit 0")
    _fake_bin(bin_dir, "debootstrap", "exit 0")
    stack = tmp_path / "stack"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RESIDENCY_STACK_DIR": str(stack)}
    r = subprocess.run(
        [str(ROOT / "scripts" / "install-docker-stack")], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr  # not an install failure: the tests report it
    assert "starting dockerd --bridge=none --iptables=false --ip-masq=false" in r.stdout  # says so
    assert "NOT AVAILABLE" in r.stdout.splitlines()[-1]
    recorded = (stack / "docker" / "unavailable.txt").read_text()
    assert "dockerd could not start" in recorded and "error initializing graphdriver" in recorded
    assert not (stack / "docker" / "images.json").exists()

    from tests.e2e import dockerkit

    monkeypatch.setenv("RESIDENCY_STACK_DIR", str(stack))
    with pytest.raises(pytest.skip.Exception) as ei:
        dockerkit.require_docker()
    assert str(ei.value.msg).startswith("docker tests not run: dockerd could not start")
    assert "error initializing graphdriver" in str(ei.value.msg)


def test_images_never_built_are_an_error_not_a_skip(tmp_path, monkeypatch):
    from tests.e2e import dockerkit
    from tests.e2e.stackkit import StackNotInstalled

    monkeypatch.setenv("RESIDENCY_STACK_DIR", str(tmp_path))
    with pytest.raises(StackNotInstalled, match="run scripts/install-test-stack"):
        dockerkit.require_docker()
