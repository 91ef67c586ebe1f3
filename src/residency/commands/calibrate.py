"""`residency calibrate LOG...`: measured figures from vLLM startup logs, stored for `plan`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

# The plan's field names, in the order `--json --dry-run` prints them first.
CONTRACT_FIELDS = (
    "vllm_version",
    "model",
    "weights_gib",
    "activation_gib",
    "non_torch_gib",
    "cudagraph_gib",
    "kv_cache_gib",
    "kv_cache_tokens",
    "max_concurrency",
    "block_size",
    "error",
)


def read_log(path: Path) -> str:
    from residency.errors import SpecError

    if not path.is_file():
        raise SpecError(str(path), "no such file", "give the path of a vLLM log")
    try:
        return path.read_text(errors="replace")
    except OSError as e:
        raise SpecError(str(path), f"cannot read it ({e.strerror})") from None


def no_launch_error(paths: list[str]) -> Exception:
    """A log with no vLLM engine start is the wrong file: bad input, exit 2."""
    from residency.errors import SpecError

    return SpecError(
        ", ".join(paths),
        "no vLLM engine start found",
        "give the log of a `vllm serve` run from its first lines, which carry the version and settings",
    )


def launch_object(launch: Any, source: str, index: int) -> dict[str, Any]:
    d = launch.model_dump(mode="json")
    out: dict[str, Any] = {k: d.get(k) for k in CONTRACT_FIELDS}
    if out["error"] is not None:
        out["error"] = {
            "kind": d["error"]["kind"],
            "message": d["error"]["message"],
            **({"numbers": d["error"]["numbers"]} if d["error"].get("numbers") else {}),
        }
    out["source"] = source
    out["launch"] = index
    for k, v in d.items():
        if k not in out:
            out[k] = v
    return out


def register(app: typer.Typer) -> None:
    @app.command("calibrate")
    def calibrate_cmd(
        logs: Annotated[
            list[Path], typer.Argument(help="vLLM log files (any version 0.10.1-0.33.0; older eras too)")
        ],
        model: Annotated[
            str | None,
            typer.Option("--model", help="Model id (or spec model name) when the log does not name it"),
        ] = None,
        device: Annotated[
            str | None,
            typer.Option(
                "--device", help="Device name or preset id (default: the spec's, or the logged total)"
            ),
        ] = None,
        spec: Annotated[
            Path | None,
            typer.Option(
                "--spec", help="Stack spec: keys follow its model settings, device and calibration_file"
            ),
        ] = None,
        vllm_version: Annotated[
            str | None, typer.Option("--vllm-version", help="vLLM version when the log does not state it")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON (one object per launch)")] = False,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Parse and print only; store nothing")
        ] = False,
        file: Annotated[
            Path | None,
            typer.Option(
                "--file",
                help="Calibration file (default: spec's calibration_file, $RESIDENCY_CALIBRATION, ~/.config/residency/calibration.json)",
            ),
        ] = None,
    ) -> None:
        """Parse vLLM startup logs into measured figures and store them as calibrations for `plan`."""
        from residency.calibrate import store
        from residency.calibrate.logparse import parse_log
        from residency.errors import ResidencyError, SpecError
        from residency.jsonout import dumps

        texts = [(str(p), read_log(p)) for p in logs]
        s = None
        if spec is not None:
            from residency.spec import load_spec

            s = load_spec(spec)
        found: list[tuple[str, int, Any]] = []
        for src, text in texts:
            for i, ln in enumerate(parse_log(text), 1):
                found.append((src, i, ln))
        if not found:
            raise no_launch_error([src for src, _ in texts])

        if dry_run:
            if json_out:
                print(dumps([launch_object(ln, src, i) for src, i, ln in found]))
            else:
                _print_table(found, {})
            return

        path = store.calibration_path(file, s)
        results: dict[tuple[str, int], dict[str, Any]] = {}
        stored = 0
        for src, i, ln in found:
            if vllm_version and not ln.vllm_version:
                ln = ln.model_copy(update={"vllm_version": vllm_version.lstrip("v")})
            try:
                cal = store.record_launch(ln, spec=s, device=device, source=src, path=path, model_id=model)
            except SpecError as e:
                if e.field != "launch":  # bad input (device, model, version, file): one line, exit 2
                    raise
                results[(src, i)] = {"stored": False, "reason": e.problem}
                continue
            stored += 1
            results[(src, i)] = {"stored": True, "key": cal.key.model_dump(mode="json"), "notes": cal.notes}
        learned = _learn_boxes(found, s, device, file)
        if json_out:
            out = []
            for src, i, ln in found:
                obj = launch_object(ln, src, i)
                obj.update(results.get((src, i), {}))
                out.append(obj)
            print(dumps(out))
        else:
            _print_table(found, results)
            if stored:
                print(f"stored {stored} calibration(s) in {path}")
            for b in learned:
                idle = f", idle free {b.idle_free_gib:.2f} GiB" if b.idle_free_gib is not None else ""
                print(f"box {b.device}: total {b.total_gib:.2f} GiB{idle} (later plans for it use these)")
        if not stored and not learned:
            raise ResidencyError("nothing calibrated: no launch reached KV sizing without an error")


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _print_table(found: list[tuple[str, int, Any]], results: dict[tuple[str, int], dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console()
    if con.width < 150:
        _print_cards(con, found, results)
        return
    t = Table(title="vLLM launches (GiB per GPU)", title_justify="left")
    for col, just in (
        ("log", "left"),
        ("#", "right"),
        ("vLLM", "left"),
        ("model", "left"),
        ("util", "right"),
        ("weights", "right"),
        ("activ.", "right"),
        ("non-torch", "right"),
        ("graphs", "right"),
        ("KV", "right"),
        ("KV tokens", "right"),
        ("conc.", "right"),
        ("block", "right"),
        ("result", "left"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for src, i, ln in found:
        r = results.get((src, i))
        if ln.error is not None:
            result = f"[red]failed: {ln.error.kind}[/]"
        elif r is None:
            result = "ok" if ln.kv_cache_gib is not None else "[yellow]incomplete[/]"
        elif r.get("stored"):
            result = "[green]stored[/]"
        else:
            result = f"[yellow]not stored: {escape(r.get('reason', ''))}[/]"
        t.add_row(
            escape(Path(src).name),
            str(i),
            escape(_fmt(ln.vllm_version)),
            escape(_fmt(ln.model)),
            _fmt(ln.gpu_memory_utilization),
            _fmt(ln.weights_gib),
            _fmt(ln.activation_gib),
            _fmt(ln.non_torch_gib),
            _fmt(ln.cudagraph_gib),
            _fmt(ln.kv_cache_gib),
            _fmt(ln.kv_cache_tokens),
            _fmt(ln.max_concurrency) + ("x" if ln.max_concurrency is not None else ""),
            _fmt(ln.block_size),
            result,
        )
    con.print(t)
    for src, i, ln in found:
        if ln.error is not None:
            con.print(
                f"[red]{escape(Path(src).name)} #{i}[/]: {escape(ln.error.message)}  (see: residency explain {escape(src)})"
            )
        r = results.get((src, i)) or {}
        for note in r.get("notes", []):
            con.print(f"  note: {escape(note)}")


def _result(ln: Any, r: dict[str, Any] | None) -> str:
    from rich.markup import escape

    if ln.error is not None:
        return f"[red]failed: {ln.error.kind}[/]"
    if r is None:
        return "ok" if ln.kv_cache_gib is not None else "[yellow]incomplete[/]"
    if r.get("stored"):
        return "[green]stored[/]"
    return f"[yellow]not stored: {escape(r.get('reason', ''))}[/]"


def _print_cards(
    con: Any, found: list[tuple[str, int, Any]], results: dict[tuple[str, int], dict[str, Any]]
) -> None:
    """Narrow terminals: one short block per launch instead of a wide table."""
    from rich.markup import escape

    for src, i, ln in found:
        r = results.get((src, i))
        con.print(
            f"[bold]{escape(Path(src).name)} #{i}[/]  {escape(_fmt(ln.model))}  vLLM {escape(_fmt(ln.vllm_version))}  "
            f"util {_fmt(ln.gpu_memory_utilization)}  → {_result(ln, r)}"
        )
        con.print(
            f"  weights {_fmt(ln.weights_gib)} · activation {_fmt(ln.activation_gib)} · non-torch "
            f"{_fmt(ln.non_torch_gib)} · graphs {_fmt(ln.cudagraph_gib)} · KV {_fmt(ln.kv_cache_gib)} GiB"
        )
        conc = _fmt(ln.max_concurrency) + ("x" if ln.max_concurrency is not None else "")
        con.print(
            f"  KV tokens {_fmt(ln.kv_cache_tokens)} · concurrency {conc} · block {_fmt(ln.block_size)}"
        )
        if ln.error is not None:
            con.print(f"  [red]vLLM said:[/] {escape(ln.error.message)}  (residency explain {escape(src)})")
        for note in (r or {}).get("notes", []):
            con.print(f"  note: {escape(note)}")


def _learn_boxes(found: list[tuple[str, int, Any]], spec: Any, device: str | None, file: Any) -> list[Any]:
    """Every launch that logged the device total (failed ones too) teaches the box's total and idle free."""
    from residency.calibrate import boxes, store
    from residency.memory.device import PRESETS, resolve_device

    out: dict[str, Any] = {}
    cal_file = file or (spec.calibration_file if spec is not None else None)
    unified = {p.name for p in PRESETS.values() if p.unified}
    if spec is not None and spec.device is not None and resolve_device(spec.device).uma_gpu:
        unified.add(store.device_key(spec.device))
    for src, _i, ln in found:
        if ln.total_gib is None:
            continue
        dev = store.canonical_device(device) if device else None
        if dev is None and spec is not None and spec.device is not None:
            dev = store.device_key(spec.device)
        dev = dev or store.device_from_total(ln.total_gib)
        if dev is None or dev not in unified:  # box totals matter where presets guess (unified memory)
            continue
        b = boxes.learn_box(dev, ln.total_gib, ln.free_at_start_gib, src, cal_file)
        if b is not None:
            out[dev] = b
    return list(out.values())
