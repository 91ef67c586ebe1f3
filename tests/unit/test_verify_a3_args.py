"""verify A3 on canned Hermes-shaped streams: the streamed arguments must be a JSON object that fits
the called tool's schema (get_weather requires a string `city`), not just any text."""

from __future__ import annotations

import json

import pytest

from residency.verify.checks import agents as agent_checks
from residency.verify.checks.base import FAIL, PASS, WARN, ModelCtx, schema_problems
from residency.verify.client import Hop, Streamed
from residency.verify.redact import Redactor
from residency.verify.sse import parse_sse, reassemble
from residency.verify.targets import ModelTarget, Targets


def _chunk(delta: dict, finish: str | None = None) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _stream(name: str, *fragments: str) -> Streamed:
    """A well-framed vLLM stream of one tool call whose arguments arrive in `fragments`."""
    events = [
        _chunk({"role": "assistant"}),
        _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name}}]}),
        *(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}) for f in fragments),
        _chunk({}, "tool_calls"),
        "data: [DONE]",
    ]
    lines = [x for e in events for x in (e, "")]
    frames, problems = parse_sse(lines)
    return Streamed(reassemble(frames, problems), [0.1 * i for i in range(len(events))], 200)


def _ctx() -> ModelCtx:
    t = Targets(models=[ModelTarget("m")], agent_kinds=["hermes"])
    return ModelCtx(t.models[0], t, {}, {}, Redactor(), 5, {})


def _a3(monkeypatch, streamed: Streamed):
    monkeypatch.setattr(agent_checks, "stream_chat", lambda hop, body, timeout=None: streamed)
    return agent_checks.a3_hermes_stream(_ctx(), Hop("direct", "http://127.0.0.1:9/v1", "m"))


def test_good_call_passes(monkeypatch):
    out = _a3(monkeypatch, _stream("get_weather", '{"city": ', '"Paris"}'))
    assert out.status == PASS, out.detail


@pytest.mark.parametrize(
    ("name", "fragments", "words"),
    [
        ("get_weather", ("{}",), "required 'city' missing"),
        ("get_weather", ('{"location": "Paris"}',), "required 'city' missing"),
        ("get_weather", ('{"city": 75}',), "'city' is int, the schema says string"),
        ("get_weather", ('{"city": true}',), "'city' is bool, the schema says string"),
        ("search_web", ('{"city": "Paris"}',), "required 'query' missing"),
    ],
)
def test_arguments_off_schema_fail_with_the_reason(monkeypatch, name, fragments, words):
    out = _a3(monkeypatch, _stream(name, *fragments))
    assert out.status == FAIL, out.detail
    assert words in out.detail and f"call 0 {name}" in out.detail
    assert "tool-call-parser" in out.fix and "Hermes sees no tool call" in out.fix


@pytest.mark.parametrize("fragments", [('{"city": "Par',), ('"Paris"',), ("[1, 2]",)])
def test_arguments_not_a_json_object_fail(monkeypatch, fragments):
    out = _a3(monkeypatch, _stream("get_weather", *fragments))
    assert out.status == FAIL and "arguments are" in out.detail, out.detail


def test_an_extra_key_is_not_a_failure(monkeypatch):
    # the schema does not forbid extra keys (no additionalProperties: false): Hermes passes them on
    out = _a3(monkeypatch, _stream("get_weather", '{"city": "Paris", "unit": "celsius"}'))
    assert out.status in (PASS, WARN), out.detail


def test_schema_problems_by_hand():
    params = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "x": {"type": ["number", "null"]}, "s": {"type": "string"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    assert schema_problems({"n": 3, "x": None}, params) == []
    assert schema_problems({"n": 2.5}, params) == ["'n' is float, the schema says integer"]
    assert schema_problems({"n": True}, params) == ["'n' is bool, the schema says integer"]
    assert schema_problems({"x": 1.5, "z": 1}, params) == ["required 'n' missing", "'z' is not a parameter"]
