#!/usr/bin/env python3
"""Fleet placement benchmark: place N model replicas on M hosts and report time and packing efficiency.

    .venv/bin/python bench/fleet.py --hosts 100 --replicas 500 [--placement pack|spread] [--json]

The synthetic fleet cycles through host types (DGX Spark, 2x H100, 4x L40S, 2x A100-80GB,
8x H200, RTX 4090) and through catalog models with a few context/concurrency settings; model
entries get up to 5 replicas each (N replicas in total). Placement uses the planner's memory model
once per (engine settings, device type) and the O(1) pool checks of residency.planner.placement;
the per-GPU verification with the full planner is left out (`--verify` turns it on), as the brief's
timing is about the search.

Packing efficiency = KV cache obtained / best possible KV cache, in GiB:
  obtained: on every GPU that holds replicas, their KV at the minimum fraction plus the room the
            planner's solver hands out as extra KV (the budget or free-memory slack left there);
  bound:    the GPUs the placement uses as ONE divisible pool: sum of their budget x total, minus
            every placed replica's non-KV memory (weights, activation, graphs inside the budget) at
            its cheapest device type. It ignores the per-process CUDA context / host RSS and the
            free-memory rule, so 100% is out of reach; the gap is what packing loses to
            fragmentation, those overheads and replicas landing on devices where they cost more.
  Also printed: the same over the WHOLE fleet (idle GPUs count as lost KV), where spread wins.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

HOST_TYPES = [  # (preset, GPUs per host)
    ("dgx-spark", 1),
    ("h100-80gb", 2),
    ("l40s", 4),
    ("a100-80gb", 2),
    ("h200", 8),
    ("rtx-4090", 1),
]
MODELS = [  # (catalog id, max_model_len, max_num_seqs)
    ("Qwen/Qwen3-4B-Instruct-2507", 16384, 4),
    ("Qwen/Qwen3-8B", 32768, 4),
    ("meta-llama/Llama-3.1-8B-Instruct", 16384, 8),
    ("openai/gpt-oss-20b", 32768, 4),
    ("Qwen/Qwen3-30B-A3B-FP8", 32768, 4),
    ("mistralai/Mistral-7B-Instruct-v0.3", 16384, 4),
    ("google/gemma-3-4b-it", 16384, 4),
    ("microsoft/phi-4", 16384, 4),
    ("Qwen/Qwen3-32B-AWQ", 16384, 2),
    ("Qwen/Qwen3-4B-Instruct-2507", 32768, 8),
]
REPLICAS_PER_ENTRY = 5


def synthetic_spec(hosts: int, replicas: int, placement: str):
    from residency.spec import parse_spec

    hs = []
    for i in range(hosts):
        preset, count = HOST_TYPES[i % len(HOST_TYPES)]
        dev = {"preset": preset, "count": count}
        if preset == "dgx-spark":
            dev["used_gib"] = 6.0
        hs.append({"name": f"{preset}-{i}", "address": f"10.0.{i // 250}.{i % 250 + 1}", "device": dev})
    models = []
    left = replicas
    i = 0
    while left > 0:
        mid, mlen, seqs = MODELS[i % len(MODELS)]
        r = min(REPLICAS_PER_ENTRY, left)
        models.append(
            {"name": f"m{i}", "model": mid, "max_model_len": mlen, "max_num_seqs": seqs, "replicas": r}
        )
        left -= r
        i += 1
    return parse_spec({"hosts": hs, "models": models, "placement": placement, "vllm_version": "0.33.0"})


def efficiency(spec, fleet, demands) -> dict[str, float]:
    """KV obtained and the two bounds (GPUs used, whole fleet); see the module docstring."""
    from residency.planner.placement import _resolve_host_device, device_key, settings_key

    devices = {h.name: _resolve_host_device(h) for h in spec.hosts}
    skey = {m.name: settings_key(m) for m in spec.models}
    by_id = {p.id: p for p in fleet.placements}
    obtained = cap_used = 0.0
    for h in fleet.hosts:
        d = devices[h.name]
        for g in h.gpus:
            if not g.members:
                continue
            cap_used += d.budget * d.total_gib
            su = sfp = 0.0
            for mid in g.members:
                p = by_id[mid]
                dm = demands[(skey[p.name], device_key(d))]
                su += dm.fraction
                sfp += dm.footprint_gib
                obtained += dm.kv_gib
            obtained += max(0.0, min((d.budget - su) * d.total_gib, d.total_gib - d.used_gib - sfp))
    cap_all = sum(d.budget * d.total_gib * d.count for d in devices.values())
    tp = {m.name: m.tensor_parallel_size for m in spec.models}
    cheapest = {}
    for m in spec.models:
        costs = [dm.nonkv_gib for (k, _), dm in demands.items() if k == skey[m.name] and dm.error is None]
        cheapest[m.name] = min(costs) if costs else 0.0
    nonkv_placed = sum(cheapest[p.name] * tp[p.name] for p in fleet.placements)
    nonkv_all = sum(cheapest[m.name] * tp[m.name] * m.replicas for m in spec.models)
    bound_used = cap_used - nonkv_placed
    bound_all = cap_all - nonkv_all
    return {
        "obtained": obtained,
        "bound_used": bound_used,
        "bound_all": bound_all,
        "eff_used": obtained / bound_used if bound_used > 0 else float("nan"),
        "eff_all": obtained / bound_all if bound_all > 0 else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=500)
    ap.add_argument("--placement", choices=["pack", "spread"], default="pack")
    ap.add_argument("--verify", action="store_true", help="also verify every GPU with the full planner")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if not (1 <= a.hosts <= 100 and 1 <= a.replicas <= 500):
        ap.error("--hosts 1..100, --replicas 1..500")

    from residency.planner.placement import place_fleet

    spec = synthetic_spec(a.hosts, a.replicas, a.placement)
    demands: dict = {}
    t0 = time.perf_counter()
    fleet = place_fleet(spec, verify=a.verify, use_calibration=False, demand_cache=demands)
    placement_s = time.perf_counter() - t0
    e = efficiency(spec, fleet, demands)
    gpus_used = sum(1 for h in fleet.hosts for g in h.gpus if g.members)
    gpus = sum(len(h.gpus) for h in fleet.hosts)
    out = {
        "placement_s": round(placement_s, 4),
        "packing_efficiency": round(e["eff_used"], 4),
        "placed": len(fleet.placements),
        "unplaced": len(fleet.unplaced),
    }
    if a.json:
        print(json.dumps(out))
        return 0
    print(
        f"fleet: {a.hosts} hosts ({gpus} GPUs), {len(spec.models)} model entries, {a.replicas} replicas, {a.placement}"
    )
    print(
        f"placement time: {placement_s:.3f} s ({len(demands)} (settings, device type) demands from the memory model, then cached)"
    )
    print(f"placed {out['placed']}, unplaced {out['unplaced']}, GPUs used {gpus_used} of {gpus}")
    print(
        f"KV cache obtained {e['obtained']:,.0f} GiB; bound on the GPUs used {e['bound_used']:,.0f} GiB: "
        f"packing efficiency {e['eff_used']:.1%}"
    )
    print(
        "  bound: the GPUs used as one divisible pool (sum of budget x total) minus every placed replica's "
        "non-KV memory at its cheapest device type (ignores CUDA context/host RSS and the free-memory rule)"
    )
    print(
        f"  over the whole fleet (idle GPUs count as lost): bound {e['bound_all']:,.0f} GiB, {e['eff_all']:.1%}"
    )
    if fleet.unplaced:
        print(f"first refusal: {fleet.unplaced[0].reason}; fix: {fleet.unplaced[0].fix}")
    return 0 if math.isfinite(e["eff_used"]) else 1


if __name__ == "__main__":
    sys.exit(main())
