"""verify's pure parts: the text tool-call classifier, SSE framing and reassembly, redaction,
targets from a spec / URLs, check selection, the report and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from residency.errors import SpecError
from residency.runtime.state import ProcEntry, StackState, StateStore, state_dir
from residency.verify.checks import CHECK_IDS, FAIL, PASS, SKIP, WARN, Check, ModelCtx, Outcome, combine
from residency.verify.classify import (
    classify_text,
    diagnose_text_call,
    missing_flags_error,
    missing_flags_fix,
    parser_for_family,
    parser_from_template,
)
from residency.verify.redact import Redactor, redact
from residency.verify.runner import CheckResult, ModelReport, Report, select_checks
from residency.verify.sse import parse_sse, reassemble
from residency.verify.targets import ModelTarget, Targets, normalize_url, targets_from_spec, targets_from_url

# -- classifier: one sample per format, as the models write it (toolcalls.md §1.2, §7) ----------------

SAMPLES = {
    "hermes_json": (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        "hermes",
    ),
    "qwen3_coder_xml": (
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
        "qwen3_coder",
    ),
    "llama_json": ('{"name": "get_weather", "parameters": {"city": "Paris"}}', "llama3_json"),
    "mistral": ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', "mistral"),
    "harmony": (
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>',
        "openai",
    ),
    "pythonic": ('[get_weather(city="Paris")]', "pythonic"),
}


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_classifier_names_each_format_and_its_parser(key):
    text, parser = SAMPLES[key]
    found = classify_text(text)
    assert found is not None and found.format.key == key
    assert found.format.parser == parser
    assert found.name == "get_weather"


def test_classifier_reads_the_meant_arguments():
    assert classify_text(SAMPLES["qwen3_coder_xml"][0]).arguments == {"city": "Paris"}
    assert classify_text(SAMPLES["hermes_json"][0]).arguments == {"city": "Paris"}
    assert classify_text(SAMPLES["pythonic"][0]).arguments == {"city": "Paris"}
    assert (
        classify_text('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}').format.key
        == "llama_json"
    )


def test_prose_is_not_a_tool_call():
    assert classify_text("It is sunny in Paris today.") is None
    assert classify_text("") is None
    assert classify_text(None) is None


def test_xml_under_hermes_is_a_parser_mismatch_with_qwen3_coder_fix():
    d = diagnose_text_call(SAMPLES["qwen3_coder_xml"][0], "", "hermes")
    assert d.format == "qwen3_coder_xml" and d.parser == "qwen3_coder"
    assert "parser mismatch" in d.fix and "--tool-call-parser qwen3_coder" in d.fix
    assert "instead of `--tool-call-parser hermes`" in d.fix


def test_hermes_text_under_hermes_means_the_parser_failed():
    d = diagnose_text_call(
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par', "", "hermes", "length"
    )
    assert "parser failed on malformed output" in d.fix and "raise max_tokens" in d.fix


def test_qwen3_xml_counts_as_the_same_parser_as_qwen3_coder():
    d = diagnose_text_call(SAMPLES["qwen3_coder_xml"][0], "", "qwen3_xml")
    assert "parser failed" in d.fix


def test_call_inside_reasoning_is_named():
    d = diagnose_text_call("", SAMPLES["hermes_json"][0], "hermes")
    assert "inside the reasoning" in d.detail and "--reasoning-parser" in d.fix


def test_think_tags_and_improvised_json():
    assert "reasoning-parser" in diagnose_text_call("<think>hmm</think>Paris", "", None).fix
    d = diagnose_text_call(
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```', "", "hermes"
    )
    assert d.format == "improvised_json" and "template" in d.fix


def test_missing_flags_400_plain_and_wrapped_by_litellm():
    vllm = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    litellm = 'litellm.BadRequestError: Hosted_vllmException - {"error":{"message":"\\"auto\\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"}}'
    assert missing_flags_error(vllm) and missing_flags_error(litellm)
    assert missing_flags_error('tool_choice="required" requires --tool-call-parser to be set')
    assert not missing_flags_error("This model's maximum context length is 4096 tokens.")


def test_missing_flags_fix_prefers_spec_then_template_then_family():
    tpl = parser_from_template(
        '... within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>'
    )
    assert tpl is not None and tpl.parser == "hermes"
    assert "--tool-call-parser qwen3_coder" in missing_flags_fix("qwen3_coder", "hermes", tpl)
    assert "--tool-call-parser hermes" in missing_flags_fix(None, "llama3_json", tpl)
    assert "--tool-call-parser llama3_json" in missing_flags_fix(None, "llama3_json", None)
    assert "<parser for the family>" in missing_flags_fix(None, None, None)


def test_family_table():
    assert parser_for_family("Qwen/Qwen3-Next-80B-A3B-Instruct-FP8") == "hermes"
    assert parser_for_family("Qwen/Qwen3-Coder-30B-A3B-Instruct") == "qwen3_coder"
    assert parser_for_family("meta-llama/Llama-3.1-8B-Instruct") == "llama3_json"
    assert parser_for_family("openai/gpt-oss-20b") == "openai"
    assert parser_for_family("mistralai/Mistral-7B-Instruct-v0.3") == "mistral"
    assert parser_for_family("toy-xml", None) is None


# -- SSE --------------------------------------------------------------------------------------------


def _chunk(delta: dict, finish: str | None = None) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _lines(*events: str) -> list[str]:
    out: list[str] = []
    for e in events:
        out += [e, ""]
    return out


def test_sse_reassembles_tool_call_by_index():
    lines = _lines(
        ": keep-alive",
        _chunk({"role": "assistant"}),
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather"}}
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        _chunk({}, "tool_calls"),
        'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9}}',
        "data: [DONE]",
    )
    frames, problems = parse_sse(lines)
    r = reassemble(frames, problems)
    assert not r.problems and r.done
    (call,) = r.tool_calls()
    assert call.ids == ["call_1"] and call.names == ["get_weather"]
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert r.finish_reasons == ["tool_calls"] and r.usage["completion_tokens"] == 9
    assert r.roles == ["assistant"]


def test_sse_keeps_reasoning_under_either_name():
    r = reassemble(
        parse_sse(
            _lines(_chunk({"reasoning": "think "}), _chunk({"reasoning_content": "more"}), "data: [DONE]")
        )[0]
    )
    assert r.reasoning == "think more"


def test_sse_reports_broken_json_and_framing():
    frames, problems = parse_sse(['data: {"choices": [', "", "garbage line", ""])
    r = reassemble(frames, problems)
    assert any("not JSON" in p for p in r.problems)
    assert any("not an SSE field" in p for p in r.problems)
    assert not r.done


def test_sse_repeated_names_are_visible():
    lines = _lines(
        _chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "get_weather", "arguments": "{}"}}]}
        ),
        _chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "get_weather", "arguments": "{}"}}]}
        ),
        "data: [DONE]",
    )
    (call,) = reassemble(parse_sse(lines)[0]).tool_calls()
    assert call.name == "get_weatherget_weather" and call.arguments == "{}{}"  # what Hermes would build


def test_sse_error_event_is_captured():
    r = reassemble(parse_sse(_lines('data: {"error": {"message": "upstream died"}}'))[0])
    assert r.error == "upstream died"


# -- redaction ------------------------------------------------------------------------------------------


def test_redactor_hides_known_secrets_and_bearer_tokens():
    red = Redactor(["my-master-key-1"])
    assert red("key my-master-key-1 here") == "key *** here"
    assert "abcdef123456" not in red("Authorization: Bearer abcdef123456")
    assert redact("sk-1234567890abc") == "sk-***"
    assert red(None) == ""


def test_targets_repr_hides_the_key():
    t = targets_from_url("http://127.0.0.1:4000", "secret-key-xyz", ["m"])
    assert "secret-key-xyz" not in repr(t)


# -- targets ------------------------------------------------------------------------------------------


def test_normalize_url_and_bad_urls():
    assert normalize_url("http://h:8000") == "http://h:8000/v1"
    assert normalize_url("http://h:8000/v1/") == "http://h:8000/v1"
    with pytest.raises(SpecError):
        normalize_url("h:8000")
    with pytest.raises(SpecError):
        targets_from_url("http://h:4000", None, ["a"], ["a-no-equals"])


def test_targets_from_spec_with_state_and_env_file(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MY_KEY", raising=False)
    spec = tmp_path / "stack.yaml"
    spec.write_text(
        "device: {total_gib: 80}\nproxy: {port: 4100, master_key_env: MY_KEY}\nmodels:\n"
        "  - {name: a, model: Qwen/Qwen3-4B-Instruct-2507, port: 8001, tool_call_parser: hermes, max_num_seqs: 4}\n"
        "  - {name: b, model: Qwen/Qwen3-Coder-30B-A3B-Instruct}\n"
    )
    # what `up` records (#13.12: b runs on a port `up` chose, not a default, and keeps its direct checks)
    store = StateStore(state_dir(spec))
    st = StackState(spec_path=str(spec), runtime="process")
    cmd = ["vllm", "serve", "Qwen/Qwen3-Coder-30B-A3B-Instruct", "--max-model-len", "4096", "--port", "8002"]
    st.put(ProcEntry(name="b", model="b", port=8002, command=cmd, state="ready"))
    st.put(ProcEntry(name="litellm", kind="proxy", port=4200, state="ready"))
    store.save(st)
    (store.dir / ".env").write_text("MY_KEY=from-env-file\n")
    t = targets_from_spec(spec)
    assert t.proxy_url == "http://127.0.0.1:4200/v1" and t.key == "from-env-file"
    a, b = t.models
    assert a.backend.base_url == "http://127.0.0.1:8001/v1" and a.backend.tool_call_parser == "hermes"
    assert a.backend.max_num_seqs == 4 and a.backend.known_config
    assert b.backend.base_url == "http://127.0.0.1:8002/v1" and b.backend.max_model_len == 4096
    with pytest.raises(SpecError):
        targets_from_spec(spec, models=["nope"])


def test_targets_from_spec_without_state_or_port(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LITELLM_MASTER_KEY", "env-key")
    spec = tmp_path / "s.yaml"
    spec.write_text("device: {total_gib: 80}\nmodels:\n  - {name: a, model: Qwen/Qwen3-4B-Instruct-2507}\n")
    t = targets_from_spec(spec)
    assert t.key == "env-key" and t.proxy_url == "http://127.0.0.1:4000/v1"
    assert t.models[0].backend is None and "port unknown" in t.models[0].direct_skip_reason


# -- selection, combination, report, exit codes ------------------------------------------------------


def test_select_checks_only_and_skip():
    assert [c.id for c in select_checks("t1, T2")] == ["T1", "T2"]
    assert "C1" not in [c.id for c in select_checks(None, "C1")]
    assert [c.id for c in select_checks()] == list(CHECK_IDS)
    with pytest.raises(SpecError, match="X9"):
        select_checks("X9")


def _ctx() -> ModelCtx:
    t = Targets(models=[ModelTarget("m")])
    return ModelCtx(t.models[0], t, {}, {}, Redactor(), 5, {})


def test_combine_blames_the_proxy_when_direct_passes():
    chk = Check("T2", "t", True, "hop", lambda *a: None)
    out = combine(
        _ctx(), chk, {"direct": Outcome(PASS, "ok"), "proxy": Outcome(FAIL, "no id", "upgrade LiteLLM")}
    )
    assert out.status == FAIL and out.fix.startswith("proxy fault (direct to vLLM passes)")
    out = combine(
        _ctx(), chk, {"direct": Outcome(FAIL, "xml", "use qwen3_coder"), "proxy": Outcome(FAIL, "xml", "x")}
    )
    assert out.fix.startswith("backend fault") and "qwen3_coder" in out.fix
    out = combine(_ctx(), chk, {"direct": Outcome(PASS, "ok"), "proxy": Outcome(WARN, "slow")})
    assert out.status == WARN


def _report(*statuses: tuple[str, bool, str | None]) -> Report:
    checks = [CheckResult(f"T{i}", "t", req, st, "d", fix) for i, (st, req, fix) in enumerate(statuses, 1)]
    return Report([ModelReport("m", checks), ModelReport("n", checks)], "src")


def test_report_ok_only_when_required_checks_do_not_fail():
    assert _report((PASS, True, None), (WARN, True, "w"), (FAIL, False, "f"), (SKIP, True, None)).ok
    assert not _report((PASS, True, None), (FAIL, True, "f")).ok


def test_fixes_are_numbered_and_deduplicated():
    rep = _report((FAIL, True, "do X"), (WARN, False, "do Y"), (FAIL, True, "do X"))
    fixes = rep.fixes()
    assert [f["n"] for f in fixes] == [1, 2]
    assert fixes[0]["fix"] == "do X" and fixes[0]["applies_to"] == ["m T1", "m T3", "n T1", "n T3"]
    assert fixes[1]["severity"] == WARN


def test_json_shape():
    from residency.verify.report import to_json

    j = to_json(_report((FAIL, True, "do X"), (PASS, True, None)))
    assert j["ok"] is False and [m["name"] for m in j["models"]] == ["m", "n"]
    assert set(j["models"][0]["checks"][0]) >= {"id", "title", "status", "detail", "fix"}
    assert j["fixes"][0]["fix"] == "do X"


def test_cli_exit_codes_bad_input(capsys):
    from residency.cli import main

    with pytest.raises(SystemExit) as e:
        main(["verify"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["verify", "--url", "http://127.0.0.1:9/v1", "--only", "Z1"])
    assert e.value.code == 2
    assert "unknown check id" in capsys.readouterr().err


def test_cli_text_report_renders(capsys):
    from rich.console import Console

    from residency.verify.report import render

    con = Console(width=120, record=True)
    render(_report((FAIL, True, "start vLLM with X"), (PASS, True, None)), con)
    out = con.export_text()
    assert "FAIL [1]" in out and "1. start vLLM with X" in out and "NOT OK" in out


def _streamed(chunks: int, content: str):
    from residency.verify.client import Streamed
    from residency.verify.sse import StreamResult

    r = StreamResult(
        frames=chunks + 1, chunks=chunks, done=True, roles=["assistant"], content=content,
        content_chunks=max(1, chunks - 2), finish_reasons=["stop"], usage={"total_tokens": 9},
    )
    return Streamed(r, [0.5 + i * 1e-4 for i in range(chunks + 1)], 200)


@pytest.mark.parametrize(
    "chunks,content,status",
    [(4, "Hi", PASS), (12, "a longer answer of many tokens", WARN)],
)
def test_m2_calls_buffering_only_on_streams_long_enough_to_span_engine_steps(monkeypatch, chunks, content, status):
    """A two-token answer can come out of one engine step and arrive at once (CI saw it warn through the
    proxy); a long stream arriving within 2 ms is buffered somewhere."""
    from residency.verify.checks import chat as chat_checks
    from residency.verify.client import Hop

    monkeypatch.setattr(chat_checks, "stream_chat", lambda hop, body, timeout=None: _streamed(chunks, content))
    out = chat_checks.m2_stream(_ctx(), Hop("proxy", "http://127.0.0.1:9/v1", "m"))
    assert out.status == status, out.detail
