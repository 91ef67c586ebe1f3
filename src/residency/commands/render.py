"""`residency render SPEC -o DIR`: compose, LiteLLM config, .env, Kubernetes manifests, agent settings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from residency.commands.options import JsonResult


def register(app: typer.Typer) -> None:
    @app.command("render")
    def render_cmd(
        spec: Annotated[Path, typer.Argument(help="Stack spec YAML")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write into")],
        force: Annotated[bool, typer.Option("--force", help="Overwrite files that changed")] = False,
        rotate_key: Annotated[
            bool,
            typer.Option("--rotate-key", help="Generate a new LiteLLM master key (default: keep .env's)"),
        ] = False,
        state_dir_opt: Annotated[
            Path | None,
            typer.Option(
                "--state-dir",
                help="up's state dir (default .residency/<spec stem>/ next to the spec): where the key "
                "file is recorded and verify's results are read",
            ),
        ] = None,
        json_out: JsonResult = False,
    ) -> None:
        """Render the plan into compose.yaml, litellm.yaml, .env (0600), k8s/, agents.md and, for the
        spec's agents, hermes/config.yaml and clawrium.sh."""
        from residency.agents.measured import load_measured
        from residency.render.stack import plan_for, render_files, require_fit
        from residency.render.writer import write_files
        from residency.runtime.keys import record_key_file, render_key
        from residency.runtime.state import state_dir
        from residency.spec import load_spec

        s = load_spec(spec)
        sdir = state_dir(spec.resolve(), state_dir_opt)
        if s.hosts:  # multi-host: place every replica, then per-host compose + one load-balancing proxy
            from residency.render.fleet import place_and_render

            files = place_and_render(s, out, spec_dir=spec.resolve().parent, rotate_key=rotate_key)
        else:
            plan = plan_for(s)
            require_fit(plan)
            files = render_files(
                s,
                plan,
                out,
                spec_dir=spec.resolve().parent,
                key=render_key(sdir, out, s.proxy.master_key_env, rotate_key),
                measured=load_measured(sdir),
            )
        # A rotated key is an explicit request: the .env may change without --force.
        echo = (
            (lambda text: print(text, file=sys.stderr)) if json_out else print
        )  # stdout holds only the JSON
        rep = write_files(
            out, files, force=force or (rotate_key and _only_env_changed(out, files)), echo=echo
        )
        # up, verify and status find the key here from now on: one key for the stack
        record_key_file(sdir, out / ".env")
        key_file = (out / ".env").resolve()
        if json_out:
            from residency.jsonout import dumps

            print(dumps({
                "out": str(out.resolve()), "created": rep.created, "updated": rep.changed,
                "unchanged": rep.unchanged, "master_key_env": s.proxy.master_key_env, "key_file": str(key_file),
            }))  # fmt: skip
            return
        for rel in rep.created:
            print(f"created   {out / rel}")
        for rel in rep.changed:
            print(f"updated   {out / rel}")
        for rel in rep.unchanged:
            print(f"unchanged {out / rel}")
        print(f"master key: {s.proxy.master_key_env} in {key_file}")


def _only_env_changed(out: Path, files) -> bool:
    from residency.render.writer import plan_writes

    rep = plan_writes(out, files)
    return set(rep.changed) <= {".env"}
