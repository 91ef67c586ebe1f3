"""Errors the CLI turns into one clear line and an exit code."""

from __future__ import annotations


class ResidencyError(Exception):
    """A user-facing error: printed as one line, no traceback."""

    exit_code = 1


class SpecError(ResidencyError):
    """Bad input (spec, flags, files): names the field and the fix. Exit code 2."""

    exit_code = 2

    def __init__(self, field: str, problem: str, fix: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        msg = f"{field}: {problem}" if field else problem
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class UnknownModelError(SpecError):
    """A model reference the resolver cannot read; names the missing facts and spec keys."""
