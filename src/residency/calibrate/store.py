"""The calibration file: measured launches keyed by model, vLLM version, device and the settings that matter.

File: JSON, `{"schema": 1, "calibrations": [Calibration, ...]}`. Where it lives, first match wins:
an explicit path (`--file`), the spec's `calibration_file`, `$RESIDENCY_CALIBRATION`,
`~/.config/residency/calibration.json`. Writes are atomic (temp file + rename) under an flock,
so `up` can record several launches at once. One entry per key: a newer launch replaces the older.

`plan` calls `find_calibration(key, path)` with a key built by `key_for_model(...)`, and uses
`Calibration.non_kv_gib` to reproduce the measured available KV exactly.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from residency.calibrate.record import Calibration, CalibrationKey, Launch
from residency.errors import SpecError

if TYPE_CHECKING:
    from residency.spec import DeviceSpec, ModelSpec, StackSpec

SCHEMA = 1
ENV = "RESIDENCY_CALIBRATION"
DEFAULT_PATH = "~/.config/residency/calibration.json"


def calibration_path(path: str | os.PathLike[str] | None = None, spec: StackSpec | None = None) -> Path:
    """Explicit path > spec.calibration_file > $RESIDENCY_CALIBRATION > ~/.config/residency/calibration.json."""
    if path:
        return Path(path).expanduser()
    if spec is not None and spec.calibration_file:
        return Path(spec.calibration_file).expanduser()
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    return Path(DEFAULT_PATH).expanduser()


def base_version(v: str | None) -> str:
    """'0.11.0+582e4e37.nv25.11' -> '0.11.0'; '0.8.3.dev172+g2b' -> '0.8.3'; '0.10.1.1' stays; 'v0.13.0' -> '0.13.0'."""
    if not v:
        return ""
    m = re.match(r"v?(\d+\.\d+(?:\.\d+){0,2})", str(v).strip())
    return m.group(1) if m else str(v).strip()


def _norm_str(v: str | None, default: str | None) -> str | None:
    if v is None:
        return default
    s = str(v).strip().removeprefix("torch.")
    if s.lower() in ("", "none", "null"):
        return default
    return s


def canonical_device(name: str) -> str:
    """A preset id ('dgx-spark', 'gb10') becomes the preset's device name ('NVIDIA GB10'), as plan.device.name says."""
    from residency.memory.device import PRESETS

    n = name.strip()
    p = PRESETS.get(n.lower())
    return p.name if p else n


def device_from_total(total_gib: float | None, tolerance: float = 0.02) -> str | None:
    """The device name a logged total points to, when exactly one preset name has that total."""
    if total_gib is None:
        return None
    from residency.memory.device import PRESETS

    names = {p.name for p in PRESETS.values() if abs(p.total_gib - total_gib) <= tolerance}
    return names.pop() if len(names) == 1 else None


def normalize_key(key: CalibrationKey) -> CalibrationKey:
    """The same launch settings always give the same key (version local suffixes, 'None', 'torch.' dropped)."""
    return CalibrationKey(
        model=key.model.strip().rstrip("/"),
        vllm_version=base_version(key.vllm_version),
        device=canonical_device(key.device),
        tensor_parallel_size=key.tensor_parallel_size or 1,
        dtype=_norm_str(key.dtype, "auto") or "auto",
        kv_cache_dtype=_norm_str(key.kv_cache_dtype, "auto") or "auto",
        quantization=_norm_str(key.quantization, None),
        max_num_batched_tokens=key.max_num_batched_tokens,
        max_num_seqs=key.max_num_seqs,
        enforce_eager=bool(key.enforce_eager),
    )


def device_key(device: DeviceSpec) -> str:
    """The device part of a key: the resolved device name, i.e. what plan.device.name says."""
    from residency.memory.device import resolve_device

    return resolve_device(device).name


def key_for_model(model: ModelSpec, vllm_version: str, device: str) -> CalibrationKey:
    """The key for a spec model: what plan looks up and what calibrate --spec / up record."""
    return normalize_key(
        CalibrationKey(
            model=model.model,
            vllm_version=vllm_version,
            device=device,
            tensor_parallel_size=model.tensor_parallel_size,
            dtype=model.dtype,
            kv_cache_dtype=model.kv_cache_dtype,
            quantization=model.quantization,
            max_num_batched_tokens=model.max_num_batched_tokens,
            max_num_seqs=model.max_num_seqs,
            enforce_eager=model.enforce_eager,
        )
    )


def key_from_launch(
    launch: Launch, device: str, model: str | None = None, vllm_version: str | None = None
) -> CalibrationKey:
    """The key for a launch parsed without a spec: the settings the user gave explicitly.

    Resolved values from the engine config line (e.g. dtype=torch.bfloat16 for 'auto', a
    quantization detected from the checkpoint) are not what a spec says, so only explicit
    settings (non-default args, command line) count; anything else is vLLM's default.
    """
    ex = launch.explicit
    name = model or launch.model
    version = vllm_version or launch.vllm_version
    if not name:
        raise SpecError("--model", "the log does not name the model", "pass --model ID (or --spec SPEC)")
    if not version:
        raise SpecError(
            "vllm_version",
            "the log does not state the vLLM version",
            "pass --vllm-version X or --spec SPEC",
        )
    return normalize_key(
        CalibrationKey(
            model=name,
            vllm_version=version,
            device=device,
            tensor_parallel_size=ex.get("tensor_parallel_size") or 1,
            dtype=ex.get("dtype") or "auto",
            kv_cache_dtype=ex.get("kv_cache_dtype") or "auto",
            quantization=ex.get("quantization"),
            max_num_batched_tokens=ex.get("max_num_batched_tokens"),
            max_num_seqs=ex.get("max_num_seqs"),
            enforce_eager=bool(ex.get("enforce_eager", False)),
        )
    )


# ---------------------------------------------------------------------------------------------


def load(path: str | os.PathLike[str] | None = None) -> list[Calibration]:
    """The stored calibrations; an entry that does not validate or holds an implausible figure (a
    hand-edited or older file) is reported on stderr and skipped, never fatal."""
    p = calibration_path(path)
    if not p.exists():
        return []
    try:
        raw = json.loads(p.read_text() or "{}")
        items = raw.get("calibrations", []) if isinstance(raw, dict) else None
        if not isinstance(items, list):
            raise ValueError("no 'calibrations' list")
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SpecError(str(p), f"not a calibration file ({first})", "fix it or move it away") from None
    out = []
    for i, x in enumerate(items):
        try:
            c = Calibration.model_validate(x)
        except ValidationError as e:
            err = e.errors()[0]
            _skip(p, i, f"{'.'.join(map(str, err['loc']))}: {err['msg']}")
            continue
        bad = implausible(c.launch)
        if bad:
            _skip(p, i, bad)
            continue
        out.append(c)
    return out


_reported: set[tuple[str, int, str]] = set()


def _skip(p: Path, i: int, why: str) -> None:
    if (str(p), i, why) not in _reported:
        _reported.add((str(p), i, why))
        print(
            f"residency: warning: {p}: calibration entry {i} skipped ({why}); rerun calibrate on its log",
            file=sys.stderr,
        )


def implausible(launch: Launch) -> str | None:
    """The first figure of `launch` no real vLLM start logs (non-finite, beyond physical bounds), or None."""
    from residency.calibrate.logparse import plausible_figure

    for k, v in launch.model_dump(exclude={"error", "explicit"}).items():
        if isinstance(v, int | float) and not isinstance(v, bool) and not plausible_figure(k, v):
            return f"launch.{k} = {v!r} is not a figure a real vLLM start logs"
    if launch.error is not None:
        for k, v in launch.error.numbers.items():
            if not math.isfinite(v) or abs(v) > 1e15:
                return f"launch.error.numbers.{k} = {v!r} is not a figure a real vLLM start logs"
    return None


def _write(p: Path, cals: list[Calibration]) -> None:
    from residency.fsutil import write_file

    data = {"schema": SCHEMA, "calibrations": [c.model_dump(mode="json") for c in cals]}
    write_file(p, json.dumps(data, indent=2) + "\n")


class _Lock:
    """An flock on <file>.lock around read-modify-write, so concurrent recorders do not lose entries."""

    def __init__(self, p: Path) -> None:
        self.path = p.with_name(p.name + ".lock")
        self.fd: int | None = None

    def __enter__(self) -> _Lock:
        import fcntl

        from residency.fsutil import open_lock

        self.fd = open_lock(self.path)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def record(
    launch: Launch,
    key: CalibrationKey,
    path: str | os.PathLike[str] | None = None,
    *,
    source: str = "",
    notes: list[str] | None = None,
) -> Calibration:
    """Store `launch` under `key` (replacing an older entry with the same key) and return the entry."""
    p = calibration_path(path)
    bad = implausible(launch)
    if bad:
        raise SpecError(source or str(p), f"{bad}; nothing stored", "check the log it came from")
    key = normalize_key(key)
    cal = Calibration(
        key=key,
        launch=launch,
        source=source,
        recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        notes=list(notes or []),
    )
    with _Lock(p):
        cals = [c for c in load(p) if normalize_key(c.key) != key]
        cals.append(cal)
        _write(p, cals)
    return cal


def find_calibration(key: CalibrationKey, path: str | None = None) -> Calibration | None:
    """The stored calibration whose key matches `key` exactly (after normalization), or None."""
    want = normalize_key(key)
    for c in reversed(load(path)):
        if normalize_key(c.key) == want:
            return c
    return None


def spec_model_for(spec: StackSpec, launch_model: str | None, hint: str | None = None) -> ModelSpec | None:
    """The spec model a launch belongs to: by --model (name or id), else by the model the log names.

    A log may name a local path ('/models/Qwen3-8B', '~/.cache/huggingface/qwen3-8b'): its last
    component is compared, case-insensitively, with the id's last component.
    """
    want = hint or launch_model
    if not want:
        return None
    for m in spec.models:
        if want in (m.name, m.model):
            return m
    tail = want.rstrip("/").rsplit("/", 1)[-1].lower()
    hits = [m for m in spec.models if m.model.rsplit("/", 1)[-1].lower() == tail or m.name.lower() == tail]
    return hits[0] if len(hits) == 1 else None


def record_launch(
    launch: Launch,
    *,
    spec: StackSpec | None = None,
    model: ModelSpec | None = None,
    device: str | None = None,
    source: str = "",
    path: str | os.PathLike[str] | None = None,
    model_id: str | None = None,
) -> Calibration:
    """Record one parsed launch: what `up` calls after each start and `residency calibrate` per launch.

    The key comes from the spec model when given (so plan finds it), else from the launch's explicit
    settings. Missing utilization/total are filled from the spec (or vLLM's default 0.9), so that
    Calibration.non_kv_gib = utilization x total - available KV can be computed; each fill is noted.
    Raises SpecError when the launch cannot calibrate (failed, or no available-KV figure).
    """
    if launch.error is not None:
        raise SpecError(
            "launch", f"the launch failed ({launch.error.kind}); a failed start does not calibrate"
        )
    if launch.kv_cache_gib is None:
        raise SpecError(
            "launch", "the log states no available KV cache memory", "use a log that reached KV sizing"
        )
    notes: list[str] = []
    if spec is not None and model is None:
        model = spec_model_for(spec, launch.model, model_id)
    dev = device
    if dev is None and spec is not None:
        dev_spec = spec.device
        if spec.hosts and model is not None and model.host:
            dev_spec = next(h.device for h in spec.hosts if h.name == model.host)
        if dev_spec is not None:
            dev = device_key(dev_spec)
    if dev is None:
        dev = device_from_total(launch.total_gib)
        if dev is not None:
            notes.append(f"device {dev!r} from the logged total {launch.total_gib} GiB")
    if dev is None:
        raise SpecError(
            "--device", "the log does not say which device it ran on", "pass --device NAME or --spec SPEC"
        )
    version = launch.vllm_version or (spec.vllm_version if spec is not None else None)
    if not launch.vllm_version and version:
        notes.append(f"vLLM version {version} from the spec (the log does not state it)")
    if model is not None:
        key = key_for_model(model, version or "", dev)
        if not version:
            raise SpecError(
                "vllm_version",
                "the log does not state the vLLM version",
                "pass --vllm-version X or --spec SPEC",
            )
    else:
        key = key_from_launch(launch, dev, model=model_id, vllm_version=version)
    ln = launch.model_copy(deep=True)
    if ln.gpu_memory_utilization is None:
        u = model.gpu_memory_utilization if model is not None else None
        ln.gpu_memory_utilization = u if u is not None else 0.9
        notes.append(
            f"gpu_memory_utilization {ln.gpu_memory_utilization:g} from the "
            + ("spec" if u is not None else "vLLM default")
            + " (the log does not state it)"
        )
    if ln.total_gib is None:
        total = _device_total(spec, dev)
        if total is not None:
            ln.total_gib = total
            notes.append(
                f"device total {total:g} GiB from the device preset/spec (the log does not state it)"
            )
        else:
            notes.append("device total unknown: non_kv_gib cannot be computed")
    return record(ln, key, path, source=source, notes=notes)


def _device_total(spec: StackSpec | None, dev: str) -> float | None:
    from residency.memory.device import PRESETS, resolve_device

    if spec is not None and spec.device is not None:
        try:
            d = resolve_device(spec.device)
            if d.name == canonical_device(dev):
                return d.total_gib
        except SpecError:
            pass
    for pid, p in PRESETS.items():
        if canonical_device(dev) == p.name or dev.lower() == pid:
            return p.total_gib
    return None
