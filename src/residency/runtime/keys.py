"""The LiteLLM master key `up` gives the proxy: kept in a 0600 .env, never printed."""

from __future__ import annotations

from pathlib import Path

from residency.errors import SpecError
from residency.render.writer import env_file, new_master_key, read_env_value, write_atomic
from residency.runtime.state import StateStore


def stack_master_key(store: StateStore, key_env: str, env_path: Path | None = None) -> str:
    """The key from --env-file, else the stack's own .env in the state dir (created once, mode 0600)."""
    if env_path is not None:
        key = read_env_value(Path(env_path), key_env)
        if not key:
            raise SpecError(
                "--env-file",
                f"{env_path} has no {key_env}=",
                "point at the .env written by `residency render`",
            )
        return key
    own = store.dir / ".env"
    key = read_env_value(own, key_env)
    if not key:
        key = new_master_key()
        rf = env_file(key_env, key)
        write_atomic(own, rf.content, rf.mode)
    return key
