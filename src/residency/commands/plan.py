"""`residency plan SPEC`: the residency math before anything launches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_cmd(
        spec: Annotated[Path, typer.Argument(help="Stack spec YAML")],
        json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON")] = False,
        svg: Annotated[
            Path | None, typer.Option("--svg", help="Write the device bar as an SVG picture")
        ] = None,
        explain: Annotated[
            bool, typer.Option("--explain", help="Show the placement search's choices")
        ] = False,
        no_calibration: Annotated[
            bool, typer.Option("--no-calibration", help="Ignore stored calibrations")
        ] = False,
        together: Annotated[
            bool,
            typer.Option("--together", help="Predict starting all engines at once (no waiting between them)"),
        ] = False,
    ) -> None:
        """Predict each model's memory layout, check co-residency, choose fractions, and say what to fix."""
        from residency.planner.plan import plan_stack
        from residency.spec import load_spec

        s = load_spec(spec)
        if s.hosts:  # multi-host spec: fleet placement (issue 7)
            from residency.output.placement_table import run_fleet_plan

            raise typer.Exit(
                run_fleet_plan(s, json_out=json_out, explain=explain, use_calibration=not no_calibration)
            )
        p = plan_stack(s, use_calibration=not no_calibration, start_together=together)
        if json_out:
            import json

            print(json.dumps(p.contract(), indent=2))
        else:
            from residency.output.plan_table import print_plan

            print_plan(p, explain=explain)
        if svg is not None:
            from residency.output.svg import write_plan_svg

            write_plan_svg(p, svg)
        raise typer.Exit(0 if p.fits else 1)
