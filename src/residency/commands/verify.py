"""`residency verify` (not yet wired)."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def _cmd() -> None:
        """Not implemented yet."""
        raise typer.Exit(3)
