"""Every version branch cites a row of docs/vllm-versions.md, and every cited row exists there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITE = re.compile(r"\[(V[\w.]+-[\w.-]+)\]")
ROW = re.compile(r"^\| (V[\w.]+-[\w.-]+|ALL-[\w.-]+) \|", re.M)


def _rows() -> set[str]:
    return set(ROW.findall((ROOT / "docs" / "vllm-versions.md").read_text()))


def test_cited_rows_exist():
    rows = _rows()
    cited = {}
    for p in (ROOT / "src" / "residency" / "memory").glob("*.py"):
        for rid in CITE.findall(p.read_text()):
            cited.setdefault(rid, p.name)
    missing = {r: f for r, f in cited.items() if r not in rows}
    assert not missing, f"rows cited but absent from docs/vllm-versions.md: {missing}"
    assert len(cited) >= 30  # versions.py cites a row per field


def test_every_rule_field_cites_a_row():
    """A field cites its row on its own line or in the comment lines right above it."""
    src = (ROOT / "src" / "residency" / "memory" / "versions.py").read_text()
    body = src[src.index("class VersionRules") : src.index("def SAMPLER_BYTES")].splitlines()
    uncited = []
    for n, ln in enumerate(body):
        m = re.match(r"    (\w+): ", ln)
        if not m or m.group(1) in ("version", "key"):
            continue
        block = [ln]
        j = n - 1
        while j >= 0 and body[j].strip().startswith("#"):
            block.append(body[j])
            j -= 1
        if not any(CITE.search(b) for b in block):
            uncited.append(m.group(1))
    assert not uncited, f"VersionRules fields without a [row] citation: {uncited}"
    assert "(assumed)" not in src
