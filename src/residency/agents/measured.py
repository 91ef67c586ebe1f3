"""verify's results, kept beside up's state (`.residency/<spec stem>/verify.json`) so render's
agents.md shows what was measured per model instead of what the spec intends."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from residency.fsutil import write_file

FILE = "verify.json"
SCHEMA = 1
_STATUSES = {"pass", "warn", "fail", "skip"}
_ID = re.compile(r"^[A-Z][0-9]{1,2}$")
MAX_BYTES = 1 << 20  # a results file is a few KiB; refuse anything that is not one


def save_measured(state_dir: Path, report: Any) -> Path:
    """Store a verify Report (statuses and one-line details per model and check)."""
    data = {
        "schema": SCHEMA,
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "models": {
            m.name: {c.id: {"status": c.status, "detail": c.detail[:200]} for c in m.checks}
            for m in report.models
        },
    }
    path = Path(state_dir) / FILE
    write_file(path, json.dumps(data, indent=1) + "\n", 0o644)
    return path


def load_measured(state_dir: Path) -> dict[str, Any] | None:
    """The stored results, or None when absent or not a results file (never trusted blindly)."""
    path = Path(state_dir) / FILE
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("models"), dict):
        return None
    models: dict[str, dict[str, dict[str, str]]] = {}
    for name, checks in data["models"].items():
        if not isinstance(name, str) or not isinstance(checks, dict):
            continue
        models[name] = {
            cid: {"status": c["status"], "detail": str(c.get("detail", ""))[:200]}
            for cid, c in checks.items()
            if isinstance(cid, str)
            and _ID.match(cid)
            and isinstance(c, dict)
            and c.get("status") in _STATUSES
        }
    return {"at": str(data.get("at", "?"))[:40], "models": models}
