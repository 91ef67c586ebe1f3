"""`residency plan` on the bundled multi-host example, with the real planner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from residency.cli import main
from residency.planner.placement import place_fleet
from residency.spec import load_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from residency.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plan_json_is_the_fleet_contract_and_every_replica_is_placed():
    r = run("plan", str(EXAMPLE), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert {"hosts", "placements", "unplaced", "fits"} <= set(d)
    assert d["fits"] is True and d["unplaced"] == []
    spec = load_spec(EXAMPLE)
    assert len(d["placements"]) == sum(m.replicas for m in spec.models) == 10
    # every GPU that holds replicas carries the planner's own plan for its set, and it fits
    for h in d["hosts"]:
        for g in h["gpus"]:
            if g["members"]:
                assert g["plan"]["fits"] is True
                assert g["plan"]["utilization_sum"] <= 0.95 + 1e-9
    # the pin holds; tensor-parallel replicas take both GPUs of one H100 box
    by = {(p["name"], p["replica"]): p for p in d["placements"]}
    assert by[("moe", 0)]["host"] == "spark"
    assert by[("coder", 0)]["gpus"] == [0, 1] and by[("coder", 1)]["gpus"] == [0, 1]
    assert by[("coder", 0)]["host"] != by[("coder", 1)]["host"]
    # replicas of one model on distinct GPUs
    seen = set()
    for p in d["placements"]:
        for gpu in p["gpus"]:
            assert (p["name"], p["host"], gpu) not in seen
            seen.add((p["name"], p["host"], gpu))


def test_plan_explain_shows_the_search():
    r = run("plan", str(EXAMPLE), "--explain")
    assert r.returncode == 0, r.stderr
    assert "search (largest replicas first)" in r.stdout
    assert "moe#0 needs" in r.stdout and "best fit -> spark:0" in r.stdout


def test_refused_fleet_exits_1_with_reason_and_fix(tmp_path):
    """The example with 6 coder replicas (tensor_parallel 2): only the two H100 boxes have 2 GPUs."""
    text = EXAMPLE.read_text().replace(
        "    replicas: 2\n    tensor_parallel_size: 2", "    replicas: 6\n    tensor_parallel_size: 2"
    )
    assert text != EXAMPLE.read_text()
    p = tmp_path / "fleet.yaml"
    p.write_text(text)
    r = run("plan", str(p))
    assert r.returncode == 1
    assert "unplaced coder#2" in r.stdout and "fix:" in r.stdout
    d = json.loads(run("plan", str(p), "--json").stdout)
    assert d["fits"] is False and [u["replica"] for u in d["unplaced"] if u["name"] == "coder"] == [
        2,
        3,
        4,
        5,
    ]


def test_spread_puts_replicas_on_more_gpus_than_pack():
    spec = load_spec(EXAMPLE)
    packed = place_fleet(spec, verify=False)
    spread = place_fleet(spec.model_copy(update={"placement": "spread"}), verify=False)
    used = lambda f: sum(1 for h in f.hosts for g in h.gpus if g.members)  # noqa: E731
    assert not packed.unplaced and not spread.unplaced
    assert used(packed) == 5  # spark + both GPUs of both H100 boxes (the coders fill them)
    # the Spark keeps its host reserve (8.2 GiB, unified memory) beside moe: room for one small replica only.
    # Best fit packs fast's other two replicas onto one H100 box; least-loaded spreads them over both
    hosts = lambda f, n: sorted(p.host for p in f.placements if p.name == n)  # noqa: E731
    assert hosts(packed, "fast") == ["h100-a", "h100-a", "spark"]
    assert hosts(spread, "fast") == ["h100-a", "h100-b", "spark"]


@pytest.mark.parametrize("bad", ["nohost"])
def test_pin_to_unknown_host_is_a_spec_error(tmp_path, bad):
    p = tmp_path / "fleet.yaml"
    p.write_text(EXAMPLE.read_text().replace("host: spark", f"host: {bad}"))
    r = run("plan", str(p))
    assert r.returncode == 2
    assert "names host 'nohost', which is not in hosts" in r.stderr
    assert "Traceback" not in r.stderr


def test_bench_json_reports_the_four_figures():
    bench = EXAMPLE.parents[1] / "bench" / "fleet.py"
    r = subprocess.run(
        [sys.executable, str(bench), "--hosts", "6", "--replicas", "24", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) == {"placement_s", "packing_efficiency", "placed", "unplaced"}
    assert d["placed"] + d["unplaced"] == 24
    # obtained KV can never exceed the bound (it ignores CUDA contexts and the free-memory rule)
    assert 0 < d["packing_efficiency"] <= 1


def test_render_cli_writes_per_host_compose_and_one_proxy_config(tmp_path):
    out = tmp_path / "fleet"
    r = run("render", str(EXAMPLE), "-o", str(out))
    assert r.returncode == 0, r.stderr
    spec = load_spec(EXAMPLE)
    for h in spec.hosts:
        assert (out / f"compose.{h.name}.yaml").is_file()
    import yaml

    cfg = yaml.safe_load((out / "litellm.yaml").read_text())
    names = [e["model_name"] for e in cfg["model_list"]]
    # replicas of one model are deployments of one model_name: 'fast' has 3 replicas in the example
    assert names.count("fast") == 3
    assert (out / ".env").stat().st_mode & 0o777 == 0o600
    key = next(
        ln.split("=", 1)[1]
        for ln in (out / ".env").read_text().splitlines()
        if ln.startswith("LITELLM_MASTER_KEY=")
    )
    assert key and key not in r.stdout + r.stderr


@pytest.mark.parametrize("flag", [["--svg", "x.svg"], ["--together"], ["--live"]])
def test_one_device_options_are_refused_for_a_fleet(flag, tmp_path, capsys):
    # they were silently ignored: `plan fleet.yaml --svg F` wrote nothing and exited 0
    fleet = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
    args = [str(tmp_path / a) if a.endswith(".svg") else a for a in flag]
    with pytest.raises(SystemExit) as ex:
        main(["plan", str(fleet), *args])
    err = capsys.readouterr().err
    assert ex.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"residency: {flag[0]}: applies to a one-device spec")
    assert not (tmp_path / "x.svg").exists()
