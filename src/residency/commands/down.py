"""`residency down SPEC`: stop what `up` started for this spec (by PID/process group or compose project)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from residency.commands.options import Grace, JsonResult


def register(app: typer.Typer) -> None:
    @app.command("down")
    def down_cmd(
        spec: Annotated[Path, typer.Argument(help="Stack spec YAML")],
        state_dir: Annotated[
            Path | None, typer.Option("--state-dir", help="The --state-dir given to `up`")
        ] = None,
        grace: Grace = 30.0,
        json_out: JsonResult = False,
    ) -> None:
        """Stop the models and the proxy `up` started, and nothing else."""
        from rich.console import Console

        from residency.runtime.down import down_stack
        from residency.runtime.state import StateStore
        from residency.runtime.state import state_dir as default_state_dir
        from residency.spec import load_spec

        load_spec(spec)  # bad input is reported like every other command's (exit 2), before anything stops
        spec_path = spec.resolve()
        store = StateStore(default_state_dir(spec_path, state_dir))
        stopped: list[str] = []
        console = Console(highlight=False, soft_wrap=True, stderr=json_out)
        down_stack(spec_path, store, console, grace_s=grace, stopped=stopped)
        if json_out:
            from residency.jsonout import dumps

            print(dumps({"spec": str(spec_path), "state_file": str(store.path), "stopped": stopped}))
