"""The one typed `up` state: its reader refuses other shapes in one line (#13.14), a lost state file
is recovered from the tags `up` gives its processes (#13.11), and one liveness test (PID + create time)."""

from __future__ import annotations

import json
import os
import time

import psutil
import pytest
from test_runtime_process import _Console, _run_up, _spec, fakes  # noqa: F401 - fakes is a fixture

from residency.errors import ExitCode, StateFileError, UpFailed
from residency.gpu import RecordedReader
from residency.runtime.down import down_stack
from residency.runtime.procs import process_alive
from residency.runtime.state import ProcEntry, StackState, StateStore, read_state, state_dir
from residency.spec import load_spec
from residency.status.ledger import build_ledger


@pytest.mark.parametrize(
    "text",
    [
        '{"spec_path": "s.yaml", "runtime": "process", "entr',  # truncated
        "\x00\xff garbage",
        '{"spec_path": "s.yaml", "runtime": "process", "entries": [{"name": "a", "pid": "many"}]}',  # wrong type
        "{}",
        '{"schema_version": 99, "spec_path": "s.yaml", "runtime": "process"}',  # a later residency
        '{"models": {"a": {"pid": 5}}}',  # a shape residency never wrote
    ],
)
def test_a_corrupted_state_file_is_one_line_with_the_fix_exit_2(tmp_path, capsys, text):
    from residency.cli import main

    spec = tmp_path / "stack.yaml"
    spec.write_text("device: {total_gib: 80}\nmodels:\n  - {name: a, model: Qwen/Qwen3-4B-Instruct-2507}\n")
    path = state_dir(spec) / "state.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(StateFileError):
        StateStore(path.parent).load()
    with pytest.raises(SystemExit) as ei:
        main(["down", str(spec)])
    assert ei.value.code == ExitCode.BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"residency: {path}: not a residency state file (")
    assert err[0].endswith(
        "(delete it: `residency down SPEC` still finds what `up` started, by its process tags)"
    )


def test_an_oversized_state_file_is_refused_without_reading_it_all(tmp_path):
    store = StateStore(tmp_path / "s")
    store.dir.mkdir()
    with open(store.path, "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB of zeros
    with pytest.raises(StateFileError, match="larger than 4 MiB"):
        store.load()


def test_state_file_carries_its_schema_version(tmp_path):
    store = StateStore(tmp_path / "s")
    store.save(StackState(spec_path="a.yaml", runtime="process", entries=[ProcEntry(name="m", pid=1)]))
    raw = json.loads(store.path.read_text())
    assert raw["schema_version"] == 1 and "recovered" not in raw
    assert store.load().entries[0].pid == 1


def test_process_alive_is_pid_plus_create_time():
    me = psutil.Process(os.getpid())
    assert process_alive(os.getpid()) and process_alive(os.getpid(), me.create_time())
    assert not process_alive(os.getpid(), me.create_time() - 3600)  # a reused PID is not ours
    assert not process_alive(None)


def test_a_stack_whose_state_file_is_gone_is_found_by_its_tags(tmp_path, fakes):  # noqa: F811
    vllm, litellm, pids_file = fakes
    spec_path = _spec(tmp_path)
    started, store, _ = _run_up(tmp_path, spec_path, vllm, litellm)
    ports = {s.member.key: s.entry.port for s in started}
    proxy_port = store.load().entry("litellm").port
    store.path.unlink()  # the state file is lost; the processes run on

    st = read_state(spec_path, store.dir)
    assert st is not None and st.recovered
    assert {e.name: e.port for e in st.models()} == ports and st.proxy().port == proxy_port
    assert [(e.model_name, e.replica) for e in st.models()] == [("alpha", 0), ("beta", 0)]

    # status says so (and still sees the models where `up` put them)
    led = build_ledger(load_spec(spec_path), RecordedReader({"devices": []}), spec_path=spec_path, state=st)
    assert [m.state for m in led.models] == ["ready", "ready"]
    assert [w for w in led.warnings if w.kind == "state_lost"]

    # up does not claim nothing runs, and does not start a second copy
    with pytest.raises(UpFailed, match="no state file .* still run .*residency down"):
        _run_up(tmp_path, spec_path, vllm, litellm)

    # down finds and stops them all, engine children included
    console = _Console()
    assert down_stack(spec_path, store, console, grace_s=5) == 3
    assert "found alpha, beta, litellm by the process tags" in console.text.replace("\n", " ")
    time.sleep(0.2)
    every = [int(p) for line in pids_file.read_text().splitlines() for p in line.split()]
    assert every and not [p for p in every if process_alive(p)]
    assert read_state(spec_path, store.dir) is None
