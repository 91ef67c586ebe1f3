"""The `residency` command line: thin wiring only; each command lives in residency.commands.<name>."""

from __future__ import annotations

import sys

import typer

from residency.commands import COMMANDS
from residency.errors import ResidencyError

app = typer.Typer(
    name="residency",
    help="Plan, render, start, verify and watch several vLLM models sharing GPUs behind one LiteLLM proxy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _register in COMMANDS:
    _register(app)


def main(argv: list[str] | None = None) -> None:
    try:
        # standalone_mode=False: click returns a typer.Exit's code instead of raising it
        rc = app(args=argv, standalone_mode=False)
    except ResidencyError as e:
        print(f"residency: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("residency: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # click usage errors and friends
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
