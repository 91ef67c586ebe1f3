"""Wall time of `residency plan examples/dgx-spark-qwen3.yaml` (a fresh process each run).

    python bench/plan_speed.py [SPEC] [--runs N]

Target: under 0.5 s per run (issue 2). Prints every run, the median and the best.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("spec", nargs="?", default=str(REPO / "examples" / "dgx-spark-qwen3.yaml"))
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    exe = Path(sys.executable).parent / "residency"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "residency.cli"]
    times = []
    for i in range(a.runs):
        t0 = time.perf_counter()
        r = subprocess.run([*cmd, "plan", a.spec, "--json"], capture_output=True, text=True, cwd=REPO)
        dt = time.perf_counter() - t0
        times.append(dt)
        print(f"run {i + 1}: {dt * 1000:.0f} ms (exit {r.returncode})")
        if r.returncode not in (0, 1):
            print(r.stderr, file=sys.stderr)
            return 2
    med = statistics.median(times)
    print(
        f"median {med * 1000:.0f} ms, best {min(times) * 1000:.0f} ms over {a.runs} runs; target < 500 ms: "
        f"{'met' if med < 0.5 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
