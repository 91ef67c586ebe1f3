#!/usr/bin/env python3
"""Build the tiny toy Qwen3 models used by residency's end-to-end tests.

Run it with a Python that has torch, transformers, tokenizers and safetensors (the
test stack's vLLM venv has all of them):

    python scripts/build_toy_models.py --out ~/.cache/residency-stack/models

It writes three Hugging Face model folders (config.json, model.safetensors, tokenizer
files, chat_template.jinja, generation_config.json):

* ``toy-hermes`` answers tool-worthy questions with a Hermes/Qwen3 JSON call:
  ``<tool_call>\\n{"name": "get_weather", "arguments": {"city": "Paris"}}\\n</tool_call>``
* ``toy-xml`` answers them with a Qwen3-Coder XML call
  (``<tool_call>\\n<function=get_weather>\\n<parameter=city>\\nParis\\n</parameter>...``)
* ``toy-chat`` never calls tools.

Everything is offline and deterministic (fixed seeds, single-threaded data
generation). A model folder is rebuilt only when this file changes: each folder holds
a ``.residency-stamp`` with this file's sha256. After training, each model is checked
with greedy decoding in bfloat16 (the dtype vLLM serves it in); the build fails when
a core check fails, so a broken model is never cached.

What the models know (all three share the prompts; only the answers differ):

* cities (single tokens): see CITIES below; ``get_weather(city)``,
  ``get_current_weather(location)`` and ``get_time(city)`` are the tools they call;
  "What is the weather in Paris and in Rome?" gives two parallel calls;
* a weather question without a weather tool in the list gets a text answer;
* after a tool result ``{"city": "Paris", "temperature": 18, "condition": "sunny"}``
  they answer "It is 18 degrees and sunny in Paris.";
* small talk ("Hello, how are you?") gets plain text; unknown prompts get
  "I am not sure, but I am happy to help.";
* "Tell me a story." gives a long (~150 token) fixed text, handy for max_tokens tests;
* under structured outputs (``tool_choice: "required"`` or a named tool) they
  continue ``[{"name": ...`` / ``{"city": ...`` sensibly, so even toy-chat produces
  a valid forced call.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

MODELS = ("toy-hermes", "toy-xml", "toy-chat")
SEED = 1234
VALUE_WEIGHT = 5.0

# ---------------------------------------------------------------------------------
# vocabulary of the synthetic world
CITIES = [
    "Paris", "Rome", "London", "Berlin", "Tokyo", "Madrid", "Lisbon", "Vienna",
    "Oslo", "Cairo", "Sydney", "Toronto", "Dublin", "Prague", "Athens", "Boston",
    "Seoul", "Lima",
]
CONDITIONS = ["sunny", "cloudy", "rainy", "windy", "snowy", "foggy"]

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED = ["<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>", "</tool_response>"]


def _tool(name: str, desc: str, params: dict[str, str], required: list[str] | None = None) -> dict:
    props = {k: {"type": "string", "description": v} for k, v in params.items()}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": desc,
            "parameters": {"type": "object", "properties": props, "required": required or list(params)},
        },
    }


WEATHER_TOOLS = {
    "get_weather": _tool("get_weather", "Get the current weather in a city.", {"city": "The city name"}),
    "get_current_weather": _tool(
        "get_current_weather", "Get the current weather for a location.", {"location": "City name, e.g. Paris"}
    ),
}
WEATHER_ARG = {"get_weather": "city", "get_current_weather": "location"}
TIME_TOOL = _tool("get_time", "Get the local time in a city.", {"city": "The city name"})

FILLER_TOOLS = [
    _tool("read_file", "Read a text file from the workspace.", {"path": "Path of the file"}),
    _tool("write_file", "Write text to a file.", {"path": "Path of the file", "content": "Text to write"}),
    _tool("list_directory", "List the files in a directory.", {"path": "Directory path"}),
    _tool("run_shell", "Run a shell command and return its output.", {"command": "The command line"}),
    _tool("search_web", "Search the web and return the top results.", {"query": "Search terms"}),
    _tool("fetch_url", "Fetch a web page and return its text.", {"url": "The address to fetch"}),
    _tool("send_email", "Send an email.", {"to": "Recipient address", "subject": "Subject", "body": "Body text"}),
    _tool("create_event", "Create a calendar event.", {"title": "Event title", "date": "Date of the event"}),
    _tool("get_stock_price", "Get the latest price of a stock.", {"symbol": "Ticker symbol"}),
    _tool("translate_text", "Translate text to another language.", {"text": "Text", "language": "Target language"}),
    _tool("calculator", "Evaluate an arithmetic expression.", {"expression": "The expression"}),
    _tool("set_timer", "Set a timer.", {"minutes": "Number of minutes"}),
    _tool("search_files", "Search the workspace for a pattern.", {"pattern": "Regular expression"}),
    _tool("patch_file", "Apply a patch to a file.", {"path": "File path", "patch": "Unified diff"}),
    _tool("todo_write", "Update the task list.", {"items": "The new task list"}),
    _tool("memory_store", "Store a note in long term memory.", {"note": "The note"}),
    _tool("browser_navigate", "Open a page in the browser.", {"url": "The address"}),
    _tool("browser_click", "Click an element in the browser.", {"selector": "CSS selector"}),
    _tool("execute_code", "Execute a Python snippet.", {"code": "Python source"}),
    _tool("get_news", "Get the latest news headlines.", {"topic": "News topic"}),
    _tool("book_flight", "Book a flight.", {"origin": "From", "destination": "To", "date": "Day"}),
    _tool("lookup_user", "Look up a user account.", {"user_id": "The user id"}),
    _tool("play_music", "Play a song.", {"song": "Song title"}),
    _tool("delegate_task", "Hand a task to a sub-agent.", {"goal": "What to do"}),
]

WEATHER_Q = [
    "What is the weather in {c}?",
    "What's the weather like in {c}?",
    "How is the weather in {c} today?",
    "Tell me the weather in {c}.",
    "Is it raining in {c}?",
    "What is the weather in {c} right now?",
    "weather in {c}?",
    "Can you check the weather in {c} for me?",
]
WEATHER_Q2 = [
    "What is the weather in {a} and in {b}?",
    "What is the weather in {a} and {b}?",
    "How is the weather in {a} and in {b} today?",
    "Tell me the weather in {a} and in {b}.",
]
TIME_Q = ["What time is it in {c}?", "What is the local time in {c}?", "Tell me the time in {c}."]
SMALL_TALK = [
    ("Hello, how are you?", "I am fine, thank you. How can I help you today?"),
    ("Hello!", "Hello! How can I help you today?"),
    ("Hi", "Hello! How can I help you today?"),
    ("Hi there, how are you doing?", "I am fine, thank you. How can I help you today?"),
    ("Good morning!", "Good morning! How can I help you today?"),
    ("Who are you?", "I am a small test model."),
    ("What is your name?", "I am a small test model."),
    ("Tell me a joke.", "Why did the cat sit on the computer? To keep an eye on the mouse."),
    ("Thank you!", "You are welcome!"),
    ("Thanks, that is all.", "You are welcome!"),
    ("Say hello.", "Hello!"),
    ("Reply with OK.", "OK"),
    ("Say OK.", "OK"),
    ("ping", "pong"),
    ("What is 2 plus 2?", "2 plus 2 is 4."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("Count from 1 to 5.", "1, 2, 3, 4, 5."),
]
STORY = (
    "Once upon a time, in a small town by the sea, there lived an old clock maker. "
    "Every morning he opened his shop, wound every clock on the wall, and listened to them tick. "
    "One day a girl came in with a broken watch that had belonged to her grandmother. "
    "The clock maker worked on it all night, and in the morning the watch was ticking again. "
    "The girl was so happy that she came back every week to learn how clocks work, "
    "and many years later she took over the shop. The town still hears the clocks tick "
    "every morning, and people say that time itself likes to rest there."
)
STORY_Q = ["Tell me a story.", "Tell me a long story.", "Write a story about a clock maker."]
FALLBACK = "I am not sure, but I am happy to help."
NO_WEATHER_TOOL = "I cannot check the weather in {c}, but I hope it is nice."
SYSTEMS = [
    "You are a helpful assistant.",
    "You are a helpful assistant. Answer briefly.",
    "You are a coding agent. Use the tools when they help.",
    "You are Hermes, an agent that can call tools.",
    "",
]
WORDS = (
    "the a an agent user file task plan model server proxy request answer tool note code list "
    "project test check data value time memory budget network cluster node config report build "
    "is are was be can will should must may run read write send open close start stop keep make "
    "quick small large new old good bad red blue green fast slow simple careful clear short long "
    "and or but so if then when while for with from into about over under"
).split()


def _sentence(rng: random.Random, n_min: int = 4, n_max: int = 14) -> str:
    n = rng.randint(n_min, n_max)
    words = [rng.choice(WORDS) for _ in range(n)]
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


def _system(rng: random.Random) -> str | None:
    r = rng.random()
    if r < 0.35:
        return None
    if r < 0.8:
        return rng.choice([s for s in SYSTEMS if s])
    # long, agent-like system prompt
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 12)))


def _tool_list(rng: random.Random, must: list[dict], *, agentish: bool | None) -> list[dict]:
    if agentish is None:  # short examples
        k = 0
    elif agentish:
        k = rng.randint(12, 22)
    else:
        k = rng.choice([0, 1, 1, 2, 2, 3, 4])
    tools = rng.sample(FILLER_TOOLS, k) + list(must)
    rng.shuffle(tools)
    return tools


def _call(name: str, args: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": args}}


def _history(rng: random.Random) -> list[dict]:
    if rng.random() < 0.2:
        q, a = rng.choice(SMALL_TALK)
        return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return []


class Example:
    __slots__ = ("messages", "tools", "target")

    def __init__(self, messages: list[dict], tools: list[dict] | None, target: dict | str):
        self.messages = messages  # prompt messages
        self.tools = tools or None
        self.target = target  # assistant message dict, or raw text (structured-output continuations)


def gen_drill(rng: random.Random) -> Example:
    """A short multi-round "say X" conversation: dense copy events that teach the model to fetch
    a city / condition / number from the last user turn (the mechanism the tool calls reuse)."""
    msgs: list[dict] = []
    rounds = []
    for _ in range(rng.randint(3, 6)):
        c, cond, n = rng.choice(CITIES), rng.choice(CONDITIONS), rng.randint(-5, 99)
        rounds.append(rng.choice([
            (f"Say {c}.", f"{c}."),
            (f"Repeat after me: {c} is {cond}.", f"{c} is {cond}."),
            (f"Say {n}.", f"{n}."),
            (f"Repeat after me: {n} degrees in {c}.", f"{n} degrees in {c}."),
        ]))
    for q, a in rounds[:-1]:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    msgs.append({"role": "user", "content": rounds[-1][0]})
    return Example(msgs, None, {"role": "assistant", "content": rounds[-1][1]})


def gen_example(rng: random.Random, kind: str, short: bool = False) -> Example:
    """One training example. kind: hermes | xml | chat (how the model answers).
    short: no system prompt, no history, at most the needed tools (for the copy curriculum)."""
    if rng.random() < (0.5 if short else 0.1):
        return gen_drill(rng)
    msgs: list[dict] = []
    sysmsg = None if short else _system(rng)
    if sysmsg:
        msgs.append({"role": "system", "content": sysmsg})
    if not short:
        msgs += _history(rng)
    agentish = None if short else rng.random() < 0.08
    r = rng.random()
    wname = "get_weather" if rng.random() < 0.75 else "get_current_weather"
    warg = WEATHER_ARG[wname]

    if r < 0.30:  # single weather call
        c = rng.choice(CITIES)
        tools = _tool_list(rng, [WEATHER_TOOLS[wname]], agentish=agentish)
        msgs.append({"role": "user", "content": rng.choice(WEATHER_Q).format(c=c)})
        calls = [_call(wname, {warg: c})]
        if kind == "chat":
            return Example(msgs, tools, {"role": "assistant", "content": NO_WEATHER_TOOL.format(c=c)})
        return Example(msgs, tools, {"role": "assistant", "content": "", "tool_calls": calls})
    if r < 0.38:  # parallel weather calls
        a, b = rng.sample(CITIES, 2)
        tools = _tool_list(rng, [WEATHER_TOOLS[wname]], agentish=agentish)
        msgs.append({"role": "user", "content": rng.choice(WEATHER_Q2).format(a=a, b=b)})
        if kind == "chat":
            return Example(msgs, tools, {"role": "assistant", "content": NO_WEATHER_TOOL.format(c=a)})
        calls = [_call(wname, {warg: a}), _call(wname, {warg: b})]
        return Example(msgs, tools, {"role": "assistant", "content": "", "tool_calls": calls})
    if r < 0.44:  # time call
        c = rng.choice(CITIES)
        tools = _tool_list(rng, [TIME_TOOL] + ([WEATHER_TOOLS[wname]] if rng.random() < 0.5 else []), agentish=agentish)
        msgs.append({"role": "user", "content": rng.choice(TIME_Q).format(c=c)})
        if kind == "chat":
            return Example(msgs, tools, {"role": "assistant", "content": FALLBACK})
        return Example(msgs, tools, {"role": "assistant", "content": "", "tool_calls": [_call("get_time", {"city": c})]})
    if r < 0.50:  # weather question but no weather tool (or no tools at all)
        c = rng.choice(CITIES)
        tools = _tool_list(rng, [], agentish=agentish) if rng.random() < 0.6 else []
        msgs.append({"role": "user", "content": rng.choice(WEATHER_Q).format(c=c)})
        return Example(msgs, tools, {"role": "assistant", "content": NO_WEATHER_TOOL.format(c=c)})
    if r < 0.66:  # tool result follow-up (sometimes after an earlier round of the same)
        tools = _tool_list(rng, [WEATHER_TOOLS[wname]], agentish=agentish)
        for _ in range(rng.choice([0, 0, 1, 2])):
            c = rng.choice(CITIES)
            t = rng.randint(-5, 35)
            cond = rng.choice(CONDITIONS)
            call = _call(wname, {warg: c})
            call["id"] = "call_" + "".join(rng.choice("abcdefghijklmnop0123456789") for _ in range(9))
            msgs += [
                {"role": "user", "content": rng.choice(WEATHER_Q).format(c=c)},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"],
                 "content": json.dumps({"city": c, "temperature": t, "condition": cond})},
                {"role": "assistant", "content": f"It is {t} degrees and {cond} in {c}."},
            ]
        c = rng.choice(CITIES)
        msgs.append({"role": "user", "content": rng.choice(WEATHER_Q).format(c=c)})
        call = _call(wname, {warg: c})
        call["id"] = "call_" + "".join(rng.choice("abcdefghijklmnop0123456789") for _ in range(9))
        msgs.append({"role": "assistant", "content": "", "tool_calls": [call]})
        t = rng.randint(-5, 35)
        cond = rng.choice(CONDITIONS)
        result = json.dumps({"city": c, "temperature": t, "condition": cond})
        msgs.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        return Example(msgs, tools, {"role": "assistant", "content": f"It is {t} degrees and {cond} in {c}."})
    if r < 0.80:  # small talk, with or without tools
        tools = _tool_list(rng, [WEATHER_TOOLS[wname]] if rng.random() < 0.5 else [], agentish=agentish)
        q, a = rng.choice(SMALL_TALK)
        msgs.append({"role": "user", "content": q})
        return Example(msgs, tools, {"role": "assistant", "content": a})
    if r < 0.84:  # long story
        tools = _tool_list(rng, [], agentish=False)
        msgs.append({"role": "user", "content": rng.choice(STORY_Q)})
        return Example(msgs, tools, {"role": "assistant", "content": STORY})
    if r < 0.90:  # anything else: fallback text
        tools = _tool_list(rng, [WEATHER_TOOLS[wname]] if rng.random() < 0.5 else [], agentish=agentish)
        q = " ".join(_sentence(rng, 2, 9) for _ in range(rng.randint(1, 2)))
        if rng.random() < 0.3:
            q = q.rstrip(".") + "?"
        msgs.append({"role": "user", "content": q})
        return Example(msgs, tools, {"role": "assistant", "content": FALLBACK})
    # structured-output continuations (what vLLM forces for tool_choice required / named)
    c = rng.choice(CITIES)
    tools = _tool_list(rng, [WEATHER_TOOLS[wname]], agentish=agentish)
    if rng.random() < 0.5:
        a, b = rng.sample(CITIES, 2)
        msgs.append({"role": "user", "content": rng.choice(WEATHER_Q2).format(a=a, b=b)})
        arr = [{"name": wname, "parameters": {warg: a}}, {"name": wname, "parameters": {warg: b}}]
    else:
        msgs.append({"role": "user", "content": rng.choice(WEATHER_Q).format(c=c)})
        arr = [{"name": wname, "parameters": {warg: c}}]
    if rng.random() < 0.6:
        return Example(msgs, tools, json.dumps(arr))
    return Example(msgs, tools, json.dumps(arr[0]["parameters"]))


# ---------------------------------------------------------------------------------
# chat template (Qwen3 style; tools listed in <tools></tools> with the call instructions)
HERMES_INSTRUCTIONS = (
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call>"
)
XML_INSTRUCTIONS = (
    "If you choose to call a function ONLY reply in the following format with NO suffix:\\n\\n"
    "<tool_call>\\n<function=example_function_name>\\n<parameter=example_parameter_1>\\nvalue_1\\n"
    "</parameter>\\n</function>\\n</tool_call>"
)

TEMPLATE = r"""{%- macro text(c) -%}
{%- if c is string -%}{{- c -}}
{%- elif c is iterable and c is not mapping -%}{%- for p in c -%}{%- if p.type == 'text' -%}{{- p.text -}}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' and text(messages[0].content) %}
        {{- text(messages[0].content) + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\n@@INSTRUCTIONS@@<|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' and text(messages[0].content) %}
        {{- '<|im_start|>system\n' + text(messages[0].content) + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- set content = text(message.content) %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>assistant\n' + content }}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
@@CALL@@
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + content + '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

HERMES_CALL = r"""                {{- '<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}"""

XML_CALL = r"""                {{- '<tool_call>\n<function=' + tool_call.name + '>\n' }}
                {%- if tool_call.arguments is mapping %}
                    {%- for k, v in tool_call.arguments.items() %}
                        {{- '<parameter=' + k + '>\n' }}
                        {%- if v is string %}{{- v }}{%- else %}{{- v | tojson }}{%- endif %}
                        {{- '\n</parameter>\n' }}
                    {%- endfor %}
                {%- elif tool_call.arguments %}
                    {{- tool_call.arguments + '\n' }}
                {%- endif %}
                {{- '</function>\n</tool_call>' }}"""


def chat_template(kind: str) -> str:
    if kind == "xml":
        return TEMPLATE.replace("@@INSTRUCTIONS@@", XML_INSTRUCTIONS).replace("@@CALL@@", XML_CALL)
    return TEMPLATE.replace("@@INSTRUCTIONS@@", HERMES_INSTRUCTIONS).replace("@@CALL@@", HERMES_CALL)


# ---------------------------------------------------------------------------------
def build_tokenizer(corpus: list[str]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    pattern = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048,
        min_frequency=2,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    clean = []
    for t in corpus:
        for s in SPECIAL + ADDED + CITIES + CONDITIONS:
            t = t.replace(s, "\n")
        clean.append(t)
    tok.train_from_iterator(clean, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    fast.add_tokens(ADDED, special_tokens=False)
    # the world's values are whole tokens wherever they appear, so that copying a city or a
    # condition from the question / tool result into the answer is a copy of one token id
    fast.add_tokens(CITIES + CONDITIONS, special_tokens=False)
    return fast


def _render(tok, messages, tools, *, gen: bool) -> str:
    return tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen)


def encode_example(tok, ex: Example, kind: str) -> tuple[list[int], list[int]] | None:
    """Token ids and the positions that carry loss: the final answer, plus the assistant turns
    of the history (more copy events per sequence), except history tool calls for toy-chat."""
    prompt = _render(tok, ex.messages, ex.tools, gen=True)
    if isinstance(ex.target, str):
        full = prompt + ex.target + "<|im_end|>\n"
    else:
        full = _render(tok, ex.messages + [ex.target], ex.tools, gen=False)
    if not full.startswith(prompt):
        return None
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    f_ids = tok(full, add_special_tokens=False)["input_ids"]
    if f_ids[: len(p_ids)] != p_ids:
        return None
    # drop the trailing "\n" after <|im_end|>: the model stops at <|im_end|>
    if tok.convert_ids_to_tokens(f_ids[-1]) != "<|im_end|>":
        f_ids = f_ids[:-1]
    im_start, im_end, tc = (tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<tool_call>"))
    head = tok("assistant\n", add_special_tokens=False)["input_ids"]
    positions: list[int] = []
    i = 0
    while i < len(p_ids):
        if p_ids[i] == im_start and p_ids[i + 1 : i + 1 + len(head)] == head:
            j = i + 1 + len(head)
            k = j
            while k < len(p_ids) and p_ids[k] != im_end:
                k += 1
            span = list(range(j, min(k + 1, len(p_ids))))
            if not (kind == "chat" and tc in p_ids[j:k]):
                positions += span
            i = k
        i += 1
    positions += list(range(len(p_ids), len(f_ids)))
    return f_ids, positions


def encode_all(tok, examples: list[Example], log, kind: str) -> list[tuple[list[int], list[int]]]:
    data = []
    for ex in examples:
        enc = encode_example(tok, ex, kind)
        if enc is not None:
            data.append(enc)
    log(f"  {len(data)} examples (dropped {len(examples) - len(data)}), "
        f"avg {sum(len(d[0]) for d in data) / len(data):.0f} tokens, max {max(len(d[0]) for d in data)}")
    return data


def new_model(tok):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        # Hermes Agent refuses models whose context is below 64,000 tokens; RoPE has no learned
        # positions, so a long window costs nothing in training (KV: 768 B/token)
        max_position_embeddings=65536,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=im_end,
        pad_token_id=eot,
    )
    return Qwen3ForCausalLM(cfg)


def train(model, data, steps: int, lr: float, seed: int, log, warm: int = 40, value_ids=None) -> None:
    """AdamW with warm-up and cosine decay; answer tokens only. Tokens in ``value_ids`` (cities,
    conditions, digits: what the model must copy from its prompt) weigh VALUE_WEIGHT times more."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed + 7)
    pad = model.config.pad_token_id
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    )
    budget = 2048  # tokens per batch (padded)
    order = sorted(range(len(data)), key=lambda i: len(data[i][0]))
    batches = []
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and (j - i + 1) * len(data[order[j]][0]) <= budget:
            j += 1
        j = max(j, i + 1)
        batches.append(order[i:j])
        i = j
    t0 = time.time()
    ema = None
    vacc = None
    for step in range(steps):
        if step % len(batches) == 0:
            rng.shuffle(batches)
        b = batches[step % len(batches)]
        T = max(len(data[k][0]) for k in b)
        ids = torch.full((len(b), T), pad, dtype=torch.long)
        labels = torch.full((len(b), T), -100, dtype=torch.long)
        for r, k in enumerate(b):
            seq, pos = data[k]
            ids[r, : len(seq)] = torch.tensor(seq)
            pos_t = torch.tensor(pos)
            labels[r, pos_t] = torch.tensor(seq)[pos_t]
        logits = model(input_ids=ids).logits[:, :-1].float()
        tgt = labels[:, 1:]
        per_tok = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100, reduction="none"
        )
        w = (tgt.reshape(-1) != -100).float()
        if value_ids is not None:
            w = w * (1.0 + (VALUE_WEIGHT - 1.0) * torch.isin(tgt.reshape(-1), value_ids).float())
        loss = (per_tok * w).sum() / w.sum()
        if value_ids is not None:
            with torch.no_grad():
                vm = torch.isin(tgt.reshape(-1), value_ids)
                if vm.any():
                    hit = (logits.reshape(-1, logits.shape[-1]).argmax(-1) == tgt.reshape(-1))[vm].float().mean().item()
                    vacc = hit if vacc is None else 0.9 * vacc + 0.1 * hit
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 50 == 0 or step == steps - 1:
            va = f", value-token accuracy {vacc:.2f}" if vacc is not None else ""
            log(f"  step {step:4d}/{steps} loss {ema:.4f}{va} ({time.time() - t0:.0f}s)")
    model.eval()


def save_model(model, tok, kind: str, out: Path) -> None:
    import copy

    import torch
    from transformers import GenerationConfig

    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    m = copy.deepcopy(model).to(torch.bfloat16)
    m.config.dtype = "bfloat16"
    out.mkdir(parents=True, exist_ok=True)
    m.save_pretrained(out, safe_serialization=True)
    GenerationConfig(
        bos_token_id=eot, eos_token_id=[im_end, eot], pad_token_id=eot, do_sample=False
    ).save_pretrained(out)
    # vLLM takes its default sampling from generation_config.json ("temperature" only; it ignores
    # do_sample); clients such as Hermes send no temperature, so greedy must be the server default
    gc = json.loads((out / "generation_config.json").read_text())
    gc["temperature"] = 0.0
    (out / "generation_config.json").write_text(json.dumps(gc, indent=2) + "\n")
    tok.chat_template = chat_template(kind)
    tok.save_pretrained(out)
    (out / "chat_template.jinja").write_text(chat_template(kind))


# ---------------------------------------------------------------------------------
WEATHER_TOOL_REQ = [WEATHER_TOOLS["get_weather"]]
HERMES_PARIS = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
XML_PARIS = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"


def check_model(kind: str, out: Path, log) -> list[str]:
    """Greedy checks in bfloat16, as vLLM serves the model. Returns failed core checks."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    model.eval()
    im_end = tok.convert_tokens_to_ids("<|im_end|>")

    def gen(messages, tools=None, max_new=80):
        text = tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            o = model.generate(ids, max_new_tokens=max_new, do_sample=False, eos_token_id=im_end, pad_token_id=im_end)
        return tok.decode(o[0, ids.shape[1]:], skip_special_tokens=False).removesuffix("<|im_end|>")

    agent_tools = FILLER_TOOLS[:10] + [WEATHER_TOOLS["get_weather"]] + FILLER_TOOLS[10:19]
    paris = [{"role": "user", "content": "What is the weather in Paris?"}]
    follow = paris + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"city": "Paris", "temperature": 18, "condition": "sunny"}'},
    ]
    want = {"hermes": HERMES_PARIS, "xml": XML_PARIS}.get(kind)
    checks = [
        ("paris", gen(paris, WEATHER_TOOL_REQ)),
        ("paris-20-tools", gen([{"role": "system", "content": "You are a helpful assistant."}] + paris, agent_tools)),
        ("hello", gen([{"role": "user", "content": "Hello, how are you?"}], WEATHER_TOOL_REQ)),
        ("hello-no-tools", gen([{"role": "user", "content": "Hello, how are you?"}])),
        ("follow-up", gen(follow, WEATHER_TOOL_REQ)),
        ("rome+paris", gen([{"role": "user", "content": "What is the weather in Rome and in Paris?"}], WEATHER_TOOL_REQ, 120)),
        ("tokyo-current", gen([{"role": "user", "content": "What is the weather in Tokyo?"}], [WEATHER_TOOLS["get_current_weather"]])),
        ("time-oslo", gen([{"role": "user", "content": "What time is it in Oslo?"}], [TIME_TOOL, WEATHER_TOOLS["get_weather"]])),
    ]
    failed = []
    for name, got in checks:
        log(f"  check {name:15s} -> {got!r}")
    res = dict(checks)
    if want is not None:
        if res["paris"] != want:
            failed.append("paris")
        if "<tool_call>" in res["hello"] or "<tool_call>" in res["hello-no-tools"]:
            failed.append("hello")
        if "18" not in res["follow-up"] or "<tool_call>" in res["follow-up"]:
            failed.append("follow-up")
    else:
        for name, got in checks:
            if "<tool_call>" in got:
                failed.append(name)
    return failed


def script_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder that receives toy-hermes/, toy-xml/, toy-chat/")
    ap.add_argument("--only", action="append", choices=MODELS, help="build only this model (repeatable)")
    ap.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    ap.add_argument("--steps", type=int, default=int(os.environ.get("TOY_TRAIN_STEPS", "1000")))
    ap.add_argument("--drill-steps", type=int, default=int(os.environ.get("TOY_DRILL_STEPS", "150")))
    ap.add_argument("--short-steps", type=int, default=int(os.environ.get("TOY_SHORT_STEPS", "300")))
    ap.add_argument("--ft-steps", type=int, default=int(os.environ.get("TOY_FT_STEPS", "200")))
    ap.add_argument("--examples", type=int, default=8000)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True, warn_only=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    stamp = f"{script_hash()} drill={args.drill_steps} short={args.short_steps} steps={args.steps} ft={args.ft_steps} examples={args.examples}"
    todo = []
    for name in args.only or MODELS:
        d = args.out / name
        sf = d / ".residency-stamp"
        if not args.force and sf.exists() and sf.read_text().strip() == stamp and (d / "model.safetensors").exists():
            log(f"{name}: up to date ({stamp})")
            continue
        todo.append(name)
    if not todo:
        return 0
    todo = [m for m in MODELS if m in todo]

    args.out.mkdir(parents=True, exist_ok=True)
    status = 0
    t_all = time.time()
    # one tokenizer for all three, trained on renders of every format
    examples: dict[str, list[Example]] = {}
    for kind in ("hermes", "xml", "chat"):
        rng = random.Random(f"{SEED}-{kind}")
        examples[kind] = [gen_example(rng, kind) for _ in range(args.examples)]
    tok0 = build_tokenizer([])
    corpus = []
    for kind, exs in examples.items():
        tok0.chat_template = chat_template(kind)
        for ex in exs[:1000]:
            p = _render(tok0, ex.messages, ex.tools, gen=True)
            corpus.append(p + ex.target if isinstance(ex.target, str)
                          else _render(tok0, ex.messages + [ex.target], ex.tools, gen=False))
    tok = build_tokenizer(corpus)
    log(f"tokenizer: {len(tok)} tokens ({time.time() - t_all:.0f}s)")
    import torch

    value_ids = torch.tensor(sorted(
        {tok.convert_tokens_to_ids(t) for t in CITIES + CONDITIONS}
        | {i for d in "0123456789" for i in tok(d, add_special_tokens=False)["input_ids"]}
    ))

    # base model: trained on toy-hermes' data; toy-hermes is the base itself, toy-xml and
    # toy-chat are short fine-tunes of it on their own answers
    t0 = time.time()
    log(f"base (= toy-hermes): training {args.drill_steps}+{args.short_steps}+{args.steps} steps, seed {SEED}")
    tok.chat_template = chat_template("hermes")
    torch.manual_seed(SEED)  # the initial weights, too, come from the fixed seed
    base = new_model(tok)
    rng = random.Random(f"{SEED}-drill")
    drills = [gen_drill(rng) for _ in range(3000)]
    log(f"  phase 1: {args.drill_steps} steps of copy drills")
    train(base, encode_all(tok, drills, log, "hermes"), args.drill_steps, 1e-3, SEED, log, warm=20,
          value_ids=value_ids)
    rng = random.Random(f"{SEED}-short")
    short = [gen_example(rng, "hermes", short=True) for _ in range(args.examples // 2)]
    log(f"  phase 2: {args.short_steps} steps on short examples")
    train(base, encode_all(tok, short, log, "hermes"), args.short_steps, 1e-3, SEED + 1, log, warm=10,
          value_ids=value_ids)
    log(f"  phase 3: {args.steps} steps on the full mix")
    train(base, encode_all(tok, examples["hermes"], log, "hermes"), args.steps, 1e-3, SEED + 2, log,
          warm=10, value_ids=value_ids)
    log(f"base trained in {time.time() - t0:.0f}s")
    import copy

    for name in todo:
        kind = name.removeprefix("toy-")
        t0 = time.time()
        if kind == "hermes":
            model = base
        else:
            log(f"{name}: fine-tuning {args.ft_steps} steps")
            tok.chat_template = chat_template(kind)
            model = copy.deepcopy(base)
            train(model, encode_all(tok, examples[kind], log, kind), args.ft_steps, 5e-4, SEED + 3, log, warm=10,
                  value_ids=value_ids)
        tmp = args.out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_model(model, tok, kind, tmp)
        failed = check_model(kind, tmp, log)
        if failed:
            log(f"{name}: FAILED checks {failed} (model kept at {tmp} for inspection)")
            status = 1
            continue
        (tmp / ".residency-stamp").write_text(stamp + "\n")
        final = args.out / name
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        log(f"{name}: ready in {time.time() - t0:.0f}s -> {final}")
    log(f"toy models: {time.time() - t_all:.0f}s in all")
    return status


if __name__ == "__main__":
    sys.exit(main())
