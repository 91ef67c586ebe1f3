"""Proof that the test stack is real: vLLM (CPU build) + LiteLLM + toy models behave as upstream does.

Run alone with ``pytest -m e2e tests/e2e/test_stack_proof.py`` after ``scripts/install-test-stack``.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.e2e.stackkit import WEATHER_TOOL

pytestmark = pytest.mark.e2e

PARIS = [{"role": "user", "content": "What is the weather in Paris?"}]
AUTO_ERROR = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'


def _client(toy_stack, name: str, hop: str) -> openai.OpenAI:
    if hop == "direct":
        return openai.OpenAI(base_url=toy_stack.servers[name].base_url, api_key="none", max_retries=0, timeout=120)
    return openai.OpenAI(base_url=toy_stack.proxy.base_url, api_key=toy_stack.proxy.master_key, max_retries=0, timeout=120)


def _error_message(body: dict) -> str:
    # vLLM: {"error": {"message": ...}} (newer) or {"object": "error", "message": ...} (older)
    if isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return str(body.get("message", ""))


def test_no_auto_flags_rejects_tools_with_400(toy_stack):
    srv = toy_stack.servers["noauto"]
    r = httpx.post(
        srv.base_url + "/chat/completions",
        json={"model": "noauto", "messages": PARIS, "tools": [WEATHER_TOOL], "max_tokens": 10},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    assert AUTO_ERROR in _error_message(r.json()), r.text


def test_no_auto_flags_error_through_litellm(toy_stack):
    p = toy_stack.proxy
    r = httpx.post(
        p.base_url + "/chat/completions",
        headers=p.headers,
        json={"model": "noauto", "messages": PARIS, "tools": [WEATHER_TOOL], "max_tokens": 10},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    # LiteLLM wraps vLLM's JSON body into its own message (inner quotes escaped)
    assert AUTO_ERROR.split('" ', 1)[1] in _error_message(r.json()), r.text


@pytest.mark.parametrize("hop", ["direct", "litellm"])
def test_hermes_structured_tool_call(toy_stack, hop):
    client = _client(toy_stack, "hermes", hop)
    resp = client.chat.completions.create(
        model="hermes", messages=PARIS, tools=[WEATHER_TOOL], temperature=0, max_tokens=64
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.tool_calls, choice.message
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert not (choice.message.content or "").strip()


@pytest.mark.parametrize("hop", ["direct", "litellm"])
def test_hermes_structured_tool_call_streaming(toy_stack, hop):
    client = _client(toy_stack, "hermes", hop)
    stream = client.chat.completions.create(
        model="hermes", messages=PARIS, tools=[WEATHER_TOOL], temperature=0, max_tokens=64, stream=True
    )
    names: dict[int, str] = {}
    args: dict[int, str] = {}
    ids: dict[int, str] = {}
    finish = []
    content = ""
    for chunk in stream:
        for ch in chunk.choices:
            if ch.finish_reason:
                finish.append(ch.finish_reason)
            d = ch.delta
            content += d.content or ""
            for tc in d.tool_calls or []:
                if tc.id:
                    ids[tc.index] = tc.id
                if tc.function and tc.function.name:
                    names[tc.index] = names.get(tc.index, "") + tc.function.name
                if tc.function and tc.function.arguments:
                    args[tc.index] = args.get(tc.index, "") + tc.function.arguments
    assert finish == ["tool_calls"], finish
    assert names == {0: "get_weather"}, names
    assert json.loads(args[0]) == {"city": "Paris"}
    assert ids.get(0)
    assert "<tool_call>" not in content


def test_hermes_small_talk_is_text(toy_stack):
    client = _client(toy_stack, "hermes", "direct")
    resp = client.chat.completions.create(
        model="hermes",
        messages=[{"role": "user", "content": "Hello, how are you?"}],
        tools=[WEATHER_TOOL],
        temperature=0,
        max_tokens=64,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert choice.message.content and "<tool_call>" not in choice.message.content


def test_hermes_uses_tool_result(toy_stack):
    client = _client(toy_stack, "hermes", "litellm")
    messages = PARIS + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1",
         "content": json.dumps({"city": "Paris", "temperature": 18, "condition": "sunny"})},
    ]
    resp = client.chat.completions.create(
        model="hermes", messages=messages, tools=[WEATHER_TOOL], temperature=0, max_tokens=64
    )
    choice = resp.choices[0]
    assert not choice.message.tool_calls
    assert "18" in (choice.message.content or ""), choice.message.content


def test_xml_model_under_hermes_parser_leaks_text(toy_stack):
    client = _client(toy_stack, "xml", "direct")
    resp = client.chat.completions.create(
        model="xml", messages=PARIS, tools=[WEATHER_TOOL], temperature=0, max_tokens=64
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    content = choice.message.content or ""
    assert "<function=get_weather>" in content, content
    assert "<parameter=city>" in content and "Paris" in content


def test_chat_model_never_calls_tools(toy_stack):
    client = _client(toy_stack, "chat", "direct")
    resp = client.chat.completions.create(
        model="chat", messages=PARIS, tools=[WEATHER_TOOL], temperature=0, max_tokens=64
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert "<tool_call>" not in (choice.message.content or "")


@pytest.mark.parametrize("hop", ["direct", "litellm"])
def test_required_forces_a_valid_call_even_from_chat_model(toy_stack, hop):
    client = _client(toy_stack, "chat", hop)
    resp = client.chat.completions.create(
        model="chat", messages=PARIS, tools=[WEATHER_TOOL], tool_choice="required", temperature=0, max_tokens=64
    )
    choice = resp.choices[0]
    assert choice.message.tool_calls, choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert isinstance(args.get("city"), str) and args["city"]


def test_named_tool_choice_forces_arguments(toy_stack):
    client = _client(toy_stack, "chat", "direct")
    resp = client.chat.completions.create(
        model="chat",
        messages=PARIS,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=64,
    )
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments).get("city"), str)
