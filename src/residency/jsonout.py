"""The one serializer behind every `--json` output: one schema version, one encoding.

Every top-level object (or each object of a top-level list, for commands that print one object per
launch) carries `schema_version`; pydantic models and dataclasses are dumped in JSON mode. Bump
SCHEMA_VERSION when a field changes meaning or goes away (adding a field does not).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

SCHEMA_VERSION = 1


def _plain(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return obj


def versioned(obj: Any) -> Any:
    """`obj` as plain JSON data with `schema_version` on its top-level object(s)."""
    data = _plain(obj)
    if isinstance(data, dict):
        return {**data, "schema_version": SCHEMA_VERSION}  # last: the documented fields keep their order
    if isinstance(data, list):
        return [versioned(x) if isinstance(_plain(x), dict) else x for x in data]
    return data


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    """The `--json` text of `obj` (see the module docstring)."""
    return json.dumps(versioned(obj), indent=indent)
