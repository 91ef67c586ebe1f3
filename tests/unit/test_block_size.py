"""--block-size: refused only where the spec's vLLM refuses it (docs/vllm-versions.md, V10..V21-block-size).

The expected sets are read off vLLM's source by hand (CacheConfig's BlockSize Literal, the attention
backends' kernel block sizes), not computed from residency's rule."""

from __future__ import annotations

import pytest

from residency.errors import SpecError
from residency.planner.plan import plan_stack
from residency.spec import parse_spec


def _spec(version: str, block: int, model: str = "Qwen/Qwen3-8B") -> dict:
    return {
        "vllm_version": version,
        "device": {"preset": "h100-80gb"},
        "models": [{"name": "m", "model": model, "block_size": block, "max_model_len": 8192, "max_num_seqs": 4}],
    }


# (version, block size, accepted by that vLLM on a CUDA device)
CASES = [
    ("0.10.1", 16, True),
    ("0.10.1", 128, True),
    ("0.10.1", 8, False),  # a CLI choice, but FlashAttention: "Block size must be a multiple of 16."
    ("0.10.1", 256, False),  # not a choice before 0.11.1
    ("0.11.0", 48, False),
    ("0.11.1", 256, True),
    ("0.11.1", 8, True),  # FlexAttention takes it
    ("0.17.1", 1, True),
    ("0.17.1", 48, False),  # argparse: invalid choice
    ("0.17.1", 512, False),
    ("0.18.0", 24, True),  # any int; FlexAttention runs it
    ("0.20.2", 7, True),
    ("0.20.2", 48, True),
    ("0.21.0", 24, False),  # FlexAttention needs MultipleOf(16) too
    ("0.21.0", 48, True),
    ("0.33.0", 8, False),
    ("0.33.0", 4096, True),
    ("0.33.0", 8192, True),  # vLLM has no upper bound; residency does not invent one at 4096
]


@pytest.mark.parametrize(("version", "block", "ok"), CASES)
def test_block_size_follows_the_vllm_version(version, block, ok):
    if ok:
        assert parse_spec(_spec(version, block)).models[0].block_size == block
        return
    with pytest.raises(SpecError) as ei:
        parse_spec(_spec(version, block))
    e = ei.value
    assert e.field == "models[0:m].block_size"
    assert str(block) in e.problem and version in e.problem
    assert "\n" not in str(e) and e.fix and e.fix.startswith("use ")


def test_the_fix_names_accepted_neighbours():
    with pytest.raises(SpecError) as ei:
        parse_spec(_spec("0.17.1", 48))
    assert ei.value.fix == "use 32 or 64"
    with pytest.raises(SpecError) as ei:
        parse_spec(_spec("0.33.0", 24))
    assert ei.value.fix == "use 16 or 32"
    with pytest.raises(SpecError) as ei:
        parse_spec(_spec("0.10.1", 8))
    assert ei.value.fix == "use 16 or 32"


def test_bounds_still_refuse_absurd_values():
    for bad in (0, -16, 1 << 26, True):
        with pytest.raises(SpecError) as ei:
            parse_spec(_spec("0.19.0", bad))
        assert "block_size" in ei.value.field


def test_flex_only_size_is_a_note_not_an_error():
    plan = plan_stack(parse_spec(_spec("0.19.0", 24)), use_calibration=False)
    m = plan.models[0]
    assert m.block_size == 24
    assert any("block_size 24" in n and "FlexAttention" in n for n in m.notes), m.notes
    plan16 = plan_stack(parse_spec(_spec("0.19.0", 32)), use_calibration=False)
    assert not any("FlexAttention" in n for n in plan16.models[0].notes)


def test_cli_exit_2_one_line(tmp_path, capsys):
    import yaml

    from residency.cli import main

    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(_spec("0.33.0", 24)))
    with pytest.raises(SystemExit) as ei:
        main(["plan", str(p)])
    assert ei.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "block_size" in err and "use 16 or 32" in err, err


def test_a_cpu_device_is_not_held_to_the_cuda_rule():
    """vLLM's CPU backend has its own block sizes (platforms/cpu.py); residency does not refuse for it."""
    raw = _spec("0.33.0", 24)
    raw["device"] = {"name": "cpu", "total_gib": 24.0, "unified": True}
    assert parse_spec(raw).models[0].block_size == 24
    raw["device"] = {"name": "cpu-box", "total_gib": 24.0, "unified": True}
    assert parse_spec(raw).models[0].block_size == 24
