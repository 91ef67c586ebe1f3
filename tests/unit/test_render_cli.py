"""`residency render` and `up` at the command line (the plan is hand-built: no planner involved)."""

from __future__ import annotations

import stat

import pytest
import yaml
from test_render_helpers import two_model_plan, two_model_spec

import residency.render.stack as rstack
from residency.cli import main


@pytest.fixture
def spec_file(tmp_path, monkeypatch):
    spec = two_model_spec()
    p = tmp_path / "stack.yaml"
    p.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True)))
    plan = two_model_plan()
    monkeypatch.setattr(rstack, "plan_for", lambda s: plan)
    return p, plan


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_render_then_refuse_then_force(spec_file, tmp_path, capsys):
    p, plan = spec_file
    out_dir = tmp_path / "out"
    code, out, _ = _run(["render", str(p), "-o", str(out_dir)], capsys)
    assert code == 0
    assert "created" in out and "compose.yaml" in out
    env = out_dir / ".env"
    key = env.read_text().split("LITELLM_MASTER_KEY=")[1].strip()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert key not in out
    for rel in ("compose.yaml", "litellm.yaml", "agents.md", "k8s/qwen3-next.yaml", "k8s/litellm.yaml"):
        assert (out_dir / rel).is_file()

    # unchanged re-render: fine, nothing rewritten
    code, out, _ = _run(["render", str(p), "-o", str(out_dir)], capsys)
    assert code == 0 and "unchanged" in out and "updated" not in out

    # a changed plan: diff printed, exit 1, files untouched
    plan.models[0].max_num_seqs = 32
    before = (out_dir / "compose.yaml").read_text()
    code, out, err = _run(["render", str(p), "-o", str(out_dir)], capsys)
    assert code == 1
    assert "+++ b/compose.yaml" in out and "-    - '16'" in out and "+    - '32'" in out
    assert "--force" in err
    assert (out_dir / "compose.yaml").read_text() == before
    assert key not in out + err

    code, out, _ = _run(["render", str(p), "-o", str(out_dir), "--force"], capsys)
    assert code == 0 and "updated" in out
    assert "'32'" in (out_dir / "compose.yaml").read_text()
    # the key survives --force
    assert env.read_text().split("LITELLM_MASTER_KEY=")[1].strip() == key

    # --rotate-key alone changes only .env: allowed, key never shown
    code, out, err = _run(["render", str(p), "-o", str(out_dir), "--rotate-key"], capsys)
    assert code == 0
    new_key = env.read_text().split("LITELLM_MASTER_KEY=")[1].strip()
    assert new_key != key and new_key not in out + err and key not in out + err


def test_render_refuses_a_plan_that_does_not_fit(spec_file, tmp_path, capsys):
    from residency.planner.result import PlanError

    p, plan = spec_file
    plan.fits = False
    plan.models[0].verdict = "fail"
    plan.models[0].error = PlanError(
        kind="free_memory", message="Free memory ... less than desired", fix="lower it"
    )
    code, _, err = _run(["render", str(p), "-o", str(tmp_path / "o")], capsys)
    assert code == 1
    assert "free_memory" in err and "lower it" in err
    assert not (tmp_path / "o").exists()


def test_up_without_vllm_executable_is_a_clear_error(spec_file, tmp_path, capsys, monkeypatch):
    p, _ = spec_file
    monkeypatch.delenv("RESIDENCY_VLLM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no vllm here
    code, _, err = _run(["up", str(p), "--state-dir", str(tmp_path / "st")], capsys)
    assert code == 2
    assert "vllm" in err and "RESIDENCY_VLLM" in err
    assert "Traceback" not in err


def test_down_with_nothing_running(spec_file, tmp_path, capsys):
    p, _ = spec_file
    code, out, _ = _run(["down", str(p), "--state-dir", str(tmp_path / "st")], capsys)
    assert code == 0 and "nothing to stop" in out
