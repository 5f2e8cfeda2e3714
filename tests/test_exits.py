"""Exits pipelines can rely on (issue 10): a destroy with nothing to destroy is green, flag values
are checked before any work, an owner is never left half-destroyed, ``--json`` failures are JSON,
summaries follow the state, and a second FORKSTAGE_HOME on the same port is named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from forkstage.commands.stage_ops import TerraformDuration
from tests.stages import destroy_by_hand, ensure_live, instances
from tests.wrapper_env import Sandbox

LOCK_TIMEOUT_ERROR = (
    "Invalid value for '--lock-timeout': 'banana' is not a Terraform duration: "
    "use e.g. 30s, 5m or 1h"
)


@pytest.mark.parametrize("text", ["0", "0s", "30s", "5m", "1h", "1h30m", "1.5h", "500ms", "2m3.5s"])
def test_terraform_durations_are_accepted(text: str) -> None:
    assert TerraformDuration().convert(text, None, None) == text


@pytest.mark.parametrize("text", ["banana", "5", "-1s", "5 m", "", "1d", "m", "1h-"])
def test_other_durations_are_bad_parameters(text: str) -> None:
    with pytest.raises(click.BadParameter, match="is not a Terraform duration"):
        TerraformDuration().convert(text, None, None)


@pytest.mark.slow
def test_flag_values_are_checked_before_anything_runs(tmp_path: Path) -> None:
    box = Sandbox.create(tmp_path)
    for command in ("deploy", "plan", "destroy"):
        proc = box.forkstage(command, "--stage", "pr-1", "--lock-timeout", "banana")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.endswith(f"Error: {LOCK_TIMEOUT_ERROR}\n")
        assert proc.stdout == ""
    as_json = box.forkstage("deploy", "--stage", "staging", "--lock-timeout", "banana", "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout) == {"error": LOCK_TIMEOUT_ERROR, "exit_code": 2}
    prune = box.forkstage("prune", "--older-than", "banana", "--json")
    assert prune.returncode == 2
    assert json.loads(prune.stdout)["exit_code"] == 2
    assert "'banana' is not a duration" in json.loads(prune.stdout)["error"]
    # no backend started (no pid file, no state), no work folder, no synth output
    assert not box.home.exists()
    assert not (box.app / "cdktf.out").exists()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox for the module; each test states the stages it needs (``ensure_live``)."""
    sandbox = Sandbox.create(tmp_path_factory.mktemp("exits"))
    yield sandbox
    sandbox.stop()


@pytest.fixture
def empty_box(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox whose backend holds no stage at all."""
    sandbox = Sandbox.create(tmp_path)
    yield sandbox
    sandbox.stop()


def counts(box: Sandbox, *stages: str) -> dict[str, tuple[int, int]]:
    """(serial, managed resource instances) per stage, read from the state server."""
    found = {}
    for stage in stages:
        state = box.state(stage)
        managed = [r for r in state["resources"] if r["mode"] == "managed"]
        found[stage] = (state["serial"], sum(len(r["instances"]) for r in managed))
    return found


@pytest.mark.slow
def test_destroy_of_a_stage_without_state_is_green(empty_box: Sandbox) -> None:
    box = empty_box
    proc = box.forkstage("destroy", "--stage", "pr-999")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "nothing to destroy: stage pr-999 has no state\n"

    doc = json.loads(box.forkstage("destroy", "--stage", "pr-999", "--json").stdout)
    assert doc["stage"] == "pr-999" and doc["operation"] == "destroy"
    assert doc["destroyed"] == 0 and doc["nothing_to_destroy"] is True

    strict = box.forkstage("destroy", "--stage", "pr-999", "--strict")
    assert strict.returncode == 3
    message = "stage pr-999 has no state in the backend: nothing to destroy"
    assert strict.stderr == f"target: local cloud\nError: {message}\n"
    strict_json = box.forkstage("destroy", "--stage", "pr-999", "--strict", "--json")
    assert strict_json.returncode == 3
    assert json.loads(strict_json.stdout) == {"error": message, "exit_code": 3}
    assert strict_json.stderr == f"Error: {message}\n"  # the log line stays

    # a guard's refusal with --json: the JSON error on stdout, the exit code kept
    refused = box.forkstage("deploy", "--stage", "pr-1", "--json")
    assert refused.returncode == 3
    assert json.loads(refused.stdout) == {
        "error": "stage pr-1 references staging, which is not deployed: "
        "deploy it first (forkstage deploy --stage staging)",
        "exit_code": 3,
    }
    missing = box.forkstage("outputs", "--stage", "pr-1", "--json")
    assert missing.returncode == 2
    assert json.loads(missing.stdout)["exit_code"] == 2

    # migrate prints its own, richer document: exactly one document, not two
    migrate = box.forkstage("migrate", "--json")
    assert migrate.returncode == 2
    assert json.loads(migrate.stdout)["exit_code"] == 2

    assert not any(k.startswith("env:/pr-") for k in box.object_keys())
    assert not (box.home / "work" / "local" / "pr-999").exists()


@pytest.mark.slow
def test_summary_and_stages_follow_the_state(box: Sandbox) -> None:
    ensure_live(box, "staging", "pr-1", "pr-2")
    text = box.forkstage("summary", "--stage", "pr-1", "--format", "text").stdout
    assert "  last run: deploy: 2 created, 0 changed, 0 destroyed in " in text

    destroy_by_hand(box, "pr-1")  # outside forkstage
    serial = box.state("pr-1")["serial"]

    text = box.forkstage("summary", "--stage", "pr-1", "--format", "text").stdout
    assert "deploy: 2 created" not in text
    assert "  last change: outside forkstage at " in text and f"(serial {serial})" in text
    markdown = box.forkstage("summary", "--stage", "pr-1").stdout
    assert "Last run" not in markdown and "Last change — outside forkstage at " in markdown
    data = json.loads(box.forkstage("summary", "--stage", "pr-1", "--format", "json").stdout)
    assert data["last_run"] == {} and data["changed_outside_forkstage"] is True
    assert data["state"]["serial"] == serial and data["state"]["status"] == "empty"

    rows = {r["stage"]: r for r in json.loads(box.forkstage("stages", "--json").stdout)}
    assert (rows["pr-1"]["status"], rows["pr-1"]["resources"]) == ("empty", 0)
    assert rows["pr-2"]["status"] == rows["staging"]["status"] == "live"
    table = box.forkstage("stages").stdout.splitlines()
    assert table[0].split()[:3] == ["STAGE", "KIND", "STATUS"]
    assert next(line for line in table if line.startswith("pr-1 ")).split()[:3] == [
        "pr-1",
        "referencing",
        "empty",
    ]


@pytest.mark.slow
def test_owner_is_refused_while_referenced_then_cascades(box: Sandbox) -> None:
    ensure_live(box, "staging", "pr-2")
    if instances(box, "pr-1") is None:
        ensure_live(box, "pr-1")
    if instances(box, "pr-1"):
        destroy_by_hand(box, "pr-1")  # an empty workspace: the cascade takes it too
    before = counts(box, "staging", "pr-1", "pr-2")
    assert before["staging"][1] == 3 and before["pr-2"][1] == 2
    message = (
        "stage staging is referenced by pr-2, which still has resources: destroy it first "
        "(forkstage destroy --stage pr-2), or pass --cascade to destroy it and then staging"
    )
    for flags in ((), ("--force",)):
        refused = box.forkstage("destroy", "--stage", "staging", *flags)
        assert refused.returncode == 3, refused.stderr
        assert refused.stderr == f"target: local cloud\nError: {message}\n"
    as_json = box.forkstage("destroy", "--stage", "staging", "--force", "--json")
    assert (as_json.returncode, json.loads(as_json.stdout)) == (
        3,
        {"error": message, "exit_code": 3},
    )
    assert counts(box, "staging", "pr-1", "pr-2") == before
    assert (box.home / "runs" / "pr-2.json").is_file()

    cascade = box.forkstage("destroy", "--stage", "staging", "--cascade", "--json", timeout=300)
    assert cascade.returncode == 0, cascade.stderr
    doc = json.loads(cascade.stdout)
    assert doc["stage"] == "staging" and doc["destroyed"] == 3
    assert [(c["stage"], c["destroyed"]) for c in doc["cascaded"]] == [("pr-1", 0), ("pr-2", 2)]
    assert all(c["finished_at"] < doc["finished_at"] for c in doc["cascaded"])
    assert [k for k in box.object_keys() if k.startswith("env:/")] == []


@pytest.mark.slow
def test_a_port_owned_by_another_home_is_named(box: Sandbox, tmp_path: Path) -> None:
    assert box.forkstage("stages").returncode == 0  # box's server answers on its port
    other = Sandbox(app=box.app, home=tmp_path / "other", endpoint=box.endpoint)
    port = box.endpoint.rsplit(":", 1)[1]
    for extra in ((), ("--json",)):
        proc = other.forkstage("stages", *extra)
        assert proc.returncode == 1, proc.stderr
        line = proc.stderr.strip()
        assert "\n" not in line and "InvalidAccessKeyId" not in line
        assert line.startswith(
            f"Error: the state server on port {port} belongs to another FORKSTAGE_HOME "
            f"({box.home.resolve()}), not {other.home.resolve()}: give this home a port of its "
            "own, e.g. export FORKSTAGE_BACKEND_ENDPOINT=http://127.0.0.1:"
        ), line
        if extra:
            assert json.loads(proc.stdout)["exit_code"] == 1
    assert not other.home.exists()
