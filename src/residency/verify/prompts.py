"""Request shapes verify sends. Prompts stay close to what small models are trained on:
a weather question answered with get_weather(city), and small talk (toolcalls.md §5: vLLM's own
tests use the same shape with Dallas)."""

from __future__ import annotations

import copy
from typing import Any

WEATHER_PROMPT = "What is the weather in Paris?"
WEATHER_CITY = "paris"
PARALLEL_PROMPT = "What is the weather in Paris and in Rome?"
SMALL_TALK = "Hello, how are you?"
PLAIN_PROMPT = "Reply with OK."
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
    "Get the current weather in a city.",
    {"city": {"type": "string", "description": "The city name"}},
    ["city"],
)
SEARCH_TOOL = _fn(
    "search_web",
    "Search the web and return the top results.",
    {"query": {"type": "string", "description": "Search terms"}},
    ["query"],
)
TOOLS = [WEATHER_TOOL, SEARCH_TOOL]
TOOL_NAMES = {"get_weather", "search_web"}


def _s(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


# 20 tools shaped like a coding/ops agent's: mostly strings, plus an enum, an integer, an array and
# an optional field, the way Hermes / OpenAI Agents SDK tool lists look.
AGENT_TOOLS: list[dict[str, Any]] = [
    _fn("read_file", "Read a text file from the workspace.", {"path": _s("Path of the file")}, ["path"]),
    _fn(
        "write_file",
        "Write text to a file.",
        {
            "path": _s("Path of the file"),
            "content": _s("Text to write"),
            "mode": {"type": "string", "enum": ["overwrite", "append"]},
        },
        ["path", "content"],
    ),
    _fn("list_directory", "List the files in a directory.", {"path": _s("Directory path")}, ["path"]),
    _fn(
        "run_shell",
        "Run a shell command and return its output.",
        {"command": _s("The command line"), "timeout": {"type": "integer", "description": "Seconds"}},
        ["command"],
    ),
    SEARCH_TOOL,
    _fn("fetch_url", "Fetch a web page and return its text.", {"url": _s("The address to fetch")}, ["url"]),
    _fn(
        "send_email",
        "Send an email.",
        {
            "to": {"type": "array", "items": {"type": "string"}, "description": "Recipient addresses"},
            "subject": _s("Subject"),
            "body": _s("Body text"),
        },
        ["to", "subject", "body"],
    ),
    _fn(
        "create_event",
        "Create a calendar event.",
        {"title": _s("Event title"), "date": _s("Date of the event")},
        ["title", "date"],
    ),
    _fn("get_stock_price", "Get the latest price of a stock.", {"symbol": _s("Ticker symbol")}, ["symbol"]),
    WEATHER_TOOL,
    _fn(
        "translate_text",
        "Translate text to another language.",
        {"text": _s("Text"), "language": _s("Target language")},
        ["text", "language"],
    ),
    _fn(
        "calculator",
        "Evaluate an arithmetic expression.",
        {"expression": _s("The expression")},
        ["expression"],
    ),
    _fn("set_timer", "Set a timer.", {"minutes": _s("Number of minutes")}, ["minutes"]),
    _fn(
        "search_files",
        "Search the workspace for a pattern.",
        {"pattern": _s("Regular expression")},
        ["pattern"],
    ),
    _fn(
        "patch_file",
        "Apply a patch to a file.",
        {"path": _s("File path"), "patch": _s("Unified diff")},
        ["path", "patch"],
    ),
    _fn("todo_write", "Update the task list.", {"items": _s("The new task list")}, ["items"]),
    _fn("memory_store", "Store a note in long term memory.", {"note": _s("The note")}, ["note"]),
    _fn("get_time", "Get the local time in a city.", {"city": _s("The city name")}, ["city"]),
    _fn("execute_code", "Execute a Python snippet.", {"code": _s("Python source")}, ["code"]),
    _fn("delegate_task", "Hand a task to a sub-agent.", {"goal": _s("What to do")}, ["goal"]),
]
AGENT_TOOL_NAMES = {t["function"]["name"] for t in AGENT_TOOLS}
AGENT_SYSTEM = "You are a coding agent. Use the tools when they help."


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


ROUND_TRIP_CALL_ID = "call_8f3a2c1d9"
TOOL_RESULT = '{"city": "Paris", "temperature": 18, "condition": "sunny"}'
TOOL_RESULT_WORDS = ("18", "sunny")
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
