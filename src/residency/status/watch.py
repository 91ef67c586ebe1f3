"""The status loop: one reader, one plan and one HTTP client for many ledgers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from residency.status.ledger import Ledger, Thresholds, build_ledger, load_plan

if TYPE_CHECKING:
    from residency.gpu import GpuReader
    from residency.spec import StackSpec


def iter_ledgers(
    spec: StackSpec,
    spec_path: str | Path | None,
    *,
    interval: float = 2.0,
    count: int | None = None,
    reader: GpuReader | None = None,
    thresholds: Thresholds | None = None,
    use_plan: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Ledger]:
    """Yield a fresh ledger every `interval` seconds, `count` times (None: forever).

    A model going down between two ledgers is just a state change; a failing reading never ends
    the loop (build_ledger tolerates every probe failing)."""

    from residency.gpu import get_reader

    own_reader = reader is None
    reader = reader or get_reader()
    plan, note = load_plan(spec) if use_plan else (None, "no plan: skipped")
    try:
        from residency.deadline import deadline_client

        with deadline_client(3.0) as client:
            n = 0
            last: Ledger | None = None
            while count is None or n < count:
                started = time.monotonic()
                last = build_ledger(
                    spec,
                    reader,
                    spec_path=spec_path,
                    plan=plan,
                    plan_note=note,
                    client=client,
                    thresholds=thresholds,
                    previous=last,
                )
                yield last
                n += 1
                if count is not None and n >= count:
                    break
                sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if own_reader:
            reader.close()
