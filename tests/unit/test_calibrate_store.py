"""The calibration file: keys, round trip, atomic replace, path resolution, record_launch fills."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from residency.calibrate import store
from residency.calibrate.logparse import parse_log
from residency.calibrate.record import CalibrationKey, Launch, LaunchError
from residency.errors import SpecError
from residency.spec import parse_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv(store.ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _granite() -> Launch:
    (ln,) = parse_log((FIXTURES / "v1-0.11.0-granite-ok.log").read_text())
    return ln


def _key(**kw) -> CalibrationKey:
    base = dict(model="ibm-granite/granite-4.0-micro", vllm_version="0.11.0", device="NVIDIA L40S")
    base.update(kw)
    return CalibrationKey(**base)


def test_round_trip(tmp_path):
    path = tmp_path / "cal.json"
    cal = store.record(_granite(), _key(), path, source="granite.log")
    got = store.find_calibration(_key(), str(path))
    assert got is not None
    assert got.launch.kv_cache_gib == 35.34 and got.launch.weights_gib == 3.4244
    assert got.source == "granite.log" and got.recorded_at == cal.recorded_at
    raw = json.loads(path.read_text())
    assert raw["schema"] == 1 and len(raw["calibrations"]) == 1


def test_exact_key_match_only(tmp_path):
    path = tmp_path / "cal.json"
    store.record(_granite(), _key(), path)
    assert store.find_calibration(_key(vllm_version="0.11.1"), str(path)) is None
    assert store.find_calibration(_key(device="NVIDIA H100 80GB HBM3"), str(path)) is None
    assert store.find_calibration(_key(max_num_seqs=8), str(path)) is None
    assert store.find_calibration(_key(kv_cache_dtype="fp8"), str(path)) is None
    assert store.find_calibration(_key(tensor_parallel_size=2), str(path)) is None


def test_key_normalization(tmp_path):
    path = tmp_path / "cal.json"
    # a local build suffix, 'torch.' and 'None' spellings, and a preset id all name the same key
    store.record(
        _granite(), _key(vllm_version="0.11.0+582e4e37.nv25.11", dtype="auto", quantization="None"), path
    )
    assert store.find_calibration(_key(vllm_version="v0.11.0"), str(path)) is not None
    store.record(_granite(), _key(device="dgx-spark"), path)
    assert store.find_calibration(_key(device="NVIDIA GB10"), str(path)) is not None
    assert store.base_version("0.8.3.dev172+g2b93162f") == "0.8.3"
    assert store.base_version("0.10.1.1") == "0.10.1.1"


def test_same_key_replaces_older_entry_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "cal.json"
    store.record(_granite(), _key(), path)
    newer = _granite().model_copy(update={"kv_cache_gib": 35.0})
    store.record(newer, _key(), path)
    store.record(_granite(), _key(model="other/model"), path)
    cals = store.load(path)
    assert len(cals) == 2
    assert store.find_calibration(_key(), str(path)).launch.kv_cache_gib == 35.0
    assert sorted(p.name for p in path.parent.iterdir()) == ["cal.json", "cal.json.lock"]


def test_path_resolution(tmp_path, monkeypatch):
    assert store.calibration_path() == Path(os.environ["HOME"]) / ".config/residency/calibration.json"
    monkeypatch.setenv(store.ENV, str(tmp_path / "env.json"))
    assert store.calibration_path() == tmp_path / "env.json"
    spec = parse_spec(
        {
            "device": {"preset": "l40s"},
            "calibration_file": str(tmp_path / "spec.json"),
            "models": [{"name": "g", "model": "x/y"}],
        }
    )
    assert store.calibration_path(None, spec) == tmp_path / "spec.json"
    assert store.calibration_path(tmp_path / "flag.json", spec) == tmp_path / "flag.json"
    # find_calibration with no path follows the environment
    store.record(_granite(), _key())
    assert (tmp_path / "env.json").is_file()
    assert store.find_calibration(_key()) is not None


def test_missing_file_is_empty_and_malformed_file_is_a_spec_error(tmp_path):
    assert store.find_calibration(_key(), str(tmp_path / "none.json")) is None
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SpecError) as e:
        store.find_calibration(_key(), str(bad))
    assert e.value.exit_code == 2 and "not a calibration file" in str(e.value)


def _spec(tmp_path, **model):
    m = {"name": "granite", "model": "ibm-granite/granite-4.0-micro", **model}
    return parse_spec(
        {
            "vllm_version": "0.11.0",
            "device": {"preset": "l40s"},
            "calibration_file": str(tmp_path / "c.json"),
            "models": [m],
        }
    )


def test_record_launch_with_spec_fills_total_and_default_utilization(tmp_path):
    spec = _spec(tmp_path)
    cal = store.record_launch(_granite(), spec=spec, source="g.log", path=store.calibration_path(None, spec))
    # the log states neither utilization nor total: vLLM's default 0.9 and the l40s preset's 44.42 GiB.
    # non_kv = 0.9 x 44.42 - 35.34 = 39.978 - 35.34 = 4.638 GiB
    assert cal.launch.gpu_memory_utilization == 0.9 and cal.launch.total_gib == 44.42
    assert cal.non_kv_gib == pytest.approx(4.638, abs=1e-9)
    assert len(cal.notes) == 2
    # the key plan builds from the same spec model finds it
    key = store.key_for_model(spec.models[0], spec.vllm_version, store.device_key(spec.device))
    assert key.device == "NVIDIA L40S"
    found = store.find_calibration(key, spec.calibration_file)
    assert found is not None and found.launch.kv_cache_gib == 35.34


def test_record_launch_uses_the_spec_models_settings_for_the_key(tmp_path):
    spec = _spec(tmp_path, max_num_seqs=8, gpu_memory_utilization=0.8)
    cal = store.record_launch(_granite(), spec=spec, path=tmp_path / "c.json")
    assert cal.key.max_num_seqs == 8
    assert cal.launch.gpu_memory_utilization == 0.8  # from the spec, since the log does not say
    assert cal.non_kv_gib == pytest.approx(0.8 * 44.42 - 35.34)


def test_record_launch_without_spec_uses_explicit_settings(tmp_path):
    # r053's args: enforce_eager True, utilization 0.85; the log has no total and names no device
    (ln,) = parse_log(
        "(APIServer pid=387) INFO 09-21 21:35:59 [utils.py:328] non-default args: {'model_tag': "
        "'meta-llama/Llama-3.1-8B-Instruct', 'host': '0.0.0.0', 'model': 'meta-llama/Llama-3.1-8B-Instruct', "
        "'enforce_eager': True, 'gpu_memory_utilization': 0.85}\n"
        "(EngineCore_0 pid=454) INFO 09-21 21:38:25 [gpu_worker.py:276] Available KV cache memory: 85.79 GiB"
    )
    with pytest.raises(SpecError) as e:
        store.record_launch(ln, path=tmp_path / "c.json")
    assert e.value.field == "--device"
    with pytest.raises(SpecError) as e:
        store.record_launch(ln, device="jetson-thor", path=tmp_path / "c.json")
    assert e.value.field == "vllm_version"
    ln.vllm_version = "0.10.2+cu130"
    cal = store.record_launch(ln, device="jetson-thor", path=tmp_path / "c.json")
    assert cal.key.enforce_eager is True and cal.key.vllm_version == "0.10.2"
    assert cal.key.device == "NVIDIA Jetson AGX Thor"
    # 0.85 x 122.81 (preset total) - 85.79 = 104.3885 - 85.79 = 18.5985
    assert cal.non_kv_gib == pytest.approx(18.5985)


def test_record_launch_refuses_failed_or_incomplete_launches(tmp_path):
    failed = Launch(kv_cache_gib=0.93, error=LaunchError(kind="max_seq_len", message="To serve at least ..."))
    with pytest.raises(SpecError, match="failed"):
        store.record_launch(failed, device="l40s", path=tmp_path / "c.json")
    with pytest.raises(SpecError, match="no available KV"):
        store.record_launch(Launch(weights_gib=3.0), device="l40s", path=tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()


def test_device_from_logged_total():
    assert store.device_from_total(119.67) == "NVIDIA GB10"  # dgx-spark and gb10 are the same device
    assert store.device_from_total(139.72) == "NVIDIA H200"
    assert store.device_from_total(12.0) is None
