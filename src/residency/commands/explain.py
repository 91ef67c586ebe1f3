"""`residency explain LOG`: why a vLLM launch failed, what it means, and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        log: Annotated[Path, typer.Argument(help="vLLM log file")],
        json_out: Annotated[
            bool, typer.Option("--json", help="Print JSON (one object per explained launch)")
        ] = False,
    ) -> None:
        """Explain a failed vLLM start: the verdict kind, vLLM's numbers, what they mean, and the fix.

        Every failed launch in the log is explained; when none failed, the last launch is reported.
        """
        from residency.calibrate.explain import explain_launch
        from residency.calibrate.logparse import parse_log
        from residency.commands.calibrate import no_launch_error, read_log
        from residency.jsonout import dumps

        launches = parse_log(read_log(log))
        if not launches:
            raise no_launch_error([str(log)])
        picked = [(i, ln) for i, ln in enumerate(launches, 1) if ln.error is not None]
        if not picked and launches:
            picked = [(len(launches), launches[-1])]
        items = []
        for i, ln in picked:
            ex = explain_launch(ln)
            items.append(
                {
                    "launch": i,
                    "vllm_version": ln.vllm_version,
                    "model": ln.model,
                    **ex.model_dump(mode="json"),
                }
            )
        if json_out:
            print(dumps(items))
            return
        from rich.console import Console
        from rich.markup import escape

        con = Console()
        for it in items:
            head = f"launch {it['launch']} of {len(launches)}"
            if it["model"] or it["vllm_version"]:
                head += f" ({escape(it['model'] or '?')}, vLLM {escape(it['vllm_version'] or '?')})"
            colour = {"ok": "green", "unknown": "yellow"}.get(it["kind"], "red")
            con.print(f"[bold]{head}[/]: [{colour}]{it['kind']}[/]")
            if it["message"]:
                con.print(f"  vLLM said: {escape(it['message'])}")
            if it["numbers"]:
                con.print("  numbers:   " + ", ".join(f"{k}={v:g}" for k, v in it["numbers"].items()))
            con.print(f"  meaning:   {escape(it['meaning'])}")
            con.print(f"  fix:       {escape(it['fix'])}")
