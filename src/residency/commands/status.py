"""`residency status SPEC [--watch] [--json]`: the live residency ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status_cmd(
        spec: Annotated[Path, typer.Argument(help="Stack spec YAML")],
        watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh in place until Ctrl-C")] = False,
        interval: Annotated[
            float, typer.Option("--interval", min=0.2, max=3600, help="Seconds between refreshes")
        ] = 2.0,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print the ledger as JSON (with --watch: one object per line)")
        ] = False,
        count: Annotated[
            int | None, typer.Option("--count", min=1, help="With --watch: stop after this many refreshes")
        ] = None,
        drift_pct: Annotated[
            float,
            typer.Option(
                "--drift-pct", min=0, max=100000, help="Warn when a model holds this % more than planned"
            ),
        ] = 10.0,
        reader: Annotated[
            str | None,
            typer.Option("--reader", help="Memory source: nvml, host, or a recorded NVML fixture (.json)"),
        ] = None,
        no_plan: Annotated[bool, typer.Option("--no-plan", help="Do not compare against the plan")] = False,
    ) -> None:
        """Per model: state, process, memory now vs plan, KV use and queue; the device; drift warnings.

        Exit code without --watch: 0 when every model is ready, 1 otherwise. --watch exits 0 on Ctrl-C.
        """
        from residency.gpu import get_reader
        from residency.spec import load_spec
        from residency.status.ledger import Thresholds
        from residency.status.watch import iter_ledgers

        s = load_spec(spec)
        if watch:
            import signal

            # Ctrl-C ends the watch (exit 0) even when started from a shell that ignores SIGINT
            signal.signal(signal.SIGINT, signal.default_int_handler)
        th = Thresholds(drift_pct=drift_pct)
        rd = get_reader(reader)
        ledgers = iter_ledgers(
            s,
            spec,
            interval=interval,
            count=count if watch else 1,
            reader=rd,
            thresholds=th,
            use_plan=not no_plan,
        )
        try:
            if not watch:
                ledger = next(ledgers)
                _emit(ledger, json_out)
                if not json_out:
                    _key_line(s, spec)
                raise typer.Exit(0 if ledger.all_ready else 1)
            if json_out:
                for ledger in ledgers:
                    print(ledger.to_json(), flush=True)
            else:
                from rich.console import Console
                from rich.live import Live

                from residency.status.view import render_ledger

                console = Console()
                with Live(console=console, auto_refresh=False, transient=False) as live:
                    for ledger in ledgers:
                        live.update(render_ledger(ledger), refresh=True)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
        finally:
            ledgers.close()
            rd.close()
        raise typer.Exit(0)


def _emit(ledger, json_out: bool) -> None:
    if json_out:
        print(ledger.to_json())
        return
    from rich.console import Console

    from residency.status.view import render_ledger

    Console().print(render_ledger(ledger))


def _key_line(s, spec: Path) -> None:
    """Which file holds the proxy's master key (the one up gave LiteLLM); never the key itself."""
    from residency.runtime.keys import key_file_hint
    from residency.runtime.state import state_dir

    where = key_file_hint(state_dir(spec.resolve()))
    print(
        f"master key: {s.proxy.master_key_env} in {where}"
        if where
        else "master key: not created yet (run up)"
    )
