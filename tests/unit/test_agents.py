"""Agent clients (issue 12): the requirement table, spec `agents:`, the plan's verdict and window,
hermes/config.yaml + clawrium.sh + agents.md, one master key, verify's A1-A3, stored results."""

from __future__ import annotations

import copy
import json
import stat
import subprocess

import httpx
import pytest
import yaml
from test_render_helpers import two_model_plan, two_model_spec

from residency.agents.clients import CLIENTS, HERMES_DEFAULT_MAX_TOKENS, HERMES_MIN_CONTEXT, hermes_max_tokens
from residency.agents.measured import load_measured, save_measured
from residency.errors import SpecError
from residency.planner.plan import plan_stack
from residency.render.agents import agents_md, clawrium_sh, hermes_config
from residency.render.common import members
from residency.render.stack import render_files
from residency.runtime.keys import recorded_key_file, render_key, stack_master_key
from residency.spec import parse_spec
from residency.verify.checks.agents import a1_context, a2_max_tokens, sent_max_tokens
from residency.verify.client import Hop
from residency.verify.redact import Redactor
from residency.verify.runner import CheckResult, ModelReport, Report
from residency.verify.targets import ModelTarget, Targets

FOUR_B = "Qwen/Qwen3-4B-Instruct-2507"


def stack(mml: int | None = 32768, **agents) -> dict:
    m = {"name": "fast", "model": FOUR_B, "gpu_memory_utilization": 0.3, "max_num_seqs": 2}
    if mml is not None:
        m["max_model_len"] = mml
    d = {"vllm_version": "0.33.0", "device": {"preset": "dgx-spark", "used_gib": 5.0}, "models": [m]}
    if agents:
        d["agents"] = agents
    return d


def plan(d: dict):
    return plan_stack(parse_spec(copy.deepcopy(d)), use_calibration=False)


# ---------------------------------------------------------------- the table


def test_client_table_cites_versions_and_hermes_facts():
    for c in CLIENTS.values():
        assert c.package and c.sources
    h = CLIENTS["hermes"]
    assert h.min_context == HERMES_MIN_CONTEXT == 64_000
    assert h.default_max_tokens == HERMES_DEFAULT_MAX_TOKENS == 65_536
    assert h.streams and not h.sends_temperature and h.max_tokens_configurable
    assert "0.19.0" in h.package
    assert not CLIENTS["clawrium"].max_tokens_configurable  # Clawrium renders no max_tokens
    # output budget: what the window leaves once Hermes may compress (75% below 512K)
    assert hermes_max_tokens(65536) == 16384
    assert hermes_max_tokens(1 << 20) == HERMES_DEFAULT_MAX_TOKENS


# ---------------------------------------------------------------- spec


@pytest.mark.parametrize(
    "agents, field, words",
    [
        ({"clients": ["hermes", "claude"]}, "agents.clients", "unknown client kind 'claude'"),
        ({"roles": {"summarizer": "fast"}}, "agents.roles", "unknown role 'summarizer'"),
        ({"roles": {"compression": "nope"}}, "", "agents.roles.compression names model 'nope'"),
        ({"max_tokens": 0}, "agents.max_tokens", ""),
    ],
)
def test_spec_agents_bad_input_names_the_field(agents, field, words):
    with pytest.raises(SpecError) as e:
        parse_spec(stack(**agents))
    text = str(e.value)
    assert field in text and words in text


# ---------------------------------------------------------------- plan


def test_plan_fails_a_hermes_model_below_the_minimum_and_names_the_fix():
    p = plan(stack(32768, clients=["hermes"]))
    m = p.model("fast")
    assert m.verdict == "fail" and not p.fits
    assert m.error.kind == "agent_context"
    assert "Hermes Agent" in m.error.message and "64,000" in m.error.message and "32,768" in m.error.message
    assert m.error.fix == "set models[0:fast].max_model_len to 65536"
    # without agents the same model is fine
    assert plan(stack(32768)).model("fast").verdict == "ok"


def test_plan_chooses_the_window_every_client_accepts_and_shows_its_cost():
    p = plan(stack(None, clients=["hermes", "clawrium"]))
    m = p.model("fast")
    assert m.verdict == "ok" and m.max_model_len == 65536  # not vLLM's default 262144
    notes = " | ".join(m.notes)
    assert "max_model_len 65536: planned for the agents" in notes and "262144" in notes
    assert "65,536-token sequence holds" in notes and "GiB of KV cache" in notes
    assert "Hermes max_tokens 16,384" in notes


def test_plan_rejects_max_tokens_over_the_window():
    m = plan(stack(65536, clients=["hermes"], max_tokens=70000)).model("fast")
    assert m.error.kind == "agent_context" and "agents.max_tokens" in m.error.fix


# ---------------------------------------------------------------- render


def _agent_spec(**agents):
    s = two_model_spec()
    s.agents = type(s).model_fields["agents"].annotation.__args__[0](**agents)  # AgentsSpec
    return s


@pytest.fixture
def agent_render(tmp_path):
    spec = _agent_spec(
        clients=["hermes", "clawrium"], roles={"primary": "qwen3-next", "compression": "qwen3-4b"}
    )
    plan = two_model_plan()
    return spec, plan, render_files(spec, plan, tmp_path)


def test_hermes_config_is_one_paste_ready_document(agent_render):
    spec, plan, files = agent_render
    text = files["hermes/config.yaml"].content
    docs = list(yaml.safe_load_all(text))
    assert len(docs) == 1
    cfg = docs[0]
    model = cfg["model"]
    assert model["provider"] == "custom" and model["default"] == "qwen3-next"
    assert model["base_url"] == "http://localhost:4000/v1" and model["api_mode"] == "chat_completions"
    assert model["api_key"] == "${LITELLM_MASTER_KEY}"
    assert model["context_length"] == 131072
    assert model["max_tokens"] == hermes_max_tokens(32768)  # the smallest window any role can switch to
    cp = cfg["custom_providers"][0]
    assert cp["key_env"] == "LITELLM_MASTER_KEY"
    assert cp["models"] == {"qwen3-next": {"context_length": 131072}, "qwen3-4b": {"context_length": 32768}}
    aux = cfg["auxiliary"]["compression"]
    assert aux["model"] == "qwen3-4b" and aux["context_length"] == 32768 and aux["provider"] == "custom"
    key = files[".env"].content.split("=", 1)[1].strip()
    assert all(key not in f.content for rel, f in files.items() if rel != ".env")


def test_clawrium_script_registers_every_model_key_on_stdin(agent_render, tmp_path):
    _, _, files = agent_render
    sh = files["clawrium.sh"]
    assert sh.mode == 0o755
    assert "--type litellm --litellm-url http://localhost:4000" in sh.content
    assert "provider residency-qwen3-next qwen3-next 131072" in sh.content
    assert "provider residency-qwen3-4b qwen3-4b 32768" in sh.content
    assert "--api-key-stdin" in sh.content and "--api-key " not in sh.content
    assert '--agent "$agent" --role compression' in sh.content
    p = tmp_path / "c.sh"
    p.write_text(sh.content)
    assert subprocess.run(["sh", "-n", str(p)]).returncode == 0


def test_agents_md_sdk_snippets_and_measured_results(agent_render):
    spec, plan, files = agent_render
    md = files["agents.md"].content
    assert "OpenAIChatCompletionsModel" in md and "set_tracing_disabled(True)" in md
    assert "Not measured yet" in md and "hermes/config.yaml" in md and "clawrium.sh" in md
    measured = {"at": "now", "models": {"qwen3-next": {"T2": {"status": "fail"}, "A1": {"status": "pass"}}}}
    md2 = agents_md(spec, members(spec, plan), measured=measured)
    row = next(ln for ln in md2.splitlines() if ln.startswith("| `qwen3-next` | not run"))
    assert "| fail | pass |" in row
    assert "| `qwen3-4b` | not run | not run" in md2


def test_no_agents_section_renders_no_client_files(tmp_path):
    files = render_files(two_model_spec(), two_model_plan(), tmp_path)
    assert "hermes/config.yaml" not in files and "clawrium.sh" not in files and "agents.md" in files


def test_clawrium_only_role_outside_its_list_is_commented():
    spec = _agent_spec(clients=["clawrium"], roles={"memory_query_rewrite": "qwen3-4b"})
    text = clawrium_sh(spec, members(spec, two_model_plan()))
    assert "# memory_query_rewrite -> qwen3-4b: not a role Clawrium attaches" in text
    assert hermes_config(spec, members(spec, two_model_plan()))["auxiliary"]["memory_query_rewrite"]


# ---------------------------------------------------------------- one key


def test_render_and_up_share_one_key(tmp_path):
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    (out / ".env").write_text("LITELLM_MASTER_KEY=sk-rendered\n")
    (out / ".env").chmod(0o600)
    # nothing recorded yet: render keeps out/.env's key; after it is recorded, up takes that file
    assert render_key(state, out, "LITELLM_MASTER_KEY") == "sk-rendered"
    from residency.runtime.keys import record_key_file

    record_key_file(state, out / ".env")
    key, where = stack_master_key(state, "LITELLM_MASTER_KEY")
    assert key == "sk-rendered" and where == (out / ".env").resolve()
    assert not (state / ".env").exists()  # no second key
    # a render into another folder reuses it
    assert render_key(state, tmp_path / "other", "LITELLM_MASTER_KEY") == "sk-rendered"
    # --env-file overrides and is recorded
    other = tmp_path / "x.env"
    other.write_text("LITELLM_MASTER_KEY=sk-other\n")
    assert stack_master_key(state, "LITELLM_MASTER_KEY", other)[0] == "sk-other"
    assert recorded_key_file(state) == other.resolve()


def test_up_without_render_creates_its_own_key_once(tmp_path):
    key, where = stack_master_key(tmp_path / "st", "LITELLM_MASTER_KEY")
    assert where == (tmp_path / "st" / ".env").resolve()
    assert stat.S_IMODE(where.stat().st_mode) == 0o600
    assert stack_master_key(tmp_path / "st", "LITELLM_MASTER_KEY")[0] == key
    # a render afterwards writes the same key into its folder
    assert render_key(tmp_path / "st", tmp_path / "out", "LITELLM_MASTER_KEY") == key


def test_env_file_without_the_key_is_a_spec_error(tmp_path):
    bad = tmp_path / "bad.env"
    bad.write_text("OTHER=1\n")
    with pytest.raises(SpecError, match="--env-file"):
        stack_master_key(tmp_path / "st", "LITELLM_MASTER_KEY", bad)


# ---------------------------------------------------------------- stored verify results


def test_measured_round_trip_and_hostile_files(tmp_path):
    rep = Report([ModelReport("m", [CheckResult("A1", "t", True, "pass", "ok")])])
    save_measured(tmp_path, rep)
    got = load_measured(tmp_path)
    assert got["models"] == {"m": {"A1": {"status": "pass", "detail": "ok"}}}
    (tmp_path / "verify.json").write_text(
        json.dumps({"schema": 1, "models": {"m": {"../x": {"status": "pass"}}}})
    )
    assert load_measured(tmp_path)["models"] == {"m": {}}
    (tmp_path / "verify.json").write_text("[1, 2]")
    assert load_measured(tmp_path) is None


# ---------------------------------------------------------------- verify A1/A2


def _ctx(window: int, kinds=("hermes",), hop=None):
    from residency.verify.checks import ModelCtx

    t = Targets(models=[ModelTarget("m")], agent_kinds=list(kinds))
    info = [{"model_name": "m", "model_info": {"max_input_tokens": window}}]
    return ModelCtx(t.models[0], t, {"proxy": hop} if hop else {}, {}, Redactor(), 5, {"model_info": info})


def test_a1_fails_below_hermes_minimum_naming_the_spec_key():
    o = a1_context(_ctx(32768))
    assert o.status == "fail" and "32,768" in o.detail and "64,000" in o.detail
    assert "models[m].max_model_len" in o.fix
    assert a1_context(_ctx(65536)).status == "pass"
    assert a1_context(_ctx(65536, kinds=())).status == "skip"


def test_a2_sends_each_clients_max_tokens(monkeypatch):
    seen: list[int] = []

    # A stand-in for vLLM's 400 on max_tokens > max_model_len (vllm/renderers/params.py:258@0.32.0):
    # the real server is exercised in tests/e2e/test_agents_e2e.py.
    def handler(request: httpx.Request) -> httpx.Response:
        mt = json.loads(request.content)["max_tokens"]
        seen.append(mt)
        if mt > 32768:
            return httpx.Response(
                400,
                json={"error": {"message": f"max_tokens={mt} cannot be greater than max_model_len=32768"}},
            )
        return httpx.Response(
            200, text='data: {"choices": []}\n\n', headers={"content-type": "text/event-stream"}
        )

    hop = Hop(
        "proxy",
        "http://127.0.0.1:1/v1",
        "m",
        None,
        5,
        Redactor(),
        httpx.Client(transport=httpx.MockTransport(handler)),
    )
    ctx = _ctx(32768, kinds=("hermes",), hop=hop)
    assert sent_max_tokens(ctx, CLIENTS["hermes"]) == hermes_max_tokens(32768)
    assert a2_max_tokens(ctx, hop).status == "pass"
    ctx = _ctx(32768, kinds=("clawrium",), hop=hop)
    o = a2_max_tokens(ctx, hop)
    assert o.status == "fail" and "65536" in o.detail and "models[m].max_model_len" in o.fix
    assert seen == [hermes_max_tokens(32768), 65536]


def test_memory_fix_never_proposes_a_window_the_clients_refuse():
    # 0.12 of a Spark holds ~35K tokens of the 4B's KV: vLLM's max_seq_len error; the usual fix
    # "lower max_model_len to 34816" would load a model Hermes refuses
    d = stack(65536, clients=["hermes"])
    d["models"][0]["gpu_memory_utilization"] = 0.12
    m = plan(d).model("fast")
    assert m.error.kind == "max_seq_len"
    assert "lower max_model_len" not in m.error.fix
    assert m.error.fix.startswith("raise gpu_memory_utilization to") and "64,000" in m.error.fix
    d.pop("agents")
    assert "lower max_model_len to" in plan(d).model("fast").error.fix
