"""The ONE LiteLLM master key of a stack: render and up use the same, kept in a 0600 .env, never printed.

Where it lives: the `.env` that `render -o DIR` wrote (DIR/.env), else the stack's own .env in
the state dir (`up` without a render creates it once). The state dir records which file holds
the key (`master-key-file`, a path, not the secret), so `up`, `verify` and `status` find the
rendered one, and `render` into a new folder reuses the key `up` already gave the proxy.
"""

from __future__ import annotations

from pathlib import Path

from residency.errors import SpecError
from residency.fsutil import write_file
from residency.render.writer import env_file, new_master_key, read_env_value

POINTER = "master-key-file"


def recorded_key_file(state_dir: Path) -> Path | None:
    """The .env recorded as holding the stack's key, when the record and the file exist."""
    try:
        text = (Path(state_dir) / POINTER).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    p = Path(text)
    return p if text and p.is_absolute() and p.is_file() else None


def record_key_file(state_dir: Path, env_path: Path) -> None:
    write_file(Path(state_dir) / POINTER, f"{Path(env_path).resolve()}\n", 0o644)


def render_key(state_dir: Path, out_dir: Path, key_env: str, rotate: bool = False) -> str:
    """The key `render -o out_dir` writes: out_dir's own, else the stack's recorded one, else new."""
    if rotate:
        return new_master_key()
    key = read_env_value(Path(out_dir) / ".env", key_env)
    rec = recorded_key_file(state_dir)
    if key is None and rec is not None:
        key = read_env_value(rec, key_env)
    if key is None:
        key = read_env_value(Path(state_dir) / ".env", key_env)
    return key or new_master_key()


def stack_master_key(store_dir: Path, key_env: str, env_path: Path | None = None) -> tuple[str, Path]:
    """(key, the file it is in) for `up`: --env-file, else the recorded (rendered) .env, else the
    stack's own .env in the state dir (created once, mode 0600). The file used is recorded."""
    store_dir = Path(store_dir)
    if env_path is not None:
        key = read_env_value(Path(env_path), key_env, own_only=False)  # the user's explicit choice
        if not key:
            raise SpecError(
                "--env-file",
                f"{env_path} has no {key_env}=",
                "point at the .env written by `residency render`",
            )
        record_key_file(store_dir, Path(env_path))
        return key, Path(env_path).resolve()
    rec = recorded_key_file(store_dir)
    key = read_env_value(rec, key_env) if rec is not None else None
    if key and rec is not None:
        return key, rec
    own = store_dir / ".env"
    key = read_env_value(own, key_env)
    if not key:
        key = new_master_key()
        rf = env_file(key_env, key)
        write_file(own, rf.content, rf.mode)
    record_key_file(store_dir, own)
    return key, own.resolve()


def key_file_hint(store_dir: Path) -> Path | None:
    """The file status and verify name as the key's home (None when nothing recorded yet)."""
    rec = recorded_key_file(store_dir)
    if rec is not None:
        return rec
    own = Path(store_dir) / ".env"
    return own if own.is_file() else None
