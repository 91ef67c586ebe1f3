#!/usr/bin/env python3
"""Wall time of a full `residency verify` of two toy models (hermes, xml) on the real toy stack.

Starts two vLLM CPU servers and a LiteLLM proxy with tests/e2e/stackkit.py, runs every check
directly and through the proxy, prints the timings, and stops what it started.

    .venv/bin/python bench/verify_speed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from residency.verify.runner import run_verify, select_checks  # noqa: E402
from residency.verify.targets import targets_from_url  # noqa: E402
from tests.e2e.stackkit import start_toy_stack  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    t0 = time.monotonic()
    stack = start_toy_stack(("hermes", "xml"))
    print(f"stack start: {time.monotonic() - t0:.1f} s (2 vLLM CPU servers + LiteLLM)")
    try:
        for i in range(args.repeat):
            direct = [f"{n}={s.base_url}" for n, s in stack.servers.items()]
            targets = targets_from_url(
                stack.proxy.base_url, stack.proxy.master_key, list(stack.servers), direct
            )
            per_check: dict[str, float] = {}
            t1 = time.monotonic()
            report = run_verify(targets, select_checks(), timeout=120)
            wall = time.monotonic() - t1
            for m in report.models:
                for c in m.checks:
                    per_check[c.id] = per_check.get(c.id, 0.0) + c.seconds
            n_checks = sum(len(m.checks) for m in report.models)
            statuses = {
                s: sum(c.status == s for m in report.models for c in m.checks)
                for s in ("pass", "warn", "fail", "skip")
            }
            print(
                f"run {i + 1}: full verify of 2 models ({n_checks} checks, direct + proxy): {wall:.1f} s wall; {statuses}"
            )
            slow = sorted(per_check.items(), key=lambda kv: -kv[1])[:5]
            print("  slowest checks (both models): " + ", ".join(f"{k} {v:.1f}s" for k, v in slow))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
