"""`residency down` (not yet wired)."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("down")
    def _cmd() -> None:
        """Not implemented yet."""
        raise typer.Exit(3)
