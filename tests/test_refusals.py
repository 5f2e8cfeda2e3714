"""Every refusal the README promises, on real stages (issue 26): each test asserts the exit code,
the one line the command prints, and that nothing changed (serials and resource counts).

One module fixture deploys tests/refusal_app once (staging, prod, the protected pr-7, pr-66 that
owns a `neon_project`, pr-5 whose destroy writes staging's state); every test leaves the stages as
it found them, so any one test runs alone. scripts/mutants.py removes each check and runs these.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcloud.net import free_port
from tests.stages import ensure_live, instances
from tests.wrapper_env import REPO, Sandbox

APP = Path(__file__).resolve().parent / "refusal_app"
STAGES = ("staging", "prod", "pr-7", "pr-66")  # pr-5 is made by the test that destroys it

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    tmp = tmp_path_factory.mktemp("refusals")
    app = tmp / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("cdktf.out", "__pycache__"))
    (app / "node_modules").symlink_to(REPO / "node_modules")
    sandbox = Sandbox(app=app, home=tmp / "home", endpoint=f"http://127.0.0.1:{free_port()}")
    try:
        for stage in ("staging", "prod"):
            done = sandbox.forkstage("deploy", "--stage", stage)
            assert done.returncode == 0, done.stderr
        procs = [sandbox.popen("deploy", "--stage", s) for s in ("pr-7", "pr-66")]
        for proc in procs:
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
        yield sandbox
    finally:
        sandbox.forkstage("local", "down", timeout=60)
        sandbox.stop()


def counts(box: Sandbox, *stages: str) -> dict[str, tuple[int, int]]:
    """(serial, managed resource instances) per stage, read from the state server."""
    found = {}
    for stage in stages:
        state = box.state(stage)
        managed = [r for r in state["resources"] if r["mode"] == "managed"]
        found[stage] = (state["serial"], sum(len(r["instances"]) for r in managed))
    return found


def refused(box: Sandbox, code: int, message: str, *args: str) -> None:
    """The command exits ``code`` with ``message`` as its last line, in text and in --json."""
    proc = box.forkstage(*args)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"Error: {message}", proc.stderr
    as_json = box.forkstage(*args, "--json")
    assert as_json.returncode == code, as_json.stderr
    assert json.loads(as_json.stdout) == {"error": message, "exit_code": code}


def test_a_protected_stage_is_not_destroyed_without_force(box: Sandbox) -> None:
    before = counts(box, *STAGES)
    message = "stage prod is protected: pass --force to destroy it anyway"
    refused(box, 3, message, "destroy", "--stage", "prod")
    refused(box, 3, message.replace("prod", "pr-7"), "destroy", "--stage", "pr-7")
    assert counts(box, *STAGES) == before


def test_a_cascade_that_reaches_a_protected_stage_is_refused(box: Sandbox) -> None:
    before = counts(box, *STAGES)
    message = (
        "stage staging is referenced by protected pr-7: "
        "pass --force with --cascade to destroy them too"
    )
    refused(box, 3, message, "destroy", "--stage", "staging", "--cascade")
    assert counts(box, *STAGES) == before


def test_a_pr_destroy_plan_that_deletes_a_neon_project_is_refused(box: Sandbox) -> None:
    before = counts(box, *STAGES)
    assert before["pr-66"][1] == 3  # guard, branch and the project it should never have owned
    proc = box.forkstage("destroy", "--stage", "pr-66")
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: destroy plan for pr-66 would delete neon_project."), line
    assert line.endswith(", which belongs to staging: refusing"), line
    assert counts(box, *STAGES) == before


def test_a_reset_of_a_stage_that_is_not_deployed_is_refused(box: Sandbox) -> None:
    before = counts(box, *STAGES)
    message = "stage pr-3 is not deployed: deploy it first (forkstage deploy --stage pr-3)"
    refused(box, 3, message, "reset", "--stage", "pr-3")
    assert counts(box, *STAGES) == before
    assert not any(k.startswith("env:/pr-3/") for k in box.object_keys())


def test_local_serve_names_what_it_cannot_serve(box: Sandbox) -> None:
    before = counts(box, *STAGES)
    missing = box.forkstage("local", "serve", "--stage", "pr-3")
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr == "Error: stage pr-3 is not deployed: forkstage deploy --stage pr-3\n"
    no_worker = box.forkstage("local", "serve", "--stage", "staging")
    assert no_worker.returncode == 2, no_worker.stderr
    assert no_worker.stderr == "Error: stage staging has no Worker output\n"
    assert counts(box, *STAGES) == before


def test_prune_older_than_takes_only_stale_stages(box: Sandbox) -> None:
    """The pull requests are all open and were deployed a while ago: an hour's age keeps them,
    a second's takes them all, as stale."""
    before = counts(box, *STAGES)
    present = sorted(s for s in ("pr-5", "pr-7", "pr-66") if instances(box, s) is not None)
    openly = ["--open", ",".join(present), "--dry-run", "--json"]
    fresh = box.forkstage("prune", "--older-than", "1h", *openly)
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout) == []
    time.sleep(1.1)
    stale = box.forkstage("prune", "--older-than", "1s", *openly)
    assert stale.returncode == 0, stale.stderr
    found = sorted(json.loads(stale.stdout), key=lambda v: v["stage"])
    assert found == [{"stage": s, "reason": "stale", "destroyed": False} for s in present], found
    assert counts(box, *STAGES) == before


def test_owner_state_changed_during_a_destroy_is_named(box: Sandbox) -> None:
    """pr-5's destroy-time step writes staging's state, as a concurrent deploy would."""
    ensure_live(box, "pr-5")
    before = counts(box, *STAGES, "pr-5")
    proc = box.forkstage("destroy", "--stage", "pr-5")
    assert proc.returncode == 1, proc.stderr
    serial = before["staging"][0]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: the state of staging changed during the destroy of pr-5 "
        f"(serial {serial} -> {serial + 1})"
    ), proc.stderr
    after = counts(box, *STAGES)
    assert after["staging"] == (serial + 1, before["staging"][1])
    assert {s: after[s] for s in STAGES[1:]} == {s: before[s] for s in STAGES[1:]}
