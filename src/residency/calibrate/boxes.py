"""What a box's own logs say about its memory: the device total and the idle free memory.

Unified-memory boxes of one kind disagree (GB10: ~119.6-119.7 or ~121.6-121.7 GiB total; an idle box
offers ~102-115 GiB to vLLM's check, unified-memory.md §1-2), so a preset is a guess. Any log line that
prints them (`Free memory on device (F/T GiB)` of a failed or, >= 0.20, a successful start;
`total_gpu_memory`) teaches this box's figures. Stored beside the calibration file, in
`<calibration stem>-boxes.json`, keyed by the device name plan resolves (the calibration file is per
user and box; one file per box when several boxes of one kind are planned from one machine).

Idle free is the most free memory any start on the box saw: a start with other engines running sees less.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from residency.calibrate.store import _Lock, calibration_path

SCHEMA = 1


class Box(BaseModel):
    device: str = Field(min_length=1, max_length=200)
    total_gib: float = Field(gt=0, le=4096)
    idle_free_gib: float | None = Field(default=None, ge=0, le=4096)
    source: str = Field(default="", max_length=500)
    recorded_at: str = ""


def boxes_path(calibration_file: str | os.PathLike[str] | None = None) -> Path:
    p = calibration_path(calibration_file)
    return p.with_name(p.stem + "-boxes.json")


def load_boxes(calibration_file: str | os.PathLike[str] | None = None) -> dict[str, Box]:
    p = boxes_path(calibration_file)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError):
        return {}  # a broken file must not break planning; the next learn rewrites it
    out: dict[str, Box] = {}
    items = raw.get("boxes", []) if isinstance(raw, dict) else []
    for item in items if isinstance(items, list) else []:
        try:
            b = Box.model_validate(item)
        except ValidationError:
            continue
        if b.idle_free_gib is None or b.idle_free_gib <= b.total_gib:
            out[b.device] = b
    return out


def find_box(device: str, calibration_file: str | os.PathLike[str] | None = None) -> Box | None:
    return load_boxes(calibration_file).get(device)


def learn_box(
    device: str,
    total_gib: float | None,
    free_gib: float | None,
    source: str,
    calibration_file: str | os.PathLike[str] | None = None,
) -> Box | None:
    """Record a logged total (and free at start); keeps the largest free seen as the idle figure."""
    if total_gib is None or not 0 < total_gib <= 4096:
        return None
    if free_gib is not None and not 0 <= free_gib <= total_gib:
        free_gib = None
    p = boxes_path(calibration_file)
    with _Lock(p):
        boxes = load_boxes(calibration_file)
        old = boxes.get(device)
        idle = free_gib
        if old is not None and abs(old.total_gib - total_gib) < 0.05 and old.idle_free_gib is not None:
            idle = max(old.idle_free_gib, free_gib) if free_gib is not None else old.idle_free_gib
        box = Box(
            device=device,
            total_gib=round(total_gib, 3),
            idle_free_gib=None if idle is None else round(idle, 3),
            source=source[:500],
            recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        boxes[device] = box
        _write(p, boxes)
    return box


def _write(p: Path, boxes: dict[str, Box]) -> None:
    from residency.fsutil import write_file

    write_file(p, json.dumps({"schema": SCHEMA, "boxes": [b.model_dump() for b in boxes.values()]}, indent=1))
