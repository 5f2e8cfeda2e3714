"""CLI contract: exit codes and exact one-line messages for bad input; examples in --help."""

from __future__ import annotations

import json
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


# --- stage classes (issue 10): a name in no class is refused before anything is written --------

TYPO_STAGES = ("pr147", "staging2", "preview-12")
CLASSES = "staging, prod (long-lived), pr-* (pull requests), dev_* (personal)"


@pytest.mark.parametrize(
    "command", ["synth", "deploy", "plan", "destroy", "outputs", "summary", "env"]
)
@pytest.mark.parametrize("name", TYPO_STAGES)
def test_names_in_no_stage_class_exit_2_with_one_line(
    in_repo: Path, command: str, name: str
) -> None:
    out = in_repo / "out"
    result = CliRunner().invoke(
        main, [command, "--stage", name, *(["--out", str(out)] if command == "synth" else [])]
    )
    assert result.exit_code == 2, result.output
    hint = "; did you mean staging?" if name == "staging2" else ""  # one edit away
    assert result.output == (
        f"Error: {name!r} is not a stage of this project: stages are {CLASSES}; "
        f"add it under [stages] in forkstage.toml{hint}\n"
    )
    assert not out.exists()
    assert not (in_repo / "home").exists()


@pytest.mark.slow
def test_stage_classes_against_a_real_state_server(tmp_path: Path) -> None:
    """Typos leave the running backend empty; each class deploys with its kind; prune spares
    personal stages; a project's own personal pattern replaces dev_*."""
    from tests.wrapper_env import Sandbox

    box = Sandbox.create(tmp_path)
    toml = box.app / "forkstage.toml"
    toml.write_text(toml.read_text().replace('personal = ["dev_*"]', 'personal = ["sandbox-*"]'))
    try:
        assert box.forkstage("backend", "start", timeout=60).returncode == 0
        box.s3().head_bucket(Bucket="forkstage-state")
        for command in ("deploy", "plan", "destroy", "synth", "env", "outputs"):
            for name in ("pr147", "dev_sam"):
                proc = box.forkstage(command, "--stage", name)
                assert proc.returncode == 2, (command, name, proc.stderr)
                assert proc.stderr == (
                    f"Error: {name!r} is not a stage of this project: stages are staging "
                    "(long-lived), pr-* (pull requests), sandbox-* (personal); "
                    "add it under [stages] in forkstage.toml\n"
                ), command
                assert proc.stdout == ""
        assert box.object_keys() == []
        assert not (box.home / "work").exists()
        assert not (box.app / "cdktf.out").exists()

        for name in ("staging", "pr-1", "sandbox-1"):
            proc = box.forkstage("deploy", "--stage", name)
            assert proc.returncode == 0, proc.stderr
        rows = json.loads(box.forkstage("stages", "--json").stdout)
        assert {r["stage"]: (r["kind"], r["owner"]) for r in rows} == {
            "staging": ("owner", None),
            "pr-1": ("referencing", "staging"),
            "sandbox-1": ("personal", None),
        }
        pruned = box.forkstage("prune", "--open", "", "--older-than", "0s", "--json")
        assert pruned.returncode == 0, pruned.stderr
        assert json.loads(pruned.stdout) == [
            {"stage": "pr-1", "reason": "closed", "destroyed": True}
        ]
        left = {
            r["stage"]: r["resources"] for r in json.loads(box.forkstage("stages", "--json").stdout)
        }
        assert set(left) == {"staging", "sandbox-1"}
        assert left["sandbox-1"] > 0 and left["staging"] > 0
    finally:
        box.stop()
