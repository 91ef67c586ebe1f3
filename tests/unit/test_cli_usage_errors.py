"""Command-line usage errors are bad input: one line on stderr (click's own message and suggestion), exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from residency.cli import main

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "dgx-spark-qwen3.yaml")

CASES = {
    "unknown-command": (["plann", "x"], "No such command 'plann'. Did you mean 'plan'"),
    "missing-argument": (["plan"], "Missing argument"),
    "unknown-option": (["plan", EXAMPLE, "--jsn"], "No such option: --jsn"),
    "option-without-value": (["verify", "--url"], "Option '--url' requires an argument"),
    "unknown-global-option": (["--bogus"], "No such option: --bogus"),
}


@pytest.mark.parametrize(("argv", "want"), CASES.values(), ids=CASES.keys())
def test_usage_error_is_one_line_exit_2(argv, want, capsys):
    with pytest.raises(SystemExit) as ex:
        main(argv)
    out, err = capsys.readouterr()
    assert ex.value.code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("residency") and want in lines[0], lines[0]
    assert "Traceback" not in err


def test_suggestion_for_an_option_is_kept(capsys):
    with pytest.raises(SystemExit):
        main(["plan", EXAMPLE, "--jsn"])
    assert "--json" in capsys.readouterr().err  # "(Possible options: --json, ...)"


def test_abort_is_one_line_exit_1(monkeypatch, capsys):
    # typer's Abort lives in typer.exceptions; naming it wrongly turned every uncaught exit
    # (a broken pipe's SystemExit too) into an AttributeError traceback
    import typer

    import residency.cli as cli

    def aborting(**_kw):
        raise typer.Abort()

    monkeypatch.setattr(cli, "app", aborting)
    with pytest.raises(SystemExit) as ex:
        main(["plan", EXAMPLE])
    assert ex.value.code == 1
    assert capsys.readouterr().err == "residency: aborted\n"


def test_systemexit_from_click_passes_through(monkeypatch):
    # click answers a broken pipe (`residency plan --json | head`) with sys.exit(1)
    import residency.cli as cli

    def broken_pipe(**_kw):
        raise SystemExit(1)

    monkeypatch.setattr(cli, "app", broken_pipe)
    with pytest.raises(SystemExit) as ex:
        main(["plan", EXAMPLE])
    assert ex.value.code == 1


def test_no_command_prints_help_and_one_line(capsys):
    with pytest.raises(SystemExit) as ex:
        main([])
    out, err = capsys.readouterr()
    assert ex.value.code == 2
    assert "Usage" in out  # the help
    assert (
        err == "residency: give a command (plan, render, up, down, verify, status, calibrate, explain)"
        " (see 'residency --help')\n"
    )


def test_verify_takes_no_key_on_the_command_line_but_reads_a_key_file(tmp_path, capsys):
    """Secrets never in argv: --key is gone (a usage error), --key-file's first line is the key."""
    from residency.commands.verify import _read_key_file

    with pytest.raises(SystemExit) as ex:
        main(["verify", "--url", "http://127.0.0.1:9/v1", "--key", "sk-secret"])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert "sk-secret" not in err and len(err.strip().splitlines()) == 1
    f = tmp_path / "k"
    f.write_text("sk-from-file\nignored\n")
    assert _read_key_file(str(f)) == "sk-from-file"
    (tmp_path / "e").write_text("LITELLM_MASTER_KEY=sk-env-style\n")
    assert _read_key_file(str(tmp_path / "e")) == "sk-env-style"
    # the stack's own .env, as render/up write it: a comment line first, the spec's key name (any)
    from residency.render.writer import env_file

    (tmp_path / ".env").write_text(env_file("MY_PROXY_KEY", "sk-rendered").content)
    assert _read_key_file(str(tmp_path / ".env")) == "sk-rendered"
    (tmp_path / "q").write_text("export OTHER_KEY='sk-quoted'\n")
    assert _read_key_file(str(tmp_path / "q")) == "sk-quoted"


def test_version_prints_the_installed_distribution_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as ex:
        main(["--version"])
    out, err = capsys.readouterr()
    assert ex.value.code == 0 and err == ""
    assert out == f"residency {version('residency')}\n"
