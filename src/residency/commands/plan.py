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
        live: Annotated[
            bool,
            typer.Option(
                "--live",
                help="On the box: read total and free memory now, as vLLM's startup check will (CUDA, /proc/meminfo)",
            ),
        ] = False,
    ) -> None:
        """Predict each model's memory layout, check co-residency, choose fractions, and say what to fix."""
        from residency.planner.plan import plan_stack
        from residency.spec import load_spec

        s = load_spec(spec)
        if s.hosts:  # multi-host spec: fleet placement (issue 7)
            from residency.errors import SpecError
            from residency.output.placement_table import run_fleet_plan

            for flag, given in (("--svg", svg is not None), ("--together", together), ("--live", live)):
                if given:  # one device's options: refused rather than silently ignored
                    raise SpecError(
                        flag, "applies to a one-device spec, not to one with hosts:", f"drop {flag}"
                    )

            raise typer.Exit(
                run_fleet_plan(s, json_out=json_out, explain=explain, use_calibration=not no_calibration)
            )
        reading = None
        if live:
            reading = live_reading_or_exit(s)
            if not json_out:
                print(f"live reading of {reading.device}: {reading.source}")
        p = plan_stack(s, use_calibration=not no_calibration, start_together=together, live=reading)
        if json_out:
            from residency.jsonout import dumps

            print(dumps(p.contract()))
        else:
            from residency.output.plan_table import print_plan

            print_plan(p, explain=explain)
        if svg is not None:
            from residency.output.svg import write_plan_svg

            write_plan_svg(p, svg)
        raise typer.Exit(0 if p.fits else 1)


def live_reading_or_exit(s):
    """The box's total and free as vLLM will read them, or one line saying why not (exit 2)."""
    from residency.errors import SpecError
    from residency.memory.device import is_cpu_name, resolve_device
    from residency.memory.live import live_mismatch, read_live
    from residency.memory.versions import rules_for

    if s.device is None:
        raise SpecError("device", "--live reads one box's device", "use a one-device spec")
    dev = resolve_device(s.device)
    reading, why = read_live(dev.unified, rules_for(s.vllm_version))
    if reading is None:
        raise SpecError(
            "--live", f"cannot read this machine's memory: {why}", "run it on the box, or drop --live"
        )
    bad = live_mismatch(
        reading, name=dev.name, total_gib=dev.total_gib, unified=dev.unified, cpu=is_cpu_name(dev.name)
    )
    if bad is not None:  # the plan would show the spec's device with this machine's figures
        raise SpecError(
            "--live",
            f"this machine is not the spec's device: {bad}",
            "run plan --live on the box the spec describes, or drop --live",
        )
    return reading
