"""Unified memory (DGX Spark GB10, Jetson Thor/Orin): what the box's host side costs a vLLM process.

On UMA vLLM's memory snapshot is system-wide (vllm-memory.md §2.3): every byte of host RAM that
grows between the worker's baseline snapshot (Worker.init_device) and the end of profiling
(determine_available_memory) is charged to the KV budget - as non_torch_increase (Formula A,
<= 0.26) or inside total_consumed (Formula B, >= 0.27). What falls inside that window, from the
source (gpu_worker.py:332-480 @0.20.2, :641-800 @0.33.0):

* load_model (model loading reads the checkpoint: page cache grows; <= 0.11.0 free is cudaMemGetInfo
  free = MemFree, which counts page cache as used; >= 0.11.1 free is MemAvailable, which does not;
  mem_utils.py:85-102 @0.11.1);
* profile_run, whose first forward triggers torch.compile/Inductor/Triton (VLLM_COMPILE mode, not
  with enforce_eager): a cold start compiles and autotunes (a transient host heap, COMPILE_HEAP_WORST, not in
  the default figure); a warm start loads the compiled artifacts from the vLLM compile cache.

Figures are from ../shared/reference/unified-memory.md (its section named per constant). A
calibration of the real box replaces them (calibrate learns total, idle free and the non-KV residue).
"""

from __future__ import annotations

from typing import Literal

from residency.memory.versions import VersionRules

GiB = 2**30
Start = Literal["cold", "warm"]

# Worker host growth inside the snapshot window on a WARM start (checkpoint in page cache, compile cache
# filled): Python heap, tokenizer, host staging of checkpoint tensors. Fitted to the only unified-memory records
# with a logged KV, r052 (GB10, 0.11.0, Mistral-7B GPTQ, 3.88 GiB of weights) and r053 (Thor, 0.10.2,
# Llama-3.1-8B, 14.99 GiB): their non-KV memory beside weights, profile activation and non-torch workspaces is
# ~0.6-2.5 and ~2.1 GiB; 1 GiB + 5 % of the weights keeps both within 0.6 GiB (bench/accuracy.py, unified
# section). unified-memory.md §3: eugr/spark-vllm-docker PR 286 caps the legitimate non_torch_increase at
# 2 GiB on a Spark, which this stays under up to 20 GiB of weights.
HOST_WARM_BASE = 1.0 * GiB
HOST_WARM_PER_WEIGHT = 0.05
# COLD start, checkpoint pages read inside the window (load_model): <= 0.11.0 free is cudaMemGetInfo free =
# MemFree, so all of them count as used (vllm-memory.md §2.3); >= 0.11.1 MemAvailable credits reclaimable
# memory from shard loads only about half (unified-memory.md §3, guardkit/dgx-spark DRIFT notes; NVIDIA/xr-ai
# PR 462: "during a cold model load, Linux page-cache activity can be counted by vLLM as model or non-Torch
# overhead ... a later cached attempt can pass with identical settings").
COLD_PAGE_SHARE_MEMFREE = 1.0
COLD_PAGE_SHARE_MEMAVAILABLE = 0.5
# Not in the default cold figure: a cold torch.compile/Triton heap was measured at ~31.6 GiB over a 2 GiB cap
# once (unified-memory.md §3, eugr/spark-vllm-docker PR 286, "up to 30GB+"); the plan names it as a risk.
COMPILE_HEAP_WORST = 31.6 * GiB
# API server + EngineCore processes (Python, tokenizer, no CUDA), started before the worker's snapshot:
# outside the budget, but resident in the same memory. unified-memory.md §3: llamastash PR 81 measured engine
# overhead beyond weights + KV of 5.4-6.7 GiB on a Spark; 5.4 - CUDA context 0.55 - warm growth 2.0 - profile
# activation of an 8B model at 2048 tokens (~1.6) = ~1.2 GiB.
FRONTEND = 1.2 * GiB
# Host reserve kept free beside every footprint (OS page cache, agents, desktop). unified-memory.md §4: a
# Spark froze at ~113-114 GiB used of 121.69 (guardkit/dgx-spark RESULTS-two-spark); 121.69 - 113.5 = 8.2 GiB.
HOST_RESERVE_DEFAULT_GIB = 8.2
# What an idle Spark reliably offers to the admission check (MemAvailable): unified-memory.md §2, stock
# installs "cap at ~102/121.69 GiB regardless of driver, headless, caches dropped" (MiaAI-Lab issue 47), and
# 0.84 x 121.69 = 102.22 GiB failed with 98.89 and 100.6 GiB available (tonyd2wild PR 19). So ~19.69 GiB of
# the CUDA total is not offered even on an idle box; a request above total - 19.69 GiB is at risk.
IDLE_UNOFFERED_GIB = 121.69 - 102.0
# The preset total. Two totals exist in the wild (unified-memory.md §1): ~119.6-119.7 GiB (vLLM PR 49760,
# the seed blog post, 119.67) and ~121.6-121.7 GiB (most 2026 logs). The preset takes the seed's box.
PRESET_ASSUMPTION = (
    "dgx-spark preset assumes a total of 119.67 GiB (some GB10 boxes report 121.69) and an idle box "
    "offering ~{idle:.1f} GiB to vLLM's check (unified-memory.md §1-2); `plan --live` on the box or "
    "`calibrate` with one of its logs replaces both"
)


def host_growth_bytes(start: Start, rules: VersionRules, checkpoint_bytes: int) -> int:
    """Host RAM the worker grows inside its snapshot window, charged to the KV budget (§2.3).

    warm: HOST_WARM_*. cold: + the share of the checkpoint's pages the version's free reading counts as used."""
    grow = warm_growth_bytes(checkpoint_bytes)
    if start == "cold":
        share = COLD_PAGE_SHARE_MEMAVAILABLE if rules.uma_free_is_memavailable else COLD_PAGE_SHARE_MEMFREE
        grow += int(share * checkpoint_bytes)
    return grow


def warm_growth_bytes(checkpoint_bytes: int) -> int:
    """The growth the process keeps (its footprint's host part), cold or warm."""
    return int(HOST_WARM_BASE + HOST_WARM_PER_WEIGHT * checkpoint_bytes)


def page_cache_bytes(start: Start, rules: VersionRules, checkpoint_bytes: int) -> int:
    """The part of the growth that is page cache, not held by the process: outside its footprint, but counted as
    used by the next engine's check until caches are dropped (up drops them before each start when root)."""
    return host_growth_bytes(start, rules, checkpoint_bytes) - warm_growth_bytes(checkpoint_bytes)


def idle_offered_gib(total_gib: float) -> float:
    """What an idle unified box reliably offers vLLM's admission check (no live reading, no calibration)."""
    return max(0.0, total_gib - IDLE_UNOFFERED_GIB)
