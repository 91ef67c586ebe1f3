"""`fleet --explain` (plan --explain on a hosts: spec): the candidate figures are the ones the search compared.

Synthetic demands (as in test_placement.py): fraction u on a device of total T asks requested = u T GiB
and footprint = u T + 1 GiB; the figures below are worked by hand from Pool.room_after:
left = min((budget - sum u) x T, T - used - footprints)."""

from __future__ import annotations

import re

from test_placement import demand_table, host, model, spec_of

from residency.planner.placement import place_fleet


def _line(hosts, models, demands: dict[str, float], name: str, placement: str | None = None) -> str:
    """The explain line of replica `name` in the fleet placed from these hosts, models and demands."""
    spec = spec_of(hosts, models, placement) if placement else spec_of(hosts, models)
    fp = place_fleet(spec, demand_fn=demand_table(demands), verify=False, explain=True)
    (line,) = [n for n in fp.explain if n.startswith(name)]
    return line


def test_spread_shows_the_share_it_compared_not_gib():
    """a: 100 GiB, 30 used; b: 40 GiB. x (u 0.3) on a: min(.65 x 100, 100 - 30 - 31) = 39 GiB = 39 %;
    on b: min(.65 x 40, 40 - 13) = 26 GiB = 65 %. Least loaded compares the share: b, though a keeps
    more GiB (the old line showed only GiB, 39 vs 26, next to a choice of b)."""
    line = _line([host("a", used=30.0), host("b", total=40.0)], [model("x")], {"x": 0.3}, "x#0", "spread")
    assert "least loaded -> b:0" in line
    assert "a:0 leaves 39% (39.0 GiB)" in line and "b:0 leaves 65% (26.0 GiB)" in line


def test_spread_names_a_host_holding_a_replica_already():
    """y x2 on a (2 GPUs of 100) and b (1 GPU of 100): y#0 -> a (tie on 65 %, lower host index);
    y#1 prefers b, a host without y, though a's second GPU leaves the same 65 %."""
    line = _line([host("a", count=2), host("b")], [model("y", replicas=2)], {"y": 0.3}, "y#1", "spread")
    assert "-> b:0" in line
    assert (
        "a:1 leaves 65% (65.0 GiB) (holds a replica already)" in line and "b:0 leaves 65% (65.0 GiB)" in line
    )


def test_pack_shows_the_gib_it_compared():
    """m1 (.5) -> a; m2 (.4): on a min((.95 - .9) x 100, 100 - 51 - 41) = 5 GiB, on b min(55, 59) = 55:
    best fit keeps the least: a."""
    line = _line([host("a"), host("b")], [model("m1"), model("m2")], {"m1": 0.5, "m2": 0.4}, "m2#0")
    assert "best fit -> a:0" in line
    cands = dict(re.findall(r"(\w:\d) leaves ([\d.]+) GiB", line))
    assert cands == {"a:0": "5.0", "b:0": "55.0"}
