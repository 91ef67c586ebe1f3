"""CLI start-up budget: importing the CLI (and asking for --help) loads no heavy or unrelated module.

Each check runs in a fresh interpreter: this test process has already imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Third-party libraries only some commands need, and residency's own area packages: none belongs to start-up.
HEAVY = [
    "httpx",
    "openai",
    "huggingface_hub",
    "prometheus_client",
    "pynvml",
    "psutil",
    "rich.live",
    "rich.console",
    "yaml",
    "pydantic",
    "residency.spec",
    "residency.memory",
    "residency.planner",
    "residency.calibrate",
    "residency.output",
    "residency.render",
    "residency.runtime",
    "residency.verify",
    "residency.status",
]

# Modules the plan command itself must still not need for a catalog model (no network, no device probe, no UI).
NOT_FOR_PLAN = [
    "httpx",
    "openai",
    "huggingface_hub",
    "prometheus_client",
    "pynvml",
    "psutil",
    "rich.live",
    "residency.runtime",
    "residency.verify",
    "residency.status",
    "residency.render",
]


def _loaded(code: str) -> list[str]:
    prog = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))\n"
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _present(mods: list[str], names: list[str]) -> list[str]:
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in mods)]


def test_importing_the_cli_loads_nothing_heavy():
    mods = _loaded("import residency.cli")
    assert "residency.cli" in mods  # the probe saw the import
    assert _present(mods, HEAVY) == []


def test_plan_run_loads_no_network_device_or_ui_module():
    code = (
        "import contextlib, io\n"
        "from residency.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        main(['plan', 'examples/dgx-spark-qwen3.yaml', '--json'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "assert json.loads(buf.getvalue())['fits'] is True\n"
    )
    mods = _loaded(code)
    assert "residency.planner.plan" in mods  # the plan really ran
    assert _present(mods, NOT_FOR_PLAN) == []


@pytest.mark.parametrize("argv", [["--help"], ["plan", "--help"], ["status", "--help"], ["verify", "--help"]])
def test_help_works_and_stays_light(argv):
    r = subprocess.run(
        [sys.executable, "-m", "residency.cli", *argv], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout
    if argv == ["--help"]:
        for cmd in ("plan", "render", "up", "down", "verify", "status", "calibrate", "explain"):
            assert cmd in r.stdout
    code = (
        "import contextlib, io\n"
        "from residency.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
    )
    assert (
        _present(
            _loaded(code), ["httpx", "openai", "huggingface_hub", "prometheus_client", "pynvml", "psutil"]
        )
        == []
    )
