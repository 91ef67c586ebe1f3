"""The `residency` command line: thin wiring only; each command lives in residency.commands.<name>.

Errors are translated here, once: a ResidencyError prints one line and exits with its code from
residency.errors.ExitCode; `--debug` prints the traceback as well.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from residency.commands import COMMANDS
from residency.errors import ExitCode, ResidencyError

app = typer.Typer(
    name="residency",
    help="Plan, render, start, verify and watch several vLLM models sharing GPUs behind one LiteLLM proxy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_debug = False


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback behind an error's one-line message")
    ] = False,
) -> None:
    global _debug
    _debug = debug


for _register in COMMANDS:
    _register(app)


def main(argv: list[str] | None = None) -> None:
    global _debug
    _debug = False
    try:
        # standalone_mode=False: click returns a typer.Exit's code instead of raising it
        rc = app(args=argv, standalone_mode=False)
    except ResidencyError as e:
        if _debug:
            traceback.print_exc()
        print(f"residency: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("residency: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as e:  # click usage errors and friends
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(ExitCode.FAILED)
        raise
    sys.exit(rc if isinstance(rc, int) else ExitCode.OK)


if __name__ == "__main__":
    main()
