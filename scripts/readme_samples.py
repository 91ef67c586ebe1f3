#!/usr/bin/env python3
"""Regenerate the README's sample output blocks from the real CLI.

    .venv/bin/python scripts/readme_samples.py          # rewrite README.md's marked blocks
    .venv/bin/python scripts/readme_samples.py --check  # exit 1 and show the drift, change nothing

A sample is a marker comment followed by a ```text block, which this script owns:

    <!-- sample: plan examples/dgx-spark-qwen3.yaml -->
    <!-- sample: plan examples/dgx-spark-qwen3.yaml | set models.heavy.gpu_memory_utilization=0.80 | lines "1. heavy:" "   fix:" -->

The words after "sample:" are `residency`'s arguments (run in-process, stdout and stderr together,
no stored calibration, no colour). Optional steps after "|":
  set PATH=VALUE   edit the spec (the first *.yaml argument) before running: dotted keys, list items by
                   their `name`, the value read as YAML (a copy is used; the example is not touched)
  lines A B        keep only the lines from the first one starting with A through the next starting with B
Without steps the block starts with the command line ("$ residency plan ..."), as a terminal shows it.
tests/unit/test_readme_samples.py fails when a block differs from what the CLI prints now.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKER = re.compile(r"^<!-- sample: (?P<spec>.+?) -->\n```text\n(?P<body>.*?)^```$", re.M | re.S)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Sample:
    spec: str  # the marker's text after "sample:"
    start: int  # offsets of the block body in the README
    end: int
    body: str


def samples(text: str) -> list[Sample]:
    return [Sample(m["spec"], m.start("body"), m.end("body"), m["body"]) for m in MARKER.finditer(text)]


def _set(doc: dict, path: str, value: str) -> None:
    import yaml

    keys = path.split(".")
    node = doc
    for k in keys[:-1]:
        if isinstance(node, list):
            node = next(x for x in node if isinstance(x, dict) and x.get("name") == k)
        else:
            node = node[k]
    node[keys[-1]] = yaml.safe_load(value)


def run_cli(args: list[str]) -> str:
    """`residency ARGS` in this process: what a terminal shows (stdout + stderr), without colour."""
    from residency.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            main(args)
        except SystemExit:
            pass
    return "\n".join(ANSI.sub("", line).rstrip() for line in buf.getvalue().splitlines())


def render(spec: str) -> str:
    """The block body for one marker (ends with a newline)."""
    import yaml

    parts = [p.strip() for p in spec.split(" | ")]
    args = shlex.split(parts[0])
    steps = [shlex.split(p) for p in parts[1:]]
    with tempfile.TemporaryDirectory() as td:
        run_args = list(args)
        edits = [s[1] for s in steps if s[0] == "set"]
        if edits:
            i = next(i for i, a in enumerate(args) if a.endswith((".yaml", ".yml")))
            doc = yaml.safe_load((REPO / args[i]).read_text())
            for e in edits:
                k, _, v = e.partition("=")
                _set(doc, k, v)
            copy = Path(td) / Path(args[i]).name
            copy.write_text(yaml.safe_dump(doc, sort_keys=False))
            run_args[i] = str(copy)
        out = run_cli(run_args).splitlines()
    for s in steps:
        if s[0] == "lines":
            a = next(i for i, x in enumerate(out) if x.startswith(s[1]))
            b = next(i for i, x in enumerate(out) if i > a and x.startswith(s[2]))
            out = out[a : b + 1]
        elif s[0] != "set":
            raise ValueError(f"unknown sample step {s[0]!r} in {spec!r}")
    if not steps:
        out = ["$ residency " + " ".join(args), *out]
    return "\n".join(out) + "\n"


def regenerate(text: str) -> tuple[str, list[tuple[Sample, str]]]:
    """(README with every block regenerated, [(sample, new body) for the blocks that changed])."""
    changed = []
    for s in reversed(samples(text)):  # from the end, so earlier offsets stay valid
        new = render(s.spec)
        if new != s.body:
            changed.append((s, new))
            text = text[: s.start] + new + text[s.end :]
    return text, changed[::-1]


@contextlib.contextmanager
def clean_env():
    """No stored calibration, no live readings and the same cwd whoever runs it."""
    saved = dict(os.environ)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as home:
        os.environ.update(
            HOME=home,
            XDG_CONFIG_HOME=home,
            RESIDENCY_CALIBRATION=str(Path(home) / "none.json"),
            NO_COLOR="1",
        )
        os.environ.pop("FORCE_COLOR", None)
        os.chdir(REPO)
        try:
            yield
        finally:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, str(REPO / "src"))
    text = README.read_text()
    with clean_env():
        new, changed = regenerate(text)
    if not changed:
        print("README samples are up to date")
        return 0
    for s, _ in changed:
        print(f"{'drifted' if '--check' in argv else 'regenerated'}: {s.spec}")
    if "--check" in argv:
        return 1
    README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
