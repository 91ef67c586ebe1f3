"""Request shapes verify sends. Prompts stay close to what small models are trained on:
a weather question answered with get_weather(city), and small talk (toolcalls.md §5: vLLM's own
tests use the same shape with Dallas)."""

from __future__ import annotations

import copy
from typing import Any

WEATHER_PROMPT = "What is the weather in Paris?"
WEATHER_CITY = "paris"
PARALLEL_PROMPT = "What is the weather in Paris and in London?"
SMALL_TALK = "Hi! How are you today?"
PLAIN_PROMPT = "Hello! Reply with the word OK."
MATH_PROMPT = "What is 17 + 25? Answer with the number only."
JSON_PROMPT = "What is the weather in Paris? Answer as JSON with the city and the temperature in Celsius."


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


WEATHER_TOOL = _fn(
    "get_weather",
    "Get the current weather for a city.",
    {"city": {"type": "string", "description": "The city name, e.g. Paris"}},
    ["city"],
)
SEARCH_TOOL = _fn(
    "web_search",
    "Search the web and return the top results.",
    {"query": {"type": "string", "description": "What to search for"}},
    ["query"],
)
TOOLS = [WEATHER_TOOL, SEARCH_TOOL]
TOOL_NAMES = {"get_weather", "web_search"}

# About 20 tools shaped like a coding/ops agent's (nested objects, arrays, enums, optional fields).
_S = {"type": "string"}
AGENT_TOOLS: list[dict[str, Any]] = [
    WEATHER_TOOL,
    SEARCH_TOOL,
    _fn("read_file", "Read a text file from the workspace and return its contents.", {"path": _S}, ["path"]),
    _fn(
        "write_file",
        "Write text to a file in the workspace, creating parent directories when needed.",
        {"path": _S, "content": _S, "mode": {"type": "string", "enum": ["overwrite", "append"]}},
        ["path", "content"],
    ),
    _fn(
        "list_dir",
        "List the entries of a directory.",
        {"path": _S, "recursive": {"type": "boolean"}},
        ["path"],
    ),
    _fn(
        "run_shell",
        "Run a shell command in the sandbox and return stdout, stderr and the exit code.",
        {"command": _S, "timeout_s": {"type": "integer", "minimum": 1}, "env": {"type": "object"}},
        ["command"],
    ),
    _fn(
        "search_code",
        "Search the repository for a regular expression.",
        {"pattern": _S, "globs": {"type": "array", "items": _S}, "max_results": {"type": "integer"}},
        ["pattern"],
    ),
    _fn(
        "apply_patch",
        "Apply a unified diff to the workspace.",
        {"patch": _S, "dry_run": {"type": "boolean"}},
        ["patch"],
    ),
    _fn(
        "create_calendar_event",
        "Create an event in the user's calendar.",
        {
            "title": _S,
            "start": {"type": "string", "description": "ISO 8601 start time"},
            "duration_minutes": {"type": "integer"},
            "attendees": {
                "type": "array",
                "items": {"type": "object", "properties": {"email": _S, "optional": {"type": "boolean"}}},
            },
        },
        ["title", "start"],
    ),
    _fn(
        "send_email",
        "Send an email.",
        {"to": {"type": "array", "items": _S}, "subject": _S, "body": _S},
        ["to"],
    ),
    _fn("get_stock_price", "Get the latest price for a ticker symbol.", {"ticker": _S}, ["ticker"]),
    _fn(
        "convert_currency",
        "Convert an amount between currencies.",
        {"amount": {"type": "number"}, "from": _S, "to": _S},
        ["amount", "from", "to"],
    ),
    _fn("translate", "Translate text.", {"text": _S, "target_language": _S}, ["text", "target_language"]),
    _fn(
        "http_request",
        "Make an HTTP request.",
        {
            "method": {"type": "string", "enum": ["GET", "POST", "PUT", "DELETE"]},
            "url": _S,
            "headers": {"type": "object", "additionalProperties": _S},
            "body": _S,
        },
        ["method", "url"],
    ),
    _fn("sql_query", "Run a read-only SQL query.", {"query": _S, "database": _S}, ["query"]),
    _fn(
        "create_ticket",
        "Open an issue in the tracker.",
        {"title": _S, "body": _S, "labels": {"type": "array", "items": _S}},
        ["title"],
    ),
    _fn("get_time", "Get the current time in a time zone.", {"timezone": _S}, ["timezone"]),
    _fn("set_reminder", "Set a reminder.", {"text": _S, "at": _S}, ["text", "at"]),
    _fn(
        "summarize_url",
        "Fetch a web page and summarize it.",
        {"url": _S, "max_words": {"type": "integer"}},
        ["url"],
    ),
    _fn(
        "plot_chart",
        "Plot a chart from data points.",
        {
            "kind": {"type": "string", "enum": ["line", "bar", "scatter"]},
            "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        },
        ["kind", "points"],
    ),
]
AGENT_TOOL_NAMES = {t["function"]["name"] for t in AGENT_TOOLS}
AGENT_SYSTEM = (
    "You are a helpful assistant with access to tools. When a tool can answer the question, call it "
    "instead of guessing."
)


def strict_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-Agents-SDK style: strict: true, additionalProperties: false, every property required."""
    out = copy.deepcopy(tools)
    for t in out:
        fn = t["function"]
        fn["strict"] = True
        params = fn["parameters"]
        _close(params)
    return out


def _close(schema: dict[str, Any]) -> None:
    if schema.get("type") == "object" and "properties" in schema:
        schema["additionalProperties"] = False
        schema["required"] = list(schema["properties"])
        for sub in schema["properties"].values():
            _close(sub)
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        _close(schema["items"])


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


ROUND_TRIP_CALL_ID = "chatcmpl-tool-8f3a2c1d9e7b4a60"
TOOL_RESULT = '{"city": "Paris", "temperature_c": 21, "condition": "sunny"}'
ROUND_TRIP_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": WEATHER_PROMPT},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": ROUND_TRIP_CALL_ID,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": ROUND_TRIP_CALL_ID, "content": TOOL_RESULT},
]

JSON_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "integer"}},
    "required": ["city", "temperature_c"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "weather", "schema": JSON_SCHEMA, "strict": True},
}
