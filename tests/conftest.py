"""Every test (unit and e2e) runs with a home of its own, and the run fails if it wrote under the real one.

At import (before any test module reads the environment): the real test stack's folder is resolved from
the REAL home and exported as RESIDENCY_STACK_DIR (e2e needs the installed vLLM/LiteLLM venvs and toy
models), vLLM's compile cache is pointed inside that stack folder (a cache the README names), then HOME,
the XDG folders, RESIDENCY_CALIBRATION and HF_HOME move to a session temp folder and the variables that
would reach a real hub or GPU are cleared. The autouse fixture then gives each test a fresh home.

The guard: the residency/Hugging Face folders of the real home, and the names directly in ~, ~/.config
and ~/.cache, are snapshotted at import and compared at session end; any difference fails the session.

Under pytest-xdist (scripts/test-all runs `-n 2`; the e2e groups are below) the controller imports
this file first and exports the real home as RESIDENCY_TEST_REAL_HOME before it spawns the workers
(which inherit its temporary HOME); the controller's snapshot spans every worker's run, so the guard
runs there. The e2e workers' server start-up lines reach the controller's terminal summary through xdist's workeroutput.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

#: the real home; an xdist worker inherits the controller's temporary HOME, and this variable with it
REAL_HOME = Path(os.environ.get("RESIDENCY_TEST_REAL_HOME") or os.path.expanduser("~"))
os.environ["RESIDENCY_TEST_REAL_HOME"] = str(REAL_HOME)

_stack = os.environ.get("RESIDENCY_STACK_DIR") or str(REAL_HOME / ".cache" / "residency-stack")
os.environ["RESIDENCY_STACK_DIR"] = str(Path(_stack).expanduser())
# vLLM's torch.compile cache survives between runs inside the stack folder instead of ~/.cache/vllm
os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(os.environ["RESIDENCY_STACK_DIR"]) / "vllm-cache"))

#: variables the code or the tools it starts read: a real hub, a token, a GPU choice, a GPU reader
CLEARED = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "CUDA_VISIBLE_DEVICES",
    "RESIDENCY_GPU_READER",
)


def load_script(path: Path, name: str) -> ModuleType:
    """Import a file that is not in a package (bench/*.py, scripts/*.py) as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def home_env(home: Path) -> dict[str, str]:
    """The variables that put every per-user path the code (or vLLM/LiteLLM/HF) uses under `home`."""
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "RESIDENCY_CALIBRATION": str(home / ".config" / "residency" / "calibration.json"),
        "HF_HOME": str(home / ".cache" / "huggingface"),
    }


#: folders of the real home a residency run could write to (calibration, state, model hub cache)
GUARDED = (
    ".config/residency",
    ".local/share/residency",
    ".local/state/residency",
    ".residency",
    ".cache/huggingface",
)
#: folders whose direct entries must not gain names (catches writes the list above does not name)
LISTED = (".", ".config", ".cache")


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of everything under the GUARDED folders, plus the names in LISTED."""
    out: dict[str, tuple[int, int]] = {}
    for rel in GUARDED:
        root = home / rel
        if not root.exists():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in ["", *files]:
                p = Path(dirpath) / name
                try:
                    st = p.lstat()
                except OSError:
                    continue
                out[str(p.relative_to(home))] = (0 if name == "" else st.st_size, st.st_mtime_ns)
    for rel in LISTED:
        try:
            names = os.listdir(home / rel)
        except OSError:
            continue
        for name in names:
            out.setdefault(str(Path(rel) / name), (-1, -1))
    return out


def changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """Paths created, deleted or modified between two snapshots, as 'created ~/x' lines."""
    out = [f"created ~/{k}" for k in sorted(after.keys() - before.keys())]
    out += [f"deleted ~/{k}" for k in sorted(before.keys() - after.keys())]
    out += [f"modified ~/{k}" for k in sorted(before.keys() & after.keys()) if before[k] != after[k]]
    return out


_BEFORE = snapshot(REAL_HOME)
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="residency-test-home-"))
os.environ.update(home_env(_SESSION_HOME))
for _name in CLEARED:
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A fresh, empty home per test (not tmp_path: tests that list their tmp_path keep it to themselves)."""
    home = tmp_path_factory.mktemp("home")
    for k, v in home_env(home).items():
        monkeypatch.setenv(k, v)
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    yield home


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
    if _is_xdist_worker(session.config):
        return  # the controller's snapshot covers this worker's whole run
    found = changes(_BEFORE, snapshot(REAL_HOME))
    if not found:
        return
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [
        f"the test run wrote under the real home {REAL_HOME} (tests must not; see tests/conftest.py):",
        *("  " + x for x in found[:20]),
        "  (if another program on this machine made that change, rerun)",
    ]
    if tr is not None:
        tr.section("real home touched", sep="!", red=True)
        for line in lines:
            tr.write_line(line, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ----------------------------------------------------------------------------- pytest-xdist
#: scripts/test-all runs `-n 2 --dist loadgroup`: the e2e files go to two groups, each run by one worker
#: (the session toy stack starts once, in the worker of the first); unit tests fill in as workers free
#: up. "e2e-docker-agents": the Docker and agent-client e2e, which bring up stacks of their own.
E2E_GROUPS = {
    "tests/e2e/test_docker_e2e.py": "e2e-docker-agents",
    "tests/e2e/test_agents_e2e.py": "e2e-docker-agents",
}
E2E_DEFAULT_GROUP = "e2e-session-stack"  # the toy_stack users, and test_up_e2e.py to balance the two


def e2e_group(nodeid: str) -> str | None:
    """The xdist group of a test: by file for tests/e2e, None (no group) elsewhere."""
    path = nodeid.split("::", 1)[0]
    if not path.startswith("tests/e2e/"):
        return None
    return E2E_GROUPS.get(path, E2E_DEFAULT_GROUP)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup with the groups of e2e_group (xdist_group marks still work where xdist can
    read them: pytest-xdist 3.8 marks by rewriting item._nodeid, which pytest 9.2 no longer reads)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class E2EGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if "@" in nodeid:
                return super()._split_scope(nodeid)
            return e2e_group(nodeid) or nodeid

    return E2EGroupScheduling(config, log)


#: "name ready after N s" lines the e2e workers sent back (tests/e2e/conftest.py fills them per process)
_worker_startups: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # xdist controller: a worker finished
    _worker_startups.extend(getattr(node, "workeroutput", {}).get("residency_startups", []))


def pytest_terminal_summary(terminalreporter) -> None:
    if _worker_startups:
        terminalreporter.section("residency test stack: server start-up times")
        for line in _worker_startups:
            terminalreporter.write_line(line)
