"""Server-sent events: framing, then rebuilding a chat-completions stream the way agent SDKs do.

Hand-written on purpose: the openai SDK hides framing errors, repeated ids and reasoning fields,
which are exactly what verify must see (toolcalls.md §1.6, §7 T2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SseFrame:
    data: str
    event: str | None = None


def parse_sse(lines: Iterable[str]) -> tuple[list[SseFrame], list[str]]:
    """Split SSE text lines into frames. Returns (frames, framing problems)."""
    frames: list[SseFrame] = []
    problems: list[str] = []
    data: list[str] = []
    event: str | None = None
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if line == "":
            if data:
                frames.append(SseFrame("\n".join(data), event))
            data, event = [], None
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, sep, value = line.partition(":")
        if not sep:
            problems.append(f"line {n} is not an SSE field: {line[:80]!r}")
            continue
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name in ("id", "retry"):
            pass
        else:
            problems.append(f"line {n} has unknown SSE field {name!r}")
    if data:
        frames.append(SseFrame("\n".join(data), event))
    return frames, problems


@dataclass
class StreamedCall:
    index: int
    ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    fragments: list[str] = field(default_factory=list)
    fragment_chunks: list[int] = field(default_factory=list)  # chunk numbers carrying arguments

    @property
    def id(self) -> str | None:
        return self.ids[0] if self.ids else None

    @property
    def name(self) -> str:
        return "".join(self.names)  # what a concatenating client (Hermes) ends up with

    @property
    def arguments(self) -> str:
        return "".join(self.fragments)


@dataclass
class StreamResult:
    frames: int = 0
    chunks: int = 0
    done: bool = False
    roles: list[str] = field(default_factory=list)
    content: str = ""
    content_chunks: int = 0
    reasoning: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    calls: dict[int, StreamedCall] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # framing / JSON / protocol errors
    error: str | None = None  # an in-band {"error": ...} event

    def tool_calls(self) -> list[StreamedCall]:
        return [self.calls[i] for i in sorted(self.calls)]


def reassemble(frames: list[SseFrame], problems: list[str] | None = None) -> StreamResult:
    """Rebuild content, reasoning and tool calls (by index) from chat.completion.chunk frames."""
    r = StreamResult(frames=len(frames), problems=list(problems or []))
    for i, fr in enumerate(frames):
        if fr.data.strip() == "[DONE]":
            if r.done:
                r.problems.append("[DONE] sent twice")
            r.done = True
            continue
        if r.done:
            r.problems.append("data after [DONE]")
        try:
            obj = json.loads(fr.data)
        except ValueError as e:
            r.problems.append(f"event {i + 1} is not JSON ({e.msg}): {fr.data[:80]!r}")
            continue
        if not isinstance(obj, dict):
            r.problems.append(f"event {i + 1} is not a JSON object")
            continue
        if "error" in obj and not obj.get("choices"):
            err = obj["error"]
            r.error = str(err.get("message", err) if isinstance(err, dict) else err)
            continue
        r.chunks += 1
        if obj.get("usage"):
            r.usage = obj["usage"]
        for ch in obj.get("choices") or []:
            if not isinstance(ch, dict):
                r.problems.append(f"event {i + 1}: choice is not an object")
                continue
            delta = ch.get("delta") or {}
            if delta.get("role"):
                r.roles.append(delta["role"])
            if isinstance(delta.get("content"), str) and delta["content"]:
                r.content += delta["content"]
                r.content_chunks += 1
            for key in ("reasoning", "reasoning_content"):
                if isinstance(delta.get(key), str):
                    r.reasoning += delta[key]
                    break
            for tc in delta.get("tool_calls") or []:
                _add_call_delta(r, tc, r.chunks)
            if ch.get("finish_reason"):
                r.finish_reasons.append(ch["finish_reason"])
    return r


def _add_call_delta(r: StreamResult, tc: Any, chunk_no: int) -> None:
    if not isinstance(tc, dict):
        r.problems.append("a tool_calls delta is not an object")
        return
    idx = tc.get("index")
    if not isinstance(idx, int):
        r.problems.append("a tool_calls delta has no integer index")
        idx = len(r.calls) if tc.get("id") else max(r.calls, default=0)
    call = r.calls.setdefault(idx, StreamedCall(idx))
    if tc.get("id"):
        call.ids.append(str(tc["id"]))
    if tc.get("type"):
        call.types.append(str(tc["type"]))
    fn = tc.get("function") or {}
    if fn.get("name"):
        call.names.append(str(fn["name"]))
    args = fn.get("arguments")
    if isinstance(args, str) and args:
        call.fragments.append(args)
        call.fragment_chunks.append(chunk_no)
    elif args is not None and not isinstance(args, str):
        r.problems.append(f"tool call {idx}: arguments delta is {type(args).__name__}, not a string")
