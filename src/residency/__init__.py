"""residency: plan and run several vLLM models on shared GPUs behind one LiteLLM proxy.

The library the `residency` CLI calls; each command parses its input, calls one of these and picks
an output format:

    spec = residency.load_spec("stack.yaml")
    plan = residency.plan_stack(spec)          # the residency math (residency.Plan)
    files = residency.render_files(spec, plan, out_dir)  # compose.yaml, litellm.yaml, .env, k8s/, ...
    report = residency.run_verify(residency.targets_from_spec("stack.yaml"))

Names load lazily (PEP 562), so `import residency` and `residency --help` stay light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "ChangedFilesError": "residency.errors",
    "ExitCode": "residency.errors",
    "Ledger": "residency.status.ledger",
    "LockedError": "residency.errors",
    "Plan": "residency.planner.result",
    "PlanDoesNotFitError": "residency.errors",
    "Report": "residency.verify.runner",
    "RequestFailed": "residency.errors",
    "ResidencyError": "residency.errors",
    "SpecError": "residency.errors",
    "StackSpec": "residency.spec",
    "StackState": "residency.runtime.state",
    "StateFileError": "residency.errors",
    "UpFailed": "residency.errors",
    "build_ledger": "residency.status.ledger",
    "explain_launch": "residency.calibrate.explain",
    "load_spec": "residency.spec",
    "parse_log": "residency.calibrate.logparse",
    "parse_spec": "residency.spec",
    "place_fleet": "residency.planner.placement",
    "plan_stack": "residency.planner.plan",
    "read_state": "residency.runtime.state",
    "render_files": "residency.render.stack",
    "run_verify": "residency.verify.runner",
    "targets_from_spec": "residency.verify.targets",
    "targets_from_url": "residency.verify.targets",
}

__all__ = [
    "ChangedFilesError",
    "ExitCode",
    "Ledger",
    "LockedError",
    "Plan",
    "PlanDoesNotFitError",
    "Report",
    "RequestFailed",
    "ResidencyError",
    "SpecError",
    "StackSpec",
    "StackState",
    "StateFileError",
    "UpFailed",
    "build_ledger",
    "explain_launch",
    "load_spec",
    "parse_log",
    "parse_spec",
    "place_fleet",
    "plan_stack",
    "read_state",
    "render_files",
    "run_verify",
    "targets_from_spec",
    "targets_from_url",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'residency' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from residency.calibrate.explain import explain_launch
    from residency.calibrate.logparse import parse_log
    from residency.errors import (
        ChangedFilesError,
        ExitCode,
        LockedError,
        PlanDoesNotFitError,
        RequestFailed,
        ResidencyError,
        SpecError,
        StateFileError,
        UpFailed,
    )
    from residency.planner.placement import place_fleet
    from residency.planner.plan import plan_stack
    from residency.planner.result import Plan
    from residency.render.stack import render_files
    from residency.runtime.state import StackState, read_state
    from residency.spec import StackSpec, load_spec, parse_spec
    from residency.status.ledger import Ledger, build_ledger
    from residency.verify.runner import Report, run_verify
    from residency.verify.targets import targets_from_spec, targets_from_url
