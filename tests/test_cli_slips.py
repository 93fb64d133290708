"""Every command, called the ways people get it wrong: no arguments, --help, an unknown
option, a bad value. None may print a traceback; each exits 0 or 2 with a helpful line."""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import typer

from tunelab.cli import app, main


def commands() -> list[tuple[list[str], Any]]:
    """(path, click command) for every leaf command of the CLI."""
    found = []

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, child in command.commands.items():
                walk(child, [*path, name])
        else:
            found.append((path, command))

    walk(typer.main.get_command(app), [])
    return found


def test_every_option_is_described_and_switches_read_naturally() -> None:
    """A switch that is off by default is `--flag`, never `--flag/--no-flag`, which
    gives help lines like `--no-without-rehearsal`."""
    for path, command in commands():
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            where = f"tunelab {' '.join(path)} {param.opts[0]}"
            assert param.help, f"{where} has no help text"
            if param.is_flag and param.default is False:
                assert not param.secondary_opts, f"{where} offers {param.secondary_opts}"


def slips(path: list[str], command: Any) -> list[list[str]]:
    calls = [path, [*path, "--help"], [*path, "--no-such-option"]]
    hints = typing.get_type_hints(command.callback)
    number = next((p for p in command.params if p.param_type_name == "option"
                   and hints.get(p.name) in (int, float, int | None, float | None)), None)
    if number is not None:  # with the required arguments given, so the value is the slip
        given = ["x" for p in command.params if p.param_type_name == "argument"
                 and p.required]
        calls.append([*path, *given, number.opts[0], "abc"])
    return calls


ALL = [(call, path) for path, command in commands() for call in slips(path, command)]


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path, _ in commands()}
    assert {"train", "predict", "serve", "keys create", "models list", "retrain"} <= names
    assert len(ALL) >= 4 * 10


@pytest.mark.parametrize("call", [c for c, _ in ALL], ids=[" ".join(c) for c, _ in ALL])
def test_a_slip_gets_a_helpful_line_not_a_traceback(
        call: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # `init` with no arguments writes config.yaml here
    monkeypatch.setenv("TUNELAB_DB_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setattr(sys, "argv", ["tunelab", *call])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    assert code in (0, 2), (code, text[-500:])
    if "--help" in call:
        assert code == 0 and "Usage" in text
    elif "--no-such-option" in call:
        assert "No such option" in text
    elif "abc" in call:
        assert f"Invalid value for '{call[-2]}'" in text
    else:
        assert text.strip(), "a bare command must say something"


def test_version(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["tunelab", "--version"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code in (0, None) and capsys.readouterr().out.startswith("tunelab ")
