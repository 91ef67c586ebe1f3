"""Options several commands declare the same way (one declaration, so their bounds and help agree)."""

from __future__ import annotations

from typing import Annotated

import typer

# up, down, render: a machine-readable result on stdout, the progress lines moved to stderr
JsonResult = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (progress goes to stderr)")
]

# up (when a start fails and it stops what it started) and down
Grace = Annotated[
    float, typer.Option("--grace", min=0, max=3600, help="Seconds between SIGTERM and SIGKILL when stopping")
]
