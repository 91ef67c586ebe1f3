"""The real agent clients against residency's own toy stack END TO END: render, up, then
`hermes chat` (hermes-agent 0.19.0) with the rendered hermes/config.yaml and a tiny tool plugin,
and the rendered clawrium.sh (clawrium 26.8.1), both in a temporary home; verify's A1-A3 and
agents.md's measured results.

Starts two toy vLLM CPU servers at max_model_len 65,536 and a LiteLLM proxy (~2-3 min). Every
request stays on 127.0.0.1: the clients get a dead HTTP(S)_PROXY for anything else.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.stackkit import SPEC_VLLM_ENV, cpu_total_gib, free_port, require_stack, stack_dir
from tests.e2e.test_up_e2e import _residency  # the CLI in a subprocess, with the stack's vllm/litellm

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parents[1] / "fixtures" / "agents" / "toy-agents.yaml"
MODELS = ("toy-primary", "toy-small")

PLUGIN_YAML = """\
name: residency_probe
version: "1.0"
description: weather probe for residency's end-to-end test
kind: standalone
provides_tools: [get_weather]
"""
# The handler writes a marker file: the assertion that Hermes ran the tool the model called.
PLUGIN_INIT = """\
import json, os, pathlib

SCHEMA = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
}


def _handler(args, **kw):
    pathlib.Path(os.environ["RESIDENCY_PROBE_MARKER"]).write_text(json.dumps(args))
    return json.dumps({"city": args.get("city"), "temperature": 18, "condition": "sunny"})


def register(ctx):
    ctx.register_tool(name="get_weather", toolset="residency_probe", schema=SCHEMA, handler=_handler)
"""


def _agents_bin(name: str) -> Path:
    p = stack_dir() / "agents" / "bin" / name
    if not p.exists():
        pytest.fail(f"{p} is missing: run scripts/install-test-stack (step agents)")
    return p


def _client_env(home: Path, **extra: str) -> dict[str, str]:
    """A temporary home; anything not on 127.0.0.1 goes to a dead proxy."""
    env = {
        "PATH": f"{_agents_bin('hermes').parent}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "HERMES_HOME": str(home / ".hermes"),
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "LANG": "C.UTF-8",
    }
    env.update(extra)
    return env


@pytest.fixture
def rendered_stack(tmp_path):
    stack = require_stack(models=["toy-hermes"])
    spec = tmp_path / "toy-agents.yaml"
    spec.write_text(
        FIXTURE.read_text().format(
            stack=stack,
            proxy_port=free_port(),
            total_gib=cpu_total_gib(),
            vllm_env=json.dumps(SPEC_VLLM_ENV),
        )
    )
    out = tmp_path / "out"
    r = _residency("render", str(spec), "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    r = _residency("up", str(spec), "--cpu", "--settle-seconds", "2")
    up_out = r.stdout + r.stderr
    try:
        assert r.returncode == 0, up_out
        yield spec, out, up_out
    finally:
        _residency("down", str(spec), "--grace", "20")


def test_real_clients_use_the_rendered_configs(rendered_stack, tmp_path):
    spec, out, up_out = rendered_stack
    key = out.joinpath(".env").read_text().split("LITELLM_MASTER_KEY=", 1)[1].strip()
    # one key: up took the rendered .env (no second key in the state dir), and said which file
    assert f"from {(out / '.env').resolve()}" in up_out
    assert key not in up_out
    assert not (spec.parent / ".residency" / spec.stem / ".env").exists()
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600
    port = int(spec.read_text().split("port: ")[-1].split()[0])
    base = f"http://127.0.0.1:{port}"
    r = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200 and {m["id"] for m in r.json()["data"]} == set(MODELS)

    # --- Hermes: the rendered config as $HERMES_HOME/config.yaml, plus a tool plugin enabled
    home = tmp_path / "home"
    hh = home / ".hermes"
    (hh / "plugins" / "residency_probe").mkdir(parents=True)
    (hh / "plugins" / "residency_probe" / "plugin.yaml").write_text(PLUGIN_YAML)
    (hh / "plugins" / "residency_probe" / "__init__.py").write_text(PLUGIN_INIT)
    rendered = (out / "hermes" / "config.yaml").read_text()
    assert rendered.count("\nmodel:") == 1 and "\n---" not in rendered  # one document
    (hh / "config.yaml").write_text(rendered + "plugins:\n  enabled: [residency_probe]\n")
    # the key the way agents.md says: its line from the rendered .env into $HERMES_HOME/.env
    env_line = next(
        ln for ln in (out / ".env").read_text().splitlines() if ln.startswith("LITELLM_MASTER_KEY=")
    )
    (hh / ".env").write_text(env_line + "\n")
    marker = tmp_path / "tool-ran.json"
    h = subprocess.run(
        [
            str(_agents_bin("hermes")),
            "chat",
            "-q",
            "What is the weather in Paris? Call the get_weather tool.",
            "-Q",
            "-t",
            "residency_probe",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=_client_env(home, RESIDENCY_PROBE_MARKER=str(marker)),
        cwd=tmp_path,
    )
    hermes_out = h.stdout + h.stderr
    assert "below the minimum" not in hermes_out, hermes_out
    assert "cannot be greater than max_model_len" not in hermes_out, hermes_out
    assert marker.exists(), f"Hermes did not run the tool (exit {h.returncode}):\n{hermes_out[-4000:]}"
    # the streamed call reached the handler as structured arguments (the toy, under Hermes's long
    # system prompt, does not always pick the asked city: that is the model, not the path)
    assert isinstance(json.loads(marker.read_text()).get("city"), str)

    # --- Clawrium: the rendered script against the live proxy, in the temporary home
    c = subprocess.run(
        ["sh", str(out / "clawrium.sh")], capture_output=True, text=True, timeout=300, env=_client_env(home)
    )
    assert c.returncode == 0, c.stdout + c.stderr
    assert key not in (out / "clawrium.sh").read_text() and key not in c.stdout + c.stderr
    providers = json.loads((home / ".config" / "clawrium" / "providers.json").read_text())
    by_model = {p["default_model"]: p for p in providers}
    assert set(by_model) == set(MODELS)
    for name in MODELS:
        p = by_model[name]
        assert p["type"] == "litellm" and p["endpoint"] == base
        assert p["context_window"] == 65536
        assert set(p["available_models"]) == set(MODELS)  # clawctl listed the proxy's /v1/models
    # a second run edits instead of failing on the existing providers
    c2 = subprocess.run(
        ["sh", str(out / "clawrium.sh")], capture_output=True, text=True, timeout=300, env=_client_env(home)
    )
    assert c2.returncode == 0, c2.stdout + c2.stderr

    # --- verify's agent checks pass, and agents.md then shows the measured results
    v = _residency("verify", str(spec), "--only", "T1,T2,A1,A2,A3", "--json", timeout=900)
    rep = json.loads(v.stdout)
    cells = {(m["name"], c["id"]): c["status"] for m in rep["models"] for c in m["checks"]}
    assert cells[("toy-primary", "A1")] == "pass" and cells[("toy-small", "A1")] == "pass", v.stdout
    assert cells[("toy-primary", "A2")] == "pass" and cells[("toy-small", "A2")] == "pass", v.stdout
    assert cells[("toy-primary", "A3")] == "pass", v.stdout
    r = _residency("render", str(spec), "-o", str(out), "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    md = (out / "agents.md").read_text()
    assert "Not measured yet" not in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| `toy-primary` | pass"))
    assert row.count("pass") >= 4


def test_clawrium_script_against_a_live_proxy(tmp_path):
    """clawrium.sh alone: the DGX Spark example rendered, its LiteLLM config served by the real proxy
    (no vLLM behind it: clawctl only lists /v1/models), the real clawctl in a temporary home."""
    from tests.e2e.stackkit import start_litellm

    port = free_port()
    example = Path(__file__).parents[2] / "examples" / "dgx-spark-qwen3.yaml"
    spec = tmp_path / "spark.yaml"
    spec.write_text(example.read_text().replace("  port: 4000\n", f"  port: {port}\n  host: 127.0.0.1\n"))
    out = tmp_path / "out"
    r = _residency("render", str(spec), "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    key = out.joinpath(".env").read_text().split("LITELLM_MASTER_KEY=", 1)[1].strip()
    proxy = start_litellm(
        config_path=out / "litellm.yaml", port=port, master_key=key, env={"LITELLM_MASTER_KEY": key}
    )
    try:
        home = tmp_path / "home"
        for _ in range(2):  # the second run edits the providers it created
            c = subprocess.run(
                ["sh", str(out / "clawrium.sh")],
                capture_output=True,
                text=True,
                timeout=300,
                env=_client_env(home),
            )
            assert c.returncode == 0, c.stdout + c.stderr
            assert key not in c.stdout + c.stderr
        providers = json.loads((home / ".config" / "clawrium" / "providers.json").read_text())
        assert {p["default_model"]: p["context_window"] for p in providers} == {"fast": 65536, "heavy": 65536}
        assert all(set(p["available_models"]) == {"fast", "heavy"} for p in providers)
        assert all(p["endpoint"] == f"http://127.0.0.1:{port}" for p in providers)
        secrets_file = home / ".config" / "clawrium" / "secrets.json"
        assert key in secrets_file.read_text() and stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    finally:
        proxy.stop()
