"""Accuracy guard: per development record the planner can express, the predicted verdict and available KV.

The expectations live in ONE file, tests/fixtures/accuracy-guard.json (how to update it is written inside):
per record the verdict vLLM logged, the error kind predicted today, and a tolerance on |predicted -
logged| available KV = today's error + a small margin, so a change that makes any prediction worse fails.
Predictions come from bench/accuracy.py over the vendored records (tests/fixtures/reference).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
GUARD = json.loads((REPO / "tests" / "fixtures" / "accuracy-guard.json").read_text())
UPDATE = "see how_to_update in tests/fixtures/accuracy-guard.json"


@pytest.fixture(scope="module")
def acc():
    return load_script(REPO / "bench" / "accuracy.py", "bench_accuracy")


@pytest.fixture(scope="module")
def rows(acc) -> dict[str, dict]:
    recs = [json.loads(x) for x in acc.DEV_RECORDS.read_text().splitlines() if x.strip()]
    got, _ = acc.run(recs)
    return {x["id"]: x for x in got}


@pytest.mark.parametrize("rid", sorted(GUARD["records"]))
def test_prediction_is_no_worse(rid, rows):
    g = GUARD["records"][rid]
    x = rows.get(rid)
    assert x is not None, f"{rid} is no longer expressed by bench/accuracy.py ({UPDATE})"
    assert x["verdict_pred"] == g["verdict"], f"{rid}: predicted {x['verdict_pred']}, vLLM logged {g['verdict']}"
    assert x["error_pred"] == g["error_kind"], f"{rid}: predicted error {x['error_pred']}, expected {g['error_kind']}"
    if g["kv_logged"] is None:
        return  # a failure without a logged KV figure: the verdict and kind are what can be checked
    err = abs(x["kv_pred"] - g["kv_logged"])
    assert err <= g["kv_tolerance_gib"], (
        f"{rid}: available KV predicted {x['kv_pred']:.3f} GiB, logged {g['kv_logged']} GiB: |error| {err:.3f} > "
        f"tolerance {g['kv_tolerance_gib']} (was {g['kv_pred_when_written']} when the guard was written; {UPDATE})"
    )


def test_guard_covers_every_expressed_record(rows):
    new = sorted(set(rows) - set(GUARD["records"]))
    assert not new, f"records now expressed but not guarded: {new}: run python bench/accuracy.py --write-guard"


def test_tolerances_are_tight():
    # "tight": today's error plus the stated margin, never a blanket allowance
    margin = GUARD["margin_gib"]
    assert margin <= 0.02
    for rid, g in GUARD["records"].items():
        if g["kv_logged"] is not None:
            today = abs(g["kv_pred_when_written"] - g["kv_logged"])
            assert g["kv_tolerance_gib"] <= today + margin + 0.01, rid


def test_leave_one_out_recovers_constants_the_records_were_made_with(acc):
    # records whose "logged" KV was made by the planner itself with ACT_BASE +20% and ACT_HIDDEN_COPIES
    # +25%: refitting without each record must find those values and predict it almost exactly
    recs = [json.loads(x) for x in acc.DEV_RECORDS.read_text().splitlines() if x.strip()]
    made = acc._kv_by_id(recs, {"ACT_BASE": 0.2, "ACT_HIDDEN_COPIES": 0.25})
    for r in recs:
        if r["id"] in made and r.get("available_kv_gib") is not None:
            r["available_kv_gib"] = made[r["id"]]
    rows, _ = acc.run(recs)
    assert max(abs(x["kv_err"]) for x in rows if x["kv_err"] is not None) > 0.05  # written constants miss
    loo = acc.leave_one_out(recs, rows)
    c = loo["constants"]
    assert c["ACT_BASE"]["all_records"] == pytest.approx(1.2 * c["ACT_BASE"]["written"], abs=0.002)
    assert c["ACT_HIDDEN_COPIES"]["all_records"] == pytest.approx(1.25 * c["ACT_HIDDEN_COPIES"]["written"], abs=0.02)
    assert len(loo["rows"]) == sum(1 for x in rows if x["kv_logged"] is not None)
    assert loo["max_abs_kv_err_gib"] <= 0.01
