"""Bad specs exit 2 with one line naming the field, no traceback (issue 2 'Done when')."""

from __future__ import annotations

import json

import pytest

from residency.cli import main

GOOD = """\
vllm_version: "0.33.0"
device: {preset: h100-80gb}
models:
  - name: a
    model: Qwen/Qwen3-4B-Instruct-2507
    gpu_memory_utilization: 0.5
    max_model_len: 8192
"""


def run(tmp_path, text: str, capsys, *args: str) -> tuple[int, str, str]:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(SystemExit) as e:
        main(["plan", str(p), *args])
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_good_spec_exit_0_and_json_contract(tmp_path, capsys):
    code, out, err = run(tmp_path, GOOD, capsys, "--json")
    assert code == 0, err
    p = json.loads(out)
    assert {"vllm_version", "device", "fits", "utilization_sum", "launch_order", "models"} <= set(p)
    assert {"name", "total_gib", "unified", "used_gib", "budget_gib"} <= set(p["device"])
    m = p["models"][0]
    for k in (
        "name",
        "model",
        "gpu_memory_utilization",
        "requested_gib",
        "free_at_start_gib",
        "weights_gib",
        "activation_gib",
        "non_torch_gib",
        "cudagraph_gib",
        "kv_cache_gib",
        "kv_cache_tokens",
        "max_concurrency",
        "block_size",
        "footprint_gib",
        "verdict",
        "error",
    ):
        assert k in m
    assert m["verdict"] == "ok" and m["error"] is None


def test_failing_plan_exit_1(tmp_path, capsys):
    code, out, _ = run(tmp_path, GOOD.replace("0.5", "0.05"), capsys)
    assert code == 1 and "fix" in out


def test_svg_written(tmp_path, capsys):
    svg = tmp_path / "bar.svg"
    code, _, _ = run(tmp_path, GOOD, capsys, "--svg", str(svg))
    assert code == 0 and svg.read_text().startswith("<svg") and "headroom" in svg.read_text()


@pytest.mark.parametrize(
    "text,field",
    [
        (GOOD + "    gpu_mem_util: 0.5\n", "models[0:a].gpu_mem_util"),  # unknown key
        (
            GOOD.replace("max_model_len: 8192", "max_model_len: lots"),
            "models[0:a].max_model_len",
        ),  # wrong type
        (
            GOOD.replace("max_model_len: 8192", "max_model_len: 0"),
            "models[0:a].max_model_len",
        ),  # non-positive
        (GOOD.replace("max_model_len: 8192", "max_num_seqs: -3"), "models[0:a].max_num_seqs"),
        (GOOD.replace("0.5", "1.5"), "models[0:a].gpu_memory_utilization"),  # fraction outside (0, 1]
        (GOOD.replace("0.5", "0"), "models[0:a].gpu_memory_utilization"),
        (GOOD.replace("h100-80gb", "h900"), "device.preset"),  # unknown preset
        (GOOD.replace("device: {preset: h100-80gb}", "device: {used_gib: 1}"), "device.total_gib"),
        (GOOD.replace("Qwen/Qwen3-4B-Instruct-2507", "no-such-model-anywhere"), "a].model"),  # unknown model
        (GOOD.replace('"0.33.0"', '"0.9.0"'), "vllm_version"),
        (GOOD + "  - {name: b, model: x\n", "s.yaml:"),  # malformed YAML
    ],
)
def test_bad_spec_exit_2_one_line_naming_the_field(tmp_path, capsys, text, field):
    code, out, err = run(tmp_path, text, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert field in lines[0]
    assert "Traceback" not in err and out == ""


def test_relative_model_dir_is_relative_to_the_spec_folder_not_the_cwd(tmp_path, monkeypatch):
    from residency.spec import load_spec
    from tests.unit.test_resolve_helpers import write_checkpoint

    stack = tmp_path / "stack"
    write_checkpoint(stack / "models" / "tiny")
    spec_file = stack / "stack.yaml"
    spec_file.write_text(
        "device: {preset: h100-80gb}\n"
        "models:\n"
        "  - {name: tiny, model: ./models/tiny, max_model_len: 256}\n"
        "  - {name: hub, model: Qwen/Qwen3-4B-Instruct-2507, max_model_len: 256}\n"
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: ./models/tiny does not exist from here
    s = load_spec(spec_file)
    assert s.models[0].model == str((stack / "models" / "tiny").resolve())
    assert s.models[1].model == "Qwen/Qwen3-4B-Instruct-2507"  # a hub id stays as given
