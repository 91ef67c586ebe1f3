"""`residency verify`: check what agents need, per model, directly and through the proxy."""

from __future__ import annotations

from typing import Annotated

import typer

HELP = """Check every model the way agents use it (plain chat, tool calls in auto/required/named
mode, streaming, reasoning, JSON schema, context limits, a concurrency burst), directly against each
vLLM backend and through the LiteLLM proxy, and name the fix for each failure.

Give a stack spec (endpoints from the spec and `up`'s state) or --url for a stack residency did not start (a LiteLLM proxy, or a bare vLLM server whose proxy checks are then skipped).

Exit 0 when every required check passes, 1 otherwise, 2 on bad input."""


def register(app: typer.Typer) -> None:
    @app.command("verify", help=HELP)
    def _cmd(
        spec: Annotated[str | None, typer.Argument(help="Stack spec YAML (omit when using --url).")] = None,
        url: Annotated[
            str | None, typer.Option("--url", help="Proxy or vLLM base URL, e.g. http://127.0.0.1:4000/v1.")
        ] = None,
        key_file: Annotated[
            str | None,
            typer.Option(
                "--key-file",
                help="File holding the proxy key, alone or as NAME=key like the stack's .env (default: $LITELLM_MASTER_KEY or the spec's key "
                "env / .env file). A key is never taken from the command line, where ps and shell history see it.",
            ),
        ] = None,
        model: Annotated[
            list[str] | None, typer.Option("--model", help="Only these model names (repeatable).")
        ] = None,
        direct: Annotated[
            list[str] | None,
            typer.Option("--direct", help="NAME=URL of a model's vLLM backend (repeatable)."),
        ] = None,
        only: Annotated[
            str | None, typer.Option("--only", help="Comma-separated check ids to run, e.g. T1,T2.")
        ] = None,
        skip: Annotated[str | None, typer.Option("--skip", help="Comma-separated check ids to skip.")] = None,
        timeout: Annotated[
            float,
            typer.Option("--timeout", min=1, max=3600, help="Seconds per request (a check gets 4x + 10)."),
        ] = 60.0,
        concurrency: Annotated[
            int | None,
            typer.Option("--concurrency", min=1, max=4096, help="C1 burst size (default max_num_seqs + 4)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        from residency.errors import SpecError
        from residency.verify.runner import select_checks
        from residency.verify.targets import targets_from_spec, targets_from_url

        if (spec is None) == (url is None):
            raise SpecError("verify", "give either a SPEC file or --url", "e.g. residency verify stack.yaml")
        checks = select_checks(only, skip)
        key = _read_key_file(key_file) if key_file else None
        if url:
            targets = targets_from_url(url, key, model or [], direct or [])
        else:
            targets = targets_from_spec(spec, key, model or [], direct or [])
        targets.concurrency = concurrency
        report = _run(targets, checks, timeout)
        if spec is not None:  # kept for render's agents.md: measured results per model
            from pathlib import Path

            from residency.agents.measured import save_measured
            from residency.runtime.state import state_dir

            save_measured(state_dir(Path(spec).resolve()), report)
        if as_json:
            from residency.jsonout import dumps
            from residency.verify.report import to_json

            typer.echo(dumps(to_json(report)))
        else:
            from rich.console import Console

            from residency.verify.report import render

            render(report, Console())
        raise typer.Exit(0 if report.ok else 1)


def _run(targets, checks, timeout: float):
    """Run with a progress line on stderr (rich), silent when stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from residency.verify.runner import run_verify

    err = Console(stderr=True)
    if not err.is_terminal:
        return run_verify(targets, checks, timeout)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as prog:
        task = prog.add_task("verify", total=None)

        def on(event: str, data: dict) -> None:
            if event == "start":
                prog.update(task, total=len(data["models"]) * len(data["checks"]))
            elif event == "check":
                prog.update(task, description=f"{data['model']} {data['id']} {data['title']}")
            elif event == "done":
                prog.advance(task)

        return run_verify(targets, checks, timeout, progress=on)


def _read_key_file(path: str) -> str:
    """The first line of a regular file (not a FIFO or device, which could block), at most 4 KiB."""
    import os
    import stat

    from residency.errors import SpecError

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise SpecError("--key-file", f"cannot read {path}: {e.strerror}", "give a readable file") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecError("--key-file", f"{path} is not a regular file", "give a file holding the key")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    import re

    from residency.render.writer import parse_env_value

    # the key alone, or an env file such as the stack's .env (comment first, then KEY_ENV=key; any name)
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines()]
    first = next((ln for ln in lines if ln and not ln.startswith("#")), "")
    named = re.match(r"(?:export\s+)?([A-Z_][A-Z0-9_]*)=", first)
    key = (parse_env_value(first, named.group(1)) or "") if named else first
    if not key:
        raise SpecError("--key-file", f"{path} holds no key", "write the key on its first line, or NAME=key")
    return key
