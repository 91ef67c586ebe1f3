"""Every error the CLI can show, one tree, one exit-code table.

    ResidencyError                 a user-facing error: one line on stderr, no traceback (--debug shows it)
    ├── SpecError                  bad input (spec, flags, files): names the field and the fix   exit 2
    │   ├── UnknownModelError      a model reference the resolver cannot read
    │   └── StateFileError         a corrupted or foreign `up` state file
    ├── UnsafePathError            a write target residency refuses (a symlink, not a regular file)   exit 2
    ├── PlanDoesNotFitError        render/up refuse a plan that does not fit                     exit 1
    ├── ChangedFilesError          render would overwrite files changed since the last render    exit 1
    ├── LockedError                another `up`/`down` holds the spec's lock                     exit 1
    ├── UpFailed                   a launch failed: vLLM's own error, its meaning and the fix    exit 1
    └── RequestFailed              an HTTP request of `verify` failed (a check reports it)       exit 1

Anything else is a bug and keeps its traceback. The exit codes (README "Exit codes" lists them, and
a unit test keeps the two in step):
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """The one exit-code table; every command returns one of these."""

    OK = 0  # done; the plan fits; every required check passed; every model ready
    FAILED = 1  # the plan does not fit, a required check failed, a launch failed, a model is not ready
    BAD_INPUT = 2  # bad spec, flag, file or state file: one line naming the field and the fix
    INTERRUPTED = 130  # Ctrl-C


class ResidencyError(Exception):
    """A user-facing error: printed as one line, no traceback."""

    exit_code: int = ExitCode.FAILED


class SpecError(ResidencyError):
    """Bad input (spec, flags, files): names the field and the fix. Exit code 2."""

    exit_code = ExitCode.BAD_INPUT

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


class StateFileError(SpecError):
    """The `up` state file cannot be read (truncated, garbage, wrong types, another version)."""


class UnsafePathError(ResidencyError):
    """A write target residency refuses: a symlink, a non-regular file, a name that is not one component."""

    exit_code = ExitCode.BAD_INPUT


class PlanDoesNotFitError(ResidencyError):
    """`render`/`up` refuse a plan in which some model does not fit."""


class ChangedFilesError(ResidencyError):
    """`render` would overwrite files changed since it wrote them (use --force)."""


class LockedError(ResidencyError):
    """Another `up`/`down` holds this spec's lock."""


class UpFailed(ResidencyError):
    """A launch failed: vLLM's own error text, its meaning and the fix."""


class RequestFailed(ResidencyError):
    """A `verify` HTTP request failed. kind: connect | timeout | http | json | protocol.

    Checks turn it into a failed check with the reason; it reaches the CLI only from discovery."""

    def __init__(self, kind: str, message: str, status: int | None = None, body: Any = None) -> None:
        self.kind = kind
        self.status = status
        self.message = message
        self.body = body
        super().__init__(f"HTTP {status}: {message}" if status else message)
