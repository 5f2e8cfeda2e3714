"""CLI contract: exit codes and exact one-line messages for bad input; examples in --help."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from forkstage.cli import main

REPO = Path(__file__).resolve().parent.parent

BAD_STAGES = {
    "PR-147": "stage name 'PR-147' is invalid: use lowercase letters, digits, '-' or '_', "
    "starting with a letter (e.g. staging, prod, pr-147, dev_sam)",
    "pr-": "stage name 'pr-' is not a pull-request stage: use pr-<number>, e.g. pr-147",
    "pr-12a": "stage name 'pr-12a' is not a pull-request stage: use pr-<number>, e.g. pr-147",
    "../x": "stage name '../x' is invalid: use lowercase letters, digits, '-' or '_', "
    "starting with a letter (e.g. staging, prod, pr-147, dev_sam)",
    "a b": "stage name 'a b' is invalid: use lowercase letters, digits, '-' or '_', "
    "starting with a letter (e.g. staging, prod, pr-147, dev_sam)",
    "x" * 200: f"stage name '{'x' * 47}...' is 200 characters long: use at most 40",
    "": "stage name is empty: use e.g. staging, prod, pr-147 or dev_sam",
}


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("FORKSTAGE_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.parametrize(
    "command", ["synth", "deploy", "plan", "destroy", "outputs", "summary", "env"]
)
@pytest.mark.parametrize("name", sorted(BAD_STAGES))
def test_bad_stage_names_exit_2_with_one_line(in_repo: Path, command: str, name: str) -> None:
    out = in_repo / "out"
    result = CliRunner().invoke(
        main, [command, "--stage", name, *(["--out", str(out)] if command == "synth" else [])]
    )
    assert result.exit_code == 2, result.output
    assert result.output == f"Error: {BAD_STAGES[name]}\n"
    assert not out.exists()
    assert not (in_repo / "home").exists()


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        path = (*prefix, name)
        found.append(path)
        if isinstance(cmd, click.Group):
            found.extend(_all_commands(cmd, path))
    return found


def test_every_command_has_an_example() -> None:
    commands = _all_commands(main)
    assert {("deploy",), ("destroy",), ("synth",), ("stages",)} <= set(commands)
    for path in [(), *commands]:
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Example:" in result.output, f"`forkstage {' '.join(path)} --help` has no example"


def test_help_documents_exit_codes() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert (
        "Exit codes: 0 ok, 1 the operation failed, 2 bad usage or input, 3 refused by"
        in result.output
    )


def test_prune_rejects_a_bad_duration_before_touching_anything(in_repo: Path) -> None:
    result = CliRunner().invoke(main, ["prune", "--older-than", "7x"])
    assert result.exit_code == 2
    assert result.output.endswith(
        "Error: Invalid value: '7x' is not a duration: use e.g. 30m, 12h or 7d\n"
    )
    assert not (in_repo / "home").exists()
