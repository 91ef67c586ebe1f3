"""The `residency` command line: thin wiring only; each command lives in residency.commands.<name>.

Errors are translated here, once: a ResidencyError prints one line and exits with its code from
residency.errors.ExitCode; `--debug` prints the traceback as well.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

# typer 0.29 bundles its own click as typer._click (tested range pinned in pyproject.toml): its usage
# errors are not click.exceptions.ClickException
from typer._click import exceptions as _click

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


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"residency {version('residency')}")
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback behind an error's one-line message")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print residency's version and exit"),
    ] = False,
) -> None:
    global _debug
    _debug = debug


for _register in COMMANDS:
    _register(app)


def _usage_line(e: _click.ClickException) -> str:
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None else "residency"
    msg = " ".join(e.format_message().split())
    if isinstance(e, _click.NoArgsIsHelpError):
        # no command: typer has printed the help already and left the message empty
        names = (
            ctx.command.list_commands(ctx)
            if ctx is not None and hasattr(ctx.command, "list_commands")
            else []
        )
        msg = f"give a command ({', '.join(names)})"
    if ctx is None:
        return f"{where}: {msg}"
    return f"{where}: {msg} (see '{where} --help')"


def main(argv: list[str] | None = None) -> None:
    global _debug
    _debug = False
    try:
        # standalone_mode=False: click returns a typer.Exit's code instead of raising it
        rc = app(args=argv, prog_name="residency", standalone_mode=False)
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
    except _click.ClickException as e:
        # usage errors (unknown command or option, missing argument): bad input, one line, click's own
        # message with the suggestion it computed ("No such command 'plann'. Did you mean 'plan'?")
        if _debug:
            traceback.print_exc()
        print(_usage_line(e), file=sys.stderr)
        sys.exit(ExitCode.BAD_INPUT)
    except typer.Abort:  # typer keeps Abort in typer.exceptions, not in its bundled click
        print("residency: aborted", file=sys.stderr)
        sys.exit(ExitCode.FAILED)
    sys.exit(rc if isinstance(rc, int) else ExitCode.OK)


if __name__ == "__main__":
    main()
