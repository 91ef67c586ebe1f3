"""Before each engine on unified memory: drop the page cache, then wait for free memory as vLLM reads it.

On a DGX Spark the page cache of a checkpoint just read counts against the next engine's startup check
(<= 0.11.0: MemFree; >= 0.11.1 MemAvailable credits reclaimable memory only partly) and is charged to its
KV budget while it grows (memory/unified.py). Operators drop caches before every model start
(`sync; echo 3 > /proc/sys/vm/drop_caches`, unified-memory.md §3). Memory of an engine that just stopped
comes back over tens of seconds ("sixty seconds later the same node reported 111 GiB available. So the
fix is to WAIT", unified-memory.md §2), so the start waits for it, with a deadline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from residency.errors import UpFailed
from residency.memory.live import MemorySource

GiB = 2**30
DROP_CACHES = "/proc/sys/vm/drop_caches"
DROP_COMMAND = "sync; echo 3 | sudo tee /proc/sys/vm/drop_caches"
WAIT_S = (
    120.0  # a stopped engine's memory returned within ~60 s in the field (unified-memory.md §2): twice that
)


def drop_page_cache() -> None:
    """sync, then free page cache, dentries and inodes (root only). Never called by tests."""
    os.sync()
    fd = os.open(DROP_CACHES, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.write(fd, b"3\n")
    finally:
        os.close(fd)


def _is_root() -> bool:
    return os.geteuid() == 0


@dataclass
class UnifiedGate:
    source: MemorySource  # free memory as the spec's vLLM version reads it (memory/live.py)
    drop_caches: bool = True
    timeout_s: float = WAIT_S
    poll_s: float = 2.0
    is_root: Callable[[], bool] = _is_root
    dropper: Callable[[], None] = drop_page_cache
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    said_command: bool = field(default=False, init=False)

    def before_start(self, key: str, need_gib: float, running: str, console) -> float:
        """Drop caches (or say the command once), then wait until free >= need; the free GiB seen."""
        if self.drop_caches:
            if self.is_root():
                try:
                    self.dropper()
                except OSError as e:  # root in a container or user namespace: /proc/sys is often read-only
                    console.print(
                        f"  {key}: page cache not dropped ({DROP_CACHES}: {e.strerror or e}); on the host run: "
                        f"{DROP_COMMAND}",
                        markup=False,
                    )
                else:
                    console.print(
                        f"  {key}: dropped the page cache ({DROP_COMMAND.replace('sudo ', '')})", markup=False
                    )
            elif not self.said_command:
                self.said_command = True
                console.print(
                    f"  {key}: not root, page cache not dropped; to drop it before each start run: {DROP_COMMAND}",
                    markup=False,
                )
        deadline = self.clock() + self.timeout_s
        waited = False
        while True:
            free = self.source.read()[1] / GiB
            if free >= need_gib:
                console.print(
                    f"  {key}: free {free:.2f} GiB ({self.source.name}, as vLLM reads it), plan needs {need_gib:.2f} GiB",
                    markup=False,
                )
                return free
            if self.clock() >= deadline:
                raise UpFailed(
                    f"{key} not started: [free_memory] free memory {free:.2f} GiB ({self.source.name}, what vLLM's "
                    f"startup check reads) stayed below the {need_gib:.2f} GiB the plan needs for {self.timeout_s:.0f}s. "
                    f"Running from this stack: {running}. Fix: stop what else holds memory (see `residency status`), "
                    f"drop the page cache ({DROP_COMMAND}), or re-plan with `residency plan --live`"
                )
            if not waited:
                waited = True
                console.print(
                    f"  {key}: free {free:.2f} GiB < {need_gib:.2f} GiB needed; waiting up to {self.timeout_s:.0f}s "
                    "for memory to come back (a stopped engine returns it over tens of seconds)",
                    markup=False,
                )
            self.sleep(self.poll_s)
