"""`residency render` (not yet wired)."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("render")
    def _cmd() -> None:
        """Not implemented yet."""
        raise typer.Exit(3)
