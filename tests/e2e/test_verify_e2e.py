"""`residency verify` against the real toy stack: vLLM CPU servers (hermes, xml, chat, noauto)
behind a real LiteLLM proxy (session fixture `toy_stack`).

One full verify of all four models runs once (through the CLI, as a user would, with --json);
the tests below read that report. Only the issue's Done-when facts are asserted per model, plus
that every check of every model produced a status and the master key never appears in output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from residency.verify.checks import CHECK_IDS

pytestmark = pytest.mark.e2e

TOY_MODEL = {"hermes": "toy-hermes", "xml": "toy-xml", "chat": "toy-chat", "noauto": "toy-hermes"}
TOOL_CHECKS = ("T1", "T2", "T3", "T4", "T6", "T8")  # the agent-facing tool checks
KEY_ENV = "RESIDENCY_E2E_VERIFY_KEY"


def _spec(toy_stack, tmp: Path) -> Path:
    """A stack spec describing the running toy stack; the key only in the rendered .env (0600)."""
    models = []
    for name, srv in toy_stack.servers.items():
        m = {
            "name": name,
            "model": TOY_MODEL[name],
            "port": srv.port,
            "max_model_len": 4096,
            "max_num_seqs": 4,
        }
        if "--tool-call-parser" in srv.args:
            m["tool_call_parser"] = srv.args[srv.args.index("--tool-call-parser") + 1]
        else:
            m["enable_auto_tool_choice"] = False
        models.append(m)
    spec = {
        "device": {"total_gib": 24, "unified": True},
        "proxy": {"port": toy_stack.proxy.port, "master_key_env": KEY_ENV},
        "models": models,
    }
    path = tmp / "toy.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env_file = tmp / ".residency" / "toy" / ".env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text(f"{KEY_ENV}={toy_stack.proxy.master_key}\n")
    env_file.chmod(0o600)
    return path


def _residency(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, "LITELLM_MASTER_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "residency.cli", "verify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )


@pytest.fixture(scope="module")
def full_run(toy_stack, tmp_path_factory):
    spec = _spec(toy_stack, tmp_path_factory.mktemp("verify"))
    proc = _residency(str(spec), "--json", "--timeout", "120")
    assert proc.stdout.strip().startswith("{"), proc.stderr[-2000:]
    return proc, json.loads(proc.stdout)


def _checks(report: dict, model: str) -> dict[str, dict]:
    (m,) = [m for m in report["models"] if m["name"] == model]
    return {c["id"]: c for c in m["checks"]}


def test_every_check_of_every_model_has_a_status_and_the_key_stays_secret(full_run, toy_stack):
    proc, report = full_run
    assert [m["name"] for m in report["models"]] == list(toy_stack.servers)
    for m in report["models"]:
        assert [c["id"] for c in m["checks"]] == list(CHECK_IDS)
        for c in m["checks"]:
            assert c["status"] in ("pass", "warn", "fail", "skip"), c
            assert "unexpected" not in c["detail"], c  # no check crashed on real server data
    assert toy_stack.proxy.master_key not in proc.stdout + proc.stderr
    # xml/chat/noauto fail required tool checks, so the run is not ok and exits 1
    assert report["ok"] is False and proc.returncode == 1
    assert report["fixes"] and all(f["fix"] for f in report["fixes"])


def _structural_pass(check: dict) -> bool:
    """pass, or warn only about what the toy model chose (a city other than Paris, the wording of
    its answer, finish_reason on the guided path): never about the call's shape or transport."""
    if check["status"] == "pass":
        return True
    harmless = ("do not mention Paris", "does not use the tool result", "finish_reason=")
    return check["status"] == "warn" and all(
        h["status"] == "pass" or any(x in h["detail"] for x in harmless) for h in check["hops"].values()
    )


def test_hermes_passes_the_tool_checks_directly_and_through_the_proxy(full_run):
    c = _checks(full_run[1], "hermes")
    for cid in ("P1", "P2", "P3", "M1", "M2"):
        assert c[cid]["status"] == "pass", (cid, c[cid]["detail"])
    for cid in TOOL_CHECKS:
        assert set(c[cid]["hops"]) == {"direct", "proxy"}, cid
        assert _structural_pass(c[cid]), (cid, c[cid]["hops"])
        if cid != "T6":  # a structured get_weather call came back on both hops
            assert all("get_weather(" in h["detail"] for h in c[cid]["hops"].values()), (cid, c[cid]["hops"])


def test_xml_under_hermes_is_diagnosed_as_qwen3_coder_xml(full_run):
    c = _checks(full_run[1], "xml")
    for cid in ("T1", "T2"):
        assert c[cid]["status"] == "fail"
        for hop in ("direct", "proxy"):
            assert "Qwen3-Coder XML" in c[cid]["hops"][hop]["detail"], c[cid]["hops"][hop]
        assert "--tool-call-parser qwen3_coder" in c[cid]["fix"], c[cid]["fix"]
        assert "instead of `--tool-call-parser hermes`" in c[cid]["fix"]
        assert c[cid]["fix"].startswith("backend fault")  # fails directly too, not the proxy's doing
    assert _structural_pass(c["T3"]), c["T3"]["hops"]  # forced calls do not use the parser


def test_server_without_auto_flags_is_diagnosed_from_its_400(full_run):
    c = _checks(full_run[1], "noauto")
    for cid in ("T1", "T2"):
        assert c[cid]["status"] == "fail"
        assert (
            "400" in c[cid]["detail"] and "tool choice requires --enable-auto-tool-choice" in c[cid]["detail"]
        )
        # the toy template teaches Hermes JSON (seen through /tokenize), so the fix names hermes
        assert "--enable-auto-tool-choice --tool-call-parser hermes" in c[cid]["fix"], c[cid]["fix"]


def test_chat_fails_auto_calls_but_passes_required(full_run):
    c = _checks(full_run[1], "chat")
    assert c["T1"]["status"] == "fail" and c["T2"]["status"] == "fail"
    assert _structural_pass(c["T3"]), c["T3"]["hops"]
    assert "tool_choice=required works" in c["T1"]["fix"]


def test_over_length_prompt_is_rejected_with_a_context_400(full_run):
    for model in ("hermes", "xml", "chat", "noauto"):
        c = _checks(full_run[1], model)["L2"]
        assert c["status"] == "pass", (model, c["detail"])
        for hop in ("direct", "proxy"):
            assert "prompt > 4096 tokens → 400 context error" in c["hops"][hop]["detail"], c["hops"][hop]


def test_bare_vllm_url_skips_proxy_checks_and_exits_0(toy_stack):
    srv = toy_stack.servers["hermes"]
    proc = _residency("--url", srv.base_url, "--only", "P1,P3,T1,T2,L1,L2", "--json", "--timeout", "120")
    report = json.loads(proc.stdout)
    c = _checks(report, "hermes")
    assert c["P1"]["status"] == "skip" and "bare vLLM" in c["P1"]["detail"]
    assert _structural_pass(c["T1"]) and _structural_pass(c["T2"]), (c["T1"], c["T2"])
    assert set(c["T1"]["hops"]) == {"direct"}
    assert "max_model_len=4096" in c["L1"]["detail"]
    assert report["ok"] is True and proc.returncode == 0
