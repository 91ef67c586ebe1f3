"""The Docker side of the real test stack: the engine, the test images, and what a project left.

Built by ``scripts/install-docker-stack`` (called by ``scripts/install-test-stack``), which records
the image tags in ``$RESIDENCY_STACK_DIR/docker/images.json`` or, when no Docker engine can run on
this machine, the daemon's own error in ``docker/unavailable.txt``. ``require_docker()`` turns the
latter into a pytest skip carrying that error (shown in the summary: ``-ra``), never a silent pass;
images that were never built are an error, like a missing venv stack.

Network rule: every container here uses host networking; every request goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.stackkit import StackNotInstalled, stack_dir

PROJECT_LABEL = "com.docker.compose.project"


def docker_dir() -> Path:
    return stack_dir() / "docker"


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    return r


def require_docker() -> dict[str, str]:
    """The test image tags {"vllm", "litellm", "base"}; skips (with the reason) when no engine runs."""
    unavailable = docker_dir() / "unavailable.txt"
    if unavailable.is_file():
        pytest.skip("docker tests not run: " + " ".join(unavailable.read_text().split()))
    images = docker_dir() / "images.json"
    if not images.is_file():
        raise StackNotInstalled(
            f"the docker test images are not built ({images} is missing): run scripts/install-test-stack"
        )
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"docker tests not run: `docker info` failed: {e}")
    if info.returncode != 0:
        pytest.skip(f"docker tests not run: the Docker engine does not answer: {info.stderr.strip()[-400:]}")
    tags = json.loads(images.read_text())
    for key in ("vllm", "litellm"):
        if docker("image", "inspect", tags[key], check=False).returncode != 0:
            raise StackNotInstalled(f"image {tags[key]} is missing: run scripts/install-test-stack")
    return tags


def compose_cli() -> list[str]:
    """The compose the product would use: the v2 plugin when present, else docker-compose."""
    from residency.runtime.docker import compose_cli as product_cli

    return product_cli()


def project_containers(project: str) -> list[dict]:
    """`docker inspect` records of every container (running or not) of a compose project."""
    ids = docker("ps", "--all", "--quiet", "--filter", f"label={PROJECT_LABEL}={project}").stdout.split()
    return json.loads(docker("inspect", *ids).stdout) if ids else []


def project_networks(project: str) -> list[str]:
    return docker("network", "ls", "--quiet", "--filter", f"label={PROJECT_LABEL}={project}").stdout.split()


def leftovers() -> dict[str, set[str]]:
    """Everything an engine can keep after a run: containers, networks, volumes, dangling images."""
    return {
        "containers": set(docker("ps", "--all", "--quiet").stdout.split()),
        "networks": set(docker("network", "ls", "--quiet").stdout.split()),
        "volumes": set(docker("volume", "ls", "--quiet").stdout.split()),
        "dangling images": set(docker("images", "--quiet", "--filter", "dangling=true").stdout.split()),
    }


def remove_project(project: str) -> None:
    """Cleanup after a failed test: this project's containers and networks, found by label only."""
    ids = docker("ps", "--all", "--quiet", "--filter", f"label={PROJECT_LABEL}={project}", check=False)
    if ids.stdout.split():
        docker("rm", "--force", *ids.stdout.split(), check=False)
    nets = project_networks(project)
    if nets:
        docker("network", "rm", *nets, check=False)


def by_service(containers: list[dict]) -> dict[str, dict]:
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in containers}


def when(stamp: str) -> datetime:
    """Docker's RFC 3339 timestamps (nanoseconds, Z) as aware datetimes."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def log_line_time(container: str, needle: str) -> datetime:
    """When the container printed its first line containing `needle` (Docker's own stamp)."""
    out = docker("logs", "--timestamps", container)
    for line in (out.stdout + out.stderr).splitlines():
        if needle in line:
            return when(line.split(" ", 1)[0])
    raise AssertionError(f"{container} never logged {needle!r}")
