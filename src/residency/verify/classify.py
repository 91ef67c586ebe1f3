"""Name the format of a tool call that came back as text, and the vLLM flags that would parse it.

Signatures and parser names follow ../shared/reference/toolcalls.md §1.2 and the §7 classifier
table; parser names hold for vLLM 0.10-0.33 (`qwen3_xml` exists from 0.11, `glm47` from 0.13).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    key: str
    label: str
    parser: str | None  # vLLM --tool-call-parser that reads this format; None: no parser fits
    pattern: re.Pattern[str]
    extra: str = ""  # flags or template to add besides the parser
    note: str = ""


def _re(p: str, flags: int = re.S) -> re.Pattern[str]:
    return re.compile(p, flags)


# Ordered: the first match wins, so more specific signatures come first.
FORMATS: tuple[Format, ...] = (
    Format(
        "qwen3_coder_xml",
        "Qwen3-Coder XML (<function=...><parameter=...>)",
        "qwen3_coder",
        _re(r"<tool_call>\s*<function=|<function=[^>\s]+>\s*<parameter="),
        note="`qwen3_xml` reads the same format (vLLM >= 0.11)",
    ),
    Format("glm", "GLM-4.5/4.7 (<tool_call>name<arg_key>)", "glm45", _re(r"<tool_call>[^<{]*<arg_key>")),
    Format("hermes_json", "Hermes JSON in <tool_call>", "hermes", _re(r"<tool_call>\s*\{\s*\"name\"")),
    Format(
        "mistral",
        "Mistral [TOOL_CALLS]",
        "mistral",
        _re(r"\[TOOL_CALLS\]"),
        extra="--tokenizer-mode mistral --config-format mistral --load-format mistral",
    ),
    Format(
        "harmony",
        "gpt-oss harmony (<|channel|>commentary to=functions.x)",
        "openai",
        _re(r"<\|channel\|>|to=functions\.|<\|call\|>"),
        extra="--reasoning-parser openai_gptoss",
    ),
    Format(
        "deepseek",
        "DeepSeek (<｜tool▁calls▁begin｜>)",
        "deepseek_v3",
        _re(r"<｜tool▁calls▁begin｜>|<｜tool▁call▁begin｜>"),
        extra="--chat-template examples/tool_chat_template_deepseekv3.jinja",
        note="DeepSeek-V3.1: `deepseek_v31` with its template",
    ),
    Format(
        "kimi", "Kimi-K2 (<|tool_calls_section_begin|>)", "kimi_k2", _re(r"<\|tool_calls_section_begin\|>")
    ),
    Format(
        "minimax", "MiniMax-M2 (<minimax:tool_call>)", "minimax_m2", _re(r"<minimax:tool_call>|<invoke name=")
    ),
    Format(
        "granite", "Granite (<|tool_call|>)", "granite", _re(r"<\|tool_call\|>"), note="Granite 4: `granite4`"
    ),
    Format(
        "functiongemma",
        "FunctionGemma (<start_function_call>)",
        "functiongemma",
        _re(r"<start_function_call>"),
        extra="and its chat template",
    ),
    Format(
        "llama_json",
        'Llama 3.x JSON ({"name": ..., "parameters": ...})',
        "llama3_json",
        _re(r"<\|python_tag\|>|^\s*\{\s*\"(?:type|name)\"\s*:.*\"parameters\"\s*:", re.S),
        extra="--chat-template examples/tool_chat_template_llama3.1_json.jinja",
    ),
    Format(
        "pythonic",
        'pythonic ([get_weather(city="Paris")])',
        "pythonic",
        _re(r"<\|python_start\|>|^\s*\[\s*[A-Za-z_][\w.]*\(.*\)\s*\]\s*$", re.S),
        extra="--chat-template examples/tool_chat_template_llama3.2_pythonic.jinja",
        note="Llama 4: `llama4_pythonic` with its template",
    ),
    Format(
        "improvised_json",
        "bare or fenced JSON the model improvised",
        None,
        _re(r"^\s*(?:```(?:json)?\s*)?\{\s*\"name\"\s*:.*\"arguments\"\s*:", re.S),
    ),
    Format("think_tags", "<think> tags in content", None, _re(r"</?think>")),
)

# Parsers that read the same text (vLLM 0.12+: one engine parser behind qwen3_coder/qwen3_xml).
_SAME_FORMAT = [
    {"qwen3_coder", "qwen3_xml", "mimo"},
    {"llama3_json", "llama4_json"},
    {"pythonic", "llama4_pythonic"},
]
_SAME_FORMAT += [{"glm45", "glm47"}, {"granite", "granite4"}, {"deepseek_v3", "deepseek_v31", "deepseek_v32"}]


def same_parser_family(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return a == b or any(a in s and b in s for s in _SAME_FORMAT)


@dataclass(frozen=True)
class TextCall:
    format: Format
    evidence: str  # the matched snippet, shortened
    name: str | None = None  # the tool name the model meant, if it could be read
    arguments: dict | None = None


def classify_text(text: str | None) -> TextCall | None:
    """Return the tool-call format found in `text`, or None for plain prose."""
    if not text:
        return None
    for fmt in FORMATS:
        m = fmt.pattern.search(text)
        if m:
            start = max(0, m.start() - 10)
            evidence = text[start : start + 120].replace("\n", "\\n")
            name, args = _extract(fmt.key, text)
            return TextCall(fmt, evidence, name, args)
    return None


def _extract(key: str, text: str) -> tuple[str | None, dict | None]:
    """Best effort: which call the model meant (for the report, not for correctness)."""
    try:
        if key == "qwen3_coder_xml":
            m = re.search(r"<function=([^>\s]+)>", text)
            params = dict(re.findall(r"<parameter=([^>\s]+)>\s*(.*?)\s*</parameter>", text, re.S))
            return (m.group(1) if m else None), params
        if key in ("hermes_json", "llama_json", "improvised_json"):
            m = re.search(r"\{.*\}", text, re.S)
            obj = json.JSONDecoder().raw_decode(m.group(0))[0] if m else None
            if isinstance(obj, dict):
                args = obj.get("arguments", obj.get("parameters"))
                return obj.get("name"), args if isinstance(args, dict) else None
        if key == "pythonic":
            m = re.search(r"\[\s*([A-Za-z_][\w.]*)\((.*?)\)", text, re.S)
            if m:
                args = dict(re.findall(r"(\w+)\s*=\s*['\"]([^'\"]*)['\"]", m.group(2)))
                return m.group(1), args
        if key == "mistral":
            m = re.search(r"\[TOOL_CALLS\]\s*(\w+)", text)
            return (m.group(1) if m else None), None
        if key == "harmony":
            m = re.search(r"to=functions\.(\w+)", text)
            return (m.group(1) if m else None), None
    except ValueError:
        pass
    return None, None


def parser_flags(parser: str, fmt: Format | None = None) -> str:
    flags = f"--enable-auto-tool-choice --tool-call-parser {parser}"
    if fmt and fmt.extra:
        flags += f" {fmt.extra}" if fmt.extra.startswith("--") else f" ({fmt.extra})"
    return flags


@dataclass(frozen=True)
class Diagnosis:
    detail: str
    fix: str
    format: str | None = None  # Format.key
    parser: str | None = None  # the parser advised


def diagnose_text_call(
    content: str | None,
    reasoning: str | None,
    configured_parser: str | None,
    finish_reason: str | None = None,
) -> Diagnosis | None:
    """Explain an auto-mode answer that has no `tool_calls`. None when there is no markup at all."""
    found = classify_text(content)
    where = "content"
    if found is None or found.format.key == "think_tags":
        in_reasoning = classify_text(reasoning)
        if in_reasoning is not None and in_reasoning.format.parser:
            return Diagnosis(
                f"tool call written inside the reasoning ({in_reasoning.format.label}); vLLM parses only content",
                "tool call emitted inside thinking: for Instruct models remove `--reasoning-parser`; "
                "for thinking models disable thinking for tool turns "
                '(`chat_template_kwargs: {"enable_thinking": false}`) or upgrade vLLM',
                in_reasoning.format.key,
            )
    if found is None:
        return None
    fmt = found.format
    meant = f" (meant {found.name}({_short_args(found.arguments)}))" if found.name else ""
    detail = f"tool call returned as text in {where}: {fmt.label}{meant}; tool_calls empty"
    if fmt.key == "think_tags":
        return Diagnosis(
            "<think> tags left in content: reasoning not separated",
            "add the model's `--reasoning-parser` (e.g. `qwen3`, `deepseek_r1`)",
            fmt.key,
        )
    if fmt.parser is None:
        return Diagnosis(
            detail,
            "the chat template does not teach a format the parser reads: check that the template renders "
            "`tools` (POST /tokenize with the tools) and use the model's own template or vLLM's "
            "examples/tool_chat_template_*.jinja",
            fmt.key,
        )
    note = f"; {fmt.note}" if fmt.note else ""
    if configured_parser and same_parser_family(configured_parser, fmt.parser):
        trunc = "; finish_reason was length: raise max_tokens" if finish_reason == "length" else ""
        return Diagnosis(
            detail + f"; the server's parser `{configured_parser}` reads this format but failed",
            "parser failed on malformed output: check the vLLM log for `Error in extracting tool call from "
            f"response`{trunc}; try without speculative decoding; upgrade vLLM",
            fmt.key,
            fmt.parser,
        )
    if configured_parser:
        return Diagnosis(
            detail + f"; server runs `--tool-call-parser {configured_parser}`",
            f"parser mismatch: the model emits {fmt.label}; start vLLM with `{parser_flags(fmt.parser, fmt)}` "
            f"instead of `--tool-call-parser {configured_parser}`{note}",
            fmt.key,
            fmt.parser,
        )
    return Diagnosis(
        detail,
        f"the model emits {fmt.label}: start vLLM with `{parser_flags(fmt.parser, fmt)}`{note} "
        "(if it already runs that parser, check the vLLM log for `Error in extracting tool call`)",
        fmt.key,
        fmt.parser,
    )


def _short_args(args: dict | None) -> str:
    if not args:
        return ""
    s = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return s if len(s) < 60 else s[:57] + "..."


# -- HTTP 400s that name missing flags ---------------------------------------------------------

# vLLM 0.8-0.33 (serving_chat.py / renderers/online_renderer.py); quotes may arrive JSON-escaped.
_AUTO_400 = re.compile(r"auto\\?\"? tool choice requires --enable-auto-tool-choice")
# vLLM 0.32+: "required"/named tool_choice without a parser.
_PARSER_400 = re.compile(r"tool_choice=.{0,80}requires --tool-call-parser")


def missing_flags_error(message: str | None) -> bool:
    return bool(message) and bool(_AUTO_400.search(message) or _PARSER_400.search(message))


# Model family -> parser (toolcalls.md §1.2). Matched against the served name and the model id.
_FAMILY: tuple[tuple[str, str], ...] = (
    (r"qwen3[-_.]?coder|qwen3\.[56]", "qwen3_coder"),
    (r"qwen|qwq|hermes", "hermes"),
    (r"llama[-_]?4", "llama4_pythonic"),
    (r"llama[-_]?3", "llama3_json"),
    (r"mistral|mixtral|devstral|magistral", "mistral"),
    (r"gpt-oss", "openai"),
    (r"deepseek[-_]?v3\.1", "deepseek_v31"),
    (r"deepseek", "deepseek_v3"),
    (r"kimi[-_]?k2", "kimi_k2"),
    (r"glm[-_]?4\.7", "glm47"),
    (r"glm[-_]?4", "glm45"),
    (r"minimax[-_]?m2", "minimax_m2"),
    (r"granite[-_]?4", "granite4"),
    (r"granite", "granite"),
)


def parser_for_family(*names: str | None) -> str | None:
    for name in names:
        if not name:
            continue
        low = name.lower()
        for pat, parser in _FAMILY:
            if re.search(pat, low):
                return parser
    return None


def parser_from_template(rendered: str | None) -> Format | None:
    """Which format the chat template teaches, from a prompt rendered with tools (V-R1)."""
    if not rendered:
        return None
    found = classify_text(rendered)
    if found and found.format.parser:
        return found.format
    if "[AVAILABLE_TOOLS]" in rendered:
        return next(f for f in FORMATS if f.key == "mistral")
    if "Environment: ipython" in rendered:
        return next(f for f in FORMATS if f.key == "llama_json")
    return None


def missing_flags_fix(
    configured_parser: str | None, family_parser: str | None, template: Format | None
) -> str:
    """Fix for the 400 `"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser`."""
    if configured_parser:
        parser, why = configured_parser, "the spec's parser"
    elif template is not None and template.parser:
        parser, why = template.parser, f"the chat template teaches {template.label}"
    elif family_parser:
        parser, why = family_parser, "from the model family"
    else:
        parser, why = "<parser for the family>", "see toolcalls.md §1.2"
    return f"start vLLM with `--enable-auto-tool-choice --tool-call-parser {parser}` ({why})"
