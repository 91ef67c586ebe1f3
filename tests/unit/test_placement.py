"""Fleet placement: hand-checked bin-packing on synthetic demands, and verification with a toy planner.

The packing tests feed `place_fleet` a synthetic demand table (fraction, requested, footprint per
device) so every number can be checked by hand, independent of the memory model. Device: total
100 GiB, budget 0.95, unless stated. A demand of fraction u has requested = 100 u GiB and
footprint = requested + 1 GiB (CUDA context), unless stated.
"""

from __future__ import annotations

import math

import pytest

from residency.planner.placement import Demand, place_fleet, planner_demand
from residency.planner.result import DevicePlan, ModelPlan, Plan
from residency.spec import parse_spec

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def demand_table(table: dict[str, float], overhead: float = 1.0, errors: dict | None = None):
    """demand_fn from {model name: fraction} (device total taken from the device)."""
    errors = errors or {}

    def fn(m, d, v):
        u = table[m.name]
        req = u * d.total_gib
        return Demand(
            fraction=u,
            requested_gib=req,
            footprint_gib=req + overhead,
            kv_gib=req / 2,
            nonkv_gib=req / 2,
            concurrency=4.0,
            need=4.0,
            error=errors.get(m.name),
        )

    return fn


def spec_of(hosts, models, placement="pack"):
    return parse_spec({"hosts": hosts, "models": models, "placement": placement})


def host(name, count=1, total=100.0, used=0.0, unified=False, budget=0.95):
    return {
        "name": name,
        "device": {
            "name": "t",
            "total_gib": total,
            "unified": unified,
            "count": count,
            "used_gib": used,
            "budget": budget,
        },
    }


def model(name, replicas=1, **kw):
    # a distinct model id per name: demands are cached per engine settings, and the id is one of them
    return {"name": name, "model": f"toy/{name}", "replicas": replicas, **kw}


def where(fp):
    return {f"{p.name}#{p.replica}": f"{p.host}:{','.join(map(str, p.gpus))}" for p in fp.placements}


# --------------------------------------------------------------------------------------------
# hand-checked packing
# --------------------------------------------------------------------------------------------

TWO_HOSTS = [host("a"), host("b")]
THREE_MODELS = [model("m1"), model("m2"), model("m3", replicas=2)]
FRACTIONS = {"m1": 0.5, "m2": 0.4, "m3": 0.3}


def test_pack_refuses_the_second_replica_that_spread_places():
    """Best-fit decreasing on hosts a, b (one 100 GiB GPU each), sizes m1 .5, m2 .4, m3 .3 x2.

    m1 -> a (both empty, lowest index). m2: on a, sum .9 <= .95 and the free check of the last
    process is 0 + 51 + 40 = 91 <= 100, room left min(5, 100-51-41=8) = 5 GiB; on b 55: best fit a.
    m3#0: a would sum 1.2 > .95, so b. m3#1: a is full, b already holds m3 (replicas need distinct
    GPUs): refused. Largest free for it: a has .05 (budget) vs (100-92-1)/100 = .07 -> .05.
    """
    fp = place_fleet(spec_of(TWO_HOSTS, THREE_MODELS), demand_fn=demand_table(FRACTIONS), verify=False)
    assert where(fp) == {"m1#0": "a:0", "m2#0": "a:0", "m3#0": "b:0"}
    assert not fp.fits
    [u] = fp.unplaced
    assert (u.name, u.replica) == ("m3", 1)
    assert u.needs_fraction == pytest.approx(0.3)
    assert u.largest_free == pytest.approx(0.05)
    assert u.largest_free_on == "a:0"
    assert "needs 0.30 of a GPU; largest free is 0.05 on a:0" in u.reason
    assert "add a host" in u.fix
    # least-loaded would place all four: the fix says so
    assert "placement: spread (it places 4 of 4 replicas)" in u.fix


def test_spread_changes_the_answer():
    """Least-loaded: m1 -> a (tie). m2 -> b (.55 left vs .05). m3#0: a leaves .15, b .25 -> b.
    m3#1: b holds m3 already; a: sum .5 + .3 = .8 <= .95, free check 0 + 51 + 30 = 81 <= 100 -> a.
    """
    fp = place_fleet(
        spec_of(TWO_HOSTS, THREE_MODELS, "spread"), demand_fn=demand_table(FRACTIONS), verify=False
    )
    assert where(fp) == {"m1#0": "a:0", "m2#0": "b:0", "m3#0": "b:0", "m3#1": "a:0"}
    assert fp.fits and not fp.unplaced


def test_pack_fills_one_gpu_before_touching_the_next():
    """Four .2 models on a 2-GPU host: .8 <= .95 and 0 + 3 x 21 + 20 = 83 <= 100 -> all on gpu 0."""
    models = [model(f"s{i}") for i in range(4)]
    fp = place_fleet(
        spec_of([host("h", count=2)], models),
        demand_fn=demand_table(dict.fromkeys(["s0", "s1", "s2", "s3"], 0.2)),
        verify=False,
    )
    assert set(where(fp).values()) == {"h:0"}
    fp = place_fleet(
        spec_of([host("h", count=2)], models, "spread"),
        demand_fn=demand_table(dict.fromkeys(["s0", "s1", "s2", "s3"], 0.2)),
        verify=False,
    )
    assert sorted(where(fp).values()) == ["h:0", "h:0", "h:1", "h:1"]


def test_unified_host_free_memory_check_binds_before_the_budget():
    """Spark-like host: 119.67 GiB unified, 5 GiB used by the OS, engine overhead 8 GiB (context +
    host RSS). Two models at .45: the budget allows .90 <= .95, but the second one's startup check
    needs 5 + (53.85 + 8) + 53.85 = 120.70 > 119.67 GiB free -> refused. At .44 each:
    5 + (52.65 + 8) + 52.65 = 118.31 <= 119.67 -> both fit.
    """
    spark = [host("spark", total=119.67, used=5.0, unified=True)]
    spark[0]["device"]["host_reserve_gib"] = 0  # the check alone (the reserve: next test)
    models = [model("x"), model("y")]
    fp = place_fleet(
        spec_of(spark, models), demand_fn=demand_table({"x": 0.45, "y": 0.45}, overhead=8.0), verify=False
    )
    assert [p.name for p in fp.placements] == ["x"]
    assert fp.unplaced[0].name == "y"
    fp = place_fleet(
        spec_of(spark, models), demand_fn=demand_table({"x": 0.44, "y": 0.44}, overhead=8.0), verify=False
    )
    assert sorted(p.name for p in fp.placements) == ["x", "y"] and fp.fits


def test_unified_host_keeps_its_host_reserve():
    """The default reserve (8.2 GiB, memory/unified.py) stays free beside the footprints: .44 + .44 no longer fit."""
    spark = [host("spark", total=119.67, used=5.0, unified=True)]
    fp = place_fleet(
        spec_of(spark, [model("x"), model("y")]),
        demand_fn=demand_table({"x": 0.44, "y": 0.44}, overhead=8.0),
        verify=False,
    )
    assert [p.name for p in fp.placements] == ["x"] and fp.unplaced[0].name == "y"


def test_launch_order_decides_which_request_is_checked_last():
    """Placed big-first, but launched in spec order: small (listed first) then big.
    small .10 (fp 10+6=16), big .80 (req 80): the free check of big, launched second, is
    0 + 16 + 80 = 96 <= 100 and the sum .90 <= .95 -> fits. The other way round (big listed first)
    small's check is 0 + 86 + 10 = 96 too; with overhead 6 both orders fit, so the order of
    the pool's members must be the spec's order.
    """
    fp = place_fleet(
        spec_of([host("h")], [model("small"), model("big")]),
        demand_fn=demand_table({"small": 0.10, "big": 0.80}, overhead=6.0),
        verify=False,
    )
    assert fp.fits
    assert fp.hosts[0].gpus[0].members == ["small#0", "big#0"]
    # overhead 11: big launched second needs 0 + 21 + 80 = 101 > 100 -> big refused
    fp = place_fleet(
        spec_of([host("h")], [model("small"), model("big")]),
        demand_fn=demand_table({"small": 0.10, "big": 0.80}, overhead=11.0),
        verify=False,
    )
    # big is placed first (largest first); small then joins as the EARLIER launch: its insertion
    # keeps big last: 0 + (11 + 21 + 91) - 91 + 80 = 101 > 100 -> small refused instead.
    assert [p.name for p in fp.placements] == ["big"]
    assert fp.unplaced[0].name == "small"


def test_tensor_parallel_takes_gpus_of_one_host_and_pins_are_honoured():
    """tp2 (.5 per GPU, 2 GPUs) cannot go on the 1-GPU host a; it takes both GPUs of b.
    `pinned` must go to a although b still has room.
    """
    hosts = [host("a"), host("b", count=2)]
    models = [model("tp2", tensor_parallel_size=2), model("pinned", host="a")]
    fp = place_fleet(
        spec_of(hosts, models), demand_fn=demand_table({"tp2": 0.5, "pinned": 0.1}), verify=False
    )
    assert where(fp) == {"tp2#0": "b:0,1", "pinned#0": "a:0"}


def test_refusals_name_the_reason_and_the_nearest_fix():
    hosts = [host("a", count=2)]
    fp = place_fleet(
        spec_of(hosts, [model("huge", tensor_parallel_size=4), model("bad")]),
        demand_fn=demand_table({"huge": 0.5, "bad": 0.5}, errors={"bad": "weights do not fit"}),
        verify=False,
    )
    reasons = {u.name: u for u in fp.unplaced}
    assert "tensor_parallel_size 4 needs 4 GPUs on one host; any host has at most 2" in reasons["huge"].reason
    assert "lower tensor_parallel_size to 2" in reasons["huge"].fix
    assert "weights do not fit" in reasons["bad"].reason
    assert not fp.fits and not fp.placements


def test_more_replicas_than_gpus_is_refused_with_the_replica_rule():
    fp = place_fleet(
        spec_of([host("a", count=2)], [model("r", replicas=3)]),
        demand_fn=demand_table({"r": 0.1}),
        verify=False,
    )
    assert len(fp.placements) == 2
    [u] = fp.unplaced
    assert "already holds a replica of r" in u.reason and "lower replicas of r" in u.fix


def test_ports_are_distinct_per_host_and_skip_the_proxy_port():
    fp = place_fleet(
        spec_of([host("a", count=3)], [model("p", replicas=2, port=8000), model("q", port=8001)]),
        demand_fn=demand_table({"p": 0.1, "q": 0.1}),
        verify=False,
    )
    ports = {f"{p.name}#{p.replica}": p.port for p in fp.placements}
    assert ports == {"p#0": 8000, "p#1": 8001, "q#0": 8002}


# --------------------------------------------------------------------------------------------
# verification with a toy planner (the contract of plan_stack, linear memory model)
# --------------------------------------------------------------------------------------------

# weights+activation (non-KV) GiB and KV GiB per request at max_model_len, per GPU at TP=1
TOY = {"a": (10.0, 2.0), "b": (20.0, 4.0), "c": (40.0, 5.0)}
CTX = 0.5
TOY_DEFAULT_SEQS = 8  # the toy "vLLM default" max_num_seqs when the spec is silent


def toy_plan(spec) -> Plan:
    """A planner obeying plan_stack's contract: non-KV and KV per request from TOY, split by TP.

    Solver: fractions absent in the spec get their minimum ((nonkv + kv/req x need) / total,
    rounded up to 0.001) plus the slack split in proportion to the minimum.
    """
    d = spec.device
    total = d.total_gib
    mins = {}
    for m in spec.models:
        nonkv, per_req = (x / m.tensor_parallel_size for x in TOY[m.name.split("-")[0]])
        need = m.min_concurrency or m.max_num_seqs or TOY_DEFAULT_SEQS
        mins[m.name] = (nonkv, per_req, math.ceil((nonkv + per_req * need) / total * 1000) / 1000)
    fixed = sum(m.gpu_memory_utilization or 0 for m in spec.models)
    free_models = [m for m in spec.models if m.gpu_memory_utilization is None]
    min_sum = sum(mins[m.name][2] for m in free_models)
    slack = max(0.0, d.budget - fixed - min_sum)
    out, used = [], d.used_gib
    fits = True
    for m in spec.models:
        nonkv, per_req, umin = mins[m.name]
        u = m.gpu_memory_utilization or (umin + slack * umin / min_sum)
        req = u * total
        free = total - used
        kv = req - nonkv
        ok = free >= req and kv > 0
        fits &= ok
        fp = req + CTX
        used += fp
        out.append(
            ModelPlan(
                name=m.name,
                model=m.model,
                gpu_memory_utilization=round(u, 4),
                requested_gib=req,
                free_at_start_gib=free,
                weights_gib=nonkv,
                activation_gib=0,
                non_torch_gib=0,
                cudagraph_gib=0,
                kv_cache_gib=kv,
                kv_cache_tokens=int(kv * 1000),
                max_concurrency=kv / per_req,
                block_size=16,
                footprint_gib=fp,
                verdict="ok" if ok else "fail",
                tensor_parallel_size=m.tensor_parallel_size,
                max_num_seqs=m.max_num_seqs or TOY_DEFAULT_SEQS,
            )
        )
    fits &= sum(m.gpu_memory_utilization for m in out) <= d.budget + 1e-6
    return Plan(
        vllm_version=spec.vllm_version,
        device=DevicePlan(
            name="t",
            total_gib=total,
            unified=bool(d.unified),
            used_gib=d.used_gib,
            budget_gib=d.budget * total,
        ),
        fits=fits,
        utilization_sum=sum(m.gpu_memory_utilization for m in out),
        launch_order=[m.name for m in spec.models],
        models=out,
    )


def test_planner_demand_solves_the_minimum_fraction_from_one_probe():
    """Model b on 100 GiB: non-KV 20, 4 GiB per request, max_num_seqs 5 -> (20 + 20) / 100 = .40."""
    s = spec_of([host("h")], [model("b", max_num_seqs=5)])
    dm = planner_demand(s.models[0], s.hosts[0].device, s.vllm_version, plan_fn=toy_plan)
    assert dm.fraction == pytest.approx(0.40)
    assert dm.concurrency == pytest.approx(5.0)
    assert dm.footprint_gib == pytest.approx(40.5)
    assert dm.error is None
    # needing 30 requests: (20 + 120) / 100 = 1.4 > 1 -> cannot serve on this device
    s = spec_of([host("h")], [model("b", max_num_seqs=30)])
    dm = planner_demand(s.models[0], s.hosts[0].device, s.vllm_version, plan_fn=toy_plan)
    assert dm.error and "needs 30" in dm.error


def test_demand_without_max_num_seqs_is_one_full_length_request_like_the_solver():
    """No max_num_seqs or min_concurrency in the spec: vLLM's default (8 in the toy) is a scheduler cap,
    not a demand, so placement asks for one full-length request, as the solver does:
    (10 + 2 x 1) / 100 = .12, not (10 + 2 x 8) / 100 = .26."""
    s = spec_of([host("h")], [model("a")])
    dm = planner_demand(s.models[0], s.hosts[0].device, s.vllm_version, plan_fn=toy_plan)
    assert dm.need == 1 and dm.fraction == pytest.approx(0.12)


def test_verification_hands_out_the_slack_and_keeps_tp_fractions_equal():
    """Host h: 2 GPUs of 100 GiB. c (tp2, 2 requests): per GPU non-KV 20, 2.5/req -> .25 on both.
    a (1 request): .12. b (2 requests): .28. Pack: c on 0+1 (sizes: c 25.5x2=51 first), then b
    -> gpu 0 (room after: min(95-53, 100-25.5-28.5)= 42... vs gpu 1 the same: lowest index), a ->
    gpu 0 too (room 30 vs 42+...). The solver then gives gpu 0's slack to c, b, a in proportion and
    gpu 1's (only c) all to c: c's fraction differs per GPU, so it is fixed to the smaller (gpu 0)
    value and gpu 1 is re-planned. Result: one fraction for c on both GPUs.
    """
    s = spec_of(
        [host("h", count=2)],
        [
            model("c", tensor_parallel_size=2, max_num_seqs=2),
            model("a", max_num_seqs=1),
            model("b", max_num_seqs=2),
        ],
    )
    fp = place_fleet(s, plan_fn=toy_plan)
    assert fp.fits, fp.warnings
    w = where(fp)
    assert w == {"c#0": "h:0,1", "a#0": "h:0", "b#0": "h:0"}
    g0 = fp.hosts[0].gpus[0].plan
    g1 = fp.hosts[0].gpus[1].plan
    u0 = {m["name"]: m["gpu_memory_utilization"] for m in g0["models"]}
    u1 = {m["name"]: m["gpu_memory_utilization"] for m in g1["models"]}
    assert u0["c"] == u1["c"]
    # gpu 0: minimums .25 + .12 + .28 = .65, slack .30 -> c gets .25 + .30 x .25/.65 = .3654
    assert u0["c"] == pytest.approx(0.3654, abs=1e-3)
    assert sum(u0.values()) == pytest.approx(0.95, abs=1e-3)
    c = fp.by_model("c")[0]
    assert c.gpu_memory_utilization == u0["c"] and c.min_fraction == pytest.approx(0.25)
