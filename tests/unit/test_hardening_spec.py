"""Issue 13.3/13.4/13.6/13.10: names validated once at load, every number bounded, vLLM value sets checked.

Each case is a spec the original code accepted (or crashed on) and must now refuse with one line naming
the field, exit 2, no traceback, for every command alike.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from residency.cli import main
from residency.errors import SpecError
from residency.spec import ModelSpec, StackSpec, load_spec, parse_spec

BASE = {
    "device": {"total_gib": 24, "unified": True},
    "models": [{"name": "a", "model": "Qwen/Qwen3-4B-Instruct-2507", "max_model_len": 4096}],
}


def _with(path: str, value, base=BASE):
    """BASE with `value` set at a dotted path ('models.0.name'); a path ending in '+' appends."""
    raw = copy.deepcopy(base)
    node = raw
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    last = parts[-1]
    if last == "+":
        node.append(value)
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return raw


M2 = {"name": "b", "model": "Qwen/Qwen3-4B-Instruct-2507", "max_model_len": 4096}

BAD = {
    # 13.3 / 13.4: names
    "litellm": (_with("models.0.name", "litellm"), "name", "reserved"),
    "LiteLLM": (_with("models.0.name", "LiteLLM"), "name", "reserved"),
    "traversal": (_with("models.0.name", "../../../../victimdir/evil"), "name", "letters, digits"),
    "shell": (_with("models.0.name", "fast;touch$IFS/tmp/x"), "name", "letters, digits"),
    "long": (_with("models.0.name", "x" * 5000), "name", "at most"),
    "case-dup": (_with("models.+", {**M2, "name": "A"}), "spec", "unique"),
    "punct-dup": (_with("models.+", {**M2, "name": "a_"}), "name", "letters"),
    "dot-dup": (_with("models.+", {**M2, "name": "A.b"}, _with("models.0.name", "a-b")), "spec", "unique"),
    # 13.6: unbounded numbers
    "layers": (
        _with("models.0.facts", {"num_hidden_layers": 1_000_000_000}),
        "num_hidden_layers",
        "less than",
    ),
    "kv-bytes": (_with("models.0.kv_cache_memory_bytes", 10**17), "kv_cache_memory_bytes", "less than"),
    "kv-bytes-huge": (_with("models.0.kv_cache_memory_bytes", 10**20), "kv_cache_memory_bytes", "less than"),
    "total-inf": (_with("device.total_gib", float("inf")), "device.total_gib", "finite"),
    "total-1e300": (_with("device.total_gib", 1e300), "device.total_gib", "less than"),
    "used-nan": (_with("device.used_gib", float("nan")), "device.used_gib", "finite"),
    "max-model-len": (_with("models.0.max_model_len", 10**12), "max_model_len", "less than"),
    # 13.10: wrong input accepted silently
    "same-port": (
        _with("models.+", {**M2, "port": 9000}, _with("models.0.port", 9000)),
        "spec",
        "both use port 9000",
    ),
    "proxy-port": (_with("models.0.port", 4000), "spec", "the proxy's port"),
    "dtype": (_with("models.0.dtype", "float128"), "dtype", "not a vLLM dtype"),
    "kv-dtype": (_with("models.0.kv_cache_dtype", "bogus"), "kv_cache_dtype", "not a vLLM"),
    "quant": (_with("models.0.quantization", "bogus"), "quantization", "not a vLLM"),
    "block": (_with("models.0.block_size", 7), "block_size", "need a multiple of 16"),
    "cc": (_with("device.compute_capability", "twelve"), "compute_capability", "pattern"),
    "seqs-bool": (_with("models.0.max_num_seqs", True), "max_num_seqs", "not true/false"),
    "weights-inf": (_with("models.0.facts", {"weights_gib": float("inf")}), "weights_gib", "finite"),
    "replicas": (_with("models.0.replicas", 1000), "spec", "replicas"),
    "eager-int": (_with("models.0.enforce_eager", 1), "enforce_eager", "boolean"),
    "key-env-inject": (_with("proxy.master_key_env", "K\nEVIL=1"), "master_key_env", "pattern"),
    "env-name": (_with("models.0.env", {"A=B": "x"}), "env", "pattern"),
    "arg-nul": (_with("models.0.extra_args", ["--x\x00y"]), "extra_args", "pattern"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_is_one_line_naming_the_field(case):
    raw, field, words = BAD[case]
    with pytest.raises(SpecError) as ei:
        parse_spec(raw)
    msg = str(ei.value)
    assert "\n" not in msg
    assert field in ei.value.field, msg
    assert words in msg, msg


@pytest.mark.parametrize("cmd", ["plan", "up", "render"])
@pytest.mark.parametrize("case", ["litellm", "traversal", "long", "case-dup", "total-inf", "same-port"])
def test_every_command_refuses_at_load(tmp_path, capsys, cmd, case):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(BAD[case][0]))
    argv = {
        "plan": ["plan", str(spec)],
        "up": ["up", str(spec), "--state-dir", str(tmp_path / "st")],
        "render": ["render", str(spec), "-o", str(tmp_path / "out")],
    }[cmd]
    with pytest.raises(SystemExit) as ei:
        main(argv)
    err = capsys.readouterr().err
    assert ei.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "st").exists() and not (tmp_path / "out").exists()


def test_good_names_and_values_still_load():
    raw = _with("models.+", {**M2, "name": "Qwen3-4B.instruct_2507", "port": 9001, "block_size": 16})
    raw["models"][0].update(dtype="bfloat16", kv_cache_dtype="fp8", quantization="fp8", max_num_seqs=4)
    spec = parse_spec(raw)
    assert spec.models[1].name == "Qwen3-4B.instruct_2507"
    assert spec.models[0].max_num_seqs == 4


# ---------------------------------------------------------------- properties (hypothesis)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.sampled_from(["litellm", "../x", "auto", "fp8", "0.9", "1e309", "", " ", "A" * 70]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=12), kids, max_size=3),
    max_leaves=12,
)
_MODEL_KEYS = sorted(ModelSpec.model_fields) + ["bogus_key"]
_TOP_KEYS = sorted(StackSpec.model_fields) + ["colour"]


@st.composite
def _hostile_spec(draw):
    raw = copy.deepcopy(BASE)
    raw["models"].append(dict(M2))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        where = draw(st.sampled_from(["model", "model", "device", "top", "proxy"]))
        models = raw.get("models")
        if (
            not isinstance(models, list)
            or len(models) < 2
            or not all(isinstance(m, dict) for m in models)
            or not isinstance(raw.get("device"), dict)
        ):
            break  # a top-level key replaced models/device: mutate no further
        if where == "model":
            m = models[draw(st.integers(min_value=0, max_value=1))]
            m[draw(st.sampled_from(_MODEL_KEYS))] = draw(_VALUES)
        elif where == "device":
            key = draw(
                st.sampled_from(["total_gib", "used_gib", "count", "budget", "compute_capability", "x"])
            )
            raw["device"][key] = draw(_VALUES)
        elif where == "proxy":
            raw["proxy"] = {draw(st.sampled_from(["port", "host", "replicas"])): draw(_VALUES)}
        else:
            raw[draw(st.sampled_from(_TOP_KEYS))] = draw(_VALUES)
    return raw


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_hostile_spec())
def test_property_spec_loads_or_fails_in_one_line(raw):
    """Any value anywhere: a StackSpec, or a SpecError of one line; never another exception."""
    try:
        spec = parse_spec(raw)
    except SpecError as e:
        assert "\n" not in str(e) and len(str(e)) < 2000
        return
    for m in spec.models:  # what loaded is within the bounds the planner relies on
        assert m.max_model_len is None or 0 < m.max_model_len <= 1 << 25
        assert m.kv_cache_memory_bytes is None or m.kv_cache_memory_bytes <= 16384 * 2**30
    assert spec.device is None or spec.device.total_gib is None or spec.device.total_gib <= 16384


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_property_any_file_loads_or_fails_in_one_line(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("s") / "s.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_spec(p)
    except SpecError as e:
        assert "\n" not in str(e)


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--url", "http://127.0.0.1:9/v1", "--timeout", "inf"],
        ["up", "s.yaml", "--settle-seconds", "1e309"],
        ["up", "s.yaml", "--timeout", "1e300"],
        ["down", "s.yaml", "--grace", "inf"],
        ["status", "s.yaml", "--interval", "1e300"],
    ],
)
def test_numeric_options_are_bounded(capsys, argv):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    err = capsys.readouterr().err
    assert ei.value.code == 2 and len(err.strip().splitlines()) == 1 and argv[-2] in err, err
