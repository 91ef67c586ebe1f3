"""The LiteLLM master key `up` gives the proxy: kept in a 0600 .env, never printed."""

from __future__ import annotations

from pathlib import Path

from residency.errors import SpecError
from residency.fsutil import write_file
from residency.render.writer import env_file, new_master_key, read_env_value
from residency.runtime.state import StateStore


def stack_master_key(store: StateStore, key_env: str, env_path: Path | None = None) -> str:
    """The key from --env-file, else the stack's own .env in the state dir (created once, mode 0600).

    A state-dir .env residency did not write (symlink, other owner, group/other-readable) is not adopted:
    a new key is generated and writing it refuses a symlinked .env."""
    if env_path is not None:
        key = read_env_value(Path(env_path), key_env, own_only=False)  # the user's explicit choice
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
        write_file(own, rf.content, rf.mode)
    return key
