"""The wrapper end to end: fixture app, real Terraform engine, embedded state server on loopback."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stages import ensure_live, instances
from tests.wrapper_env import Sandbox

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sandbox = Sandbox.create(tmp_path_factory.mktemp("wrapper"))
    yield sandbox
    sandbox.stop()


def resources(state: dict) -> list[str]:  # type: ignore[type-arg]
    return sorted(f"{r['type']}.{r['name']}" for r in state["resources"] if r["mode"] == "managed")


@pytest.fixture
def empty_box(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox whose backend holds no stage at all."""
    sandbox = Sandbox.create(tmp_path)
    yield sandbox
    sandbox.stop()


def test_referencing_stage_before_owner_is_refused_and_writes_nothing(empty_box: Sandbox) -> None:
    box = empty_box
    proc = box.forkstage("deploy", "--stage", "pr-149")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "Error: stage pr-149 references staging, which is not deployed: "
        "deploy it first (forkstage deploy --stage staging)"
    )
    assert box.object_keys() == []


def test_preview_flow(box: Sandbox) -> None:
    """The module's first deployments (alone or in file order): staging and pr-148 are new."""
    assert box.forkstage("stages").returncode == 0
    fresh = instances(box, "staging") is None and instances(box, "pr-148") is None
    staging = box.forkstage("deploy", "--stage", "staging")
    assert staging.returncode == 0, staging.stderr
    added = 3 if fresh else 0
    assert f"deployed staging: {added} added, 0 changed, 0 destroyed" in staging.stdout

    # two PR stages at once, each in its own work folder and workspace
    procs = [box.popen("deploy", "--stage", s, "--json") for s in ("pr-147", "pr-148")]
    results = [p.communicate(timeout=180) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    pr147 = json.loads(results[0][0])
    assert pr147["stage"] == "pr-147" and pr147["added"] == 2

    project_id = box.state("staging")["outputs"]["project_id"]["value"]
    outputs = json.loads(box.forkstage("outputs", "--stage", "pr-147", "--json").stdout)
    assert outputs["parent_project_id"] == project_id
    assert "admin_password" not in json.loads(
        box.forkstage("outputs", "--stage", "staging", "--json").stdout
    )

    before = box.state("staging")
    destroyed = box.forkstage("destroy", "--stage", "pr-147")
    assert destroyed.returncode == 0, destroyed.stderr
    serial = before["serial"]
    assert f"owner state serial unchanged: {serial} -> {serial}" in destroyed.stdout
    after = box.state("staging")
    assert after["serial"] == before["serial"]
    assert (
        resources(after)
        == resources(before)
        == ["terraform_data.branch", "terraform_data.project", "terraform_data.workspace_guard"]
    )
    assert not any(k.startswith("env:/pr-147/") for k in box.object_keys())

    # issue 10: refused even with --force (--force is for protected stages only)
    for flags in ((), ("--force",)):
        refused = box.forkstage("destroy", "--stage", "staging", *flags)
        assert refused.returncode == 3
        assert refused.stderr.strip() == (
            "target: local cloud\n"
            "Error: stage staging is referenced by pr-148, which still has resources: destroy it "
            "first (forkstage destroy --stage pr-148), or pass --cascade to destroy it and then "
            "staging"
        )
    assert box.state("staging")["serial"] == serial

    rows = {r["stage"]: r for r in json.loads(box.forkstage("stages", "--json").stdout)}
    assert rows["staging"]["kind"] == "owner" and rows["pr-148"]["kind"] == "referencing"
    assert rows["pr-148"]["owner"] == "staging" and rows["pr-148"]["resources"] == 2

    summary = box.forkstage("summary", "--stage", "pr-148", "--format", "markdown")
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert lines[:2] == ["<!-- forkstage:pr-148 -->", "### Preview `pr-148`"]
    if fresh:
        assert "Last run — deploy: 2 created, 0 changed, 0 destroyed in " in summary.stdout
        assert "- create `terraform_data.branch`" in lines


def test_lock_holder_is_named_and_state_stays_consistent(box: Sandbox) -> None:
    ensure_live(box, "staging", "pr-148")
    key = "env:/pr-148/forkstage/terraform.tfstate.tflock"
    lock = {
        "ID": "11111111-2222-3333-4444-555555555555",
        "Operation": "OperationTypeApply",
        "Who": "ci@runner-7",
        "Version": "1.15.5",
        "Created": "2026-11-26T10:00:00Z",
        "Path": "forkstage-state/env:/pr-148/forkstage/terraform.tfstate",
        "Info": "",
    }
    box.s3().put_object(Bucket="forkstage-state", Key=key, Body=json.dumps(lock).encode())
    before = box.state("pr-148")
    try:
        proc = box.forkstage("deploy", "--stage", "pr-148")
        assert proc.returncode == 1
        assert "Error: stage pr-148 is locked by ci@runner-7 since 2026-11-26 10:00:00 UTC" in (
            proc.stderr
        )
        assert "--lock-timeout" in proc.stderr and "forkstage unlock --stage pr-148" in proc.stderr
        row = {r["stage"]: r for r in json.loads(box.forkstage("stages", "--json").stdout)}[
            "pr-148"
        ]
        assert row["locked_by"] == "ci@runner-7"
    finally:
        box.s3().delete_object(Bucket="forkstage-state", Key=key)
    assert box.state("pr-148")["serial"] == before["serial"]

    # two real deploys of one stage at once: one may wait or fail on the lock, never corrupt
    procs = [box.popen("deploy", "--stage", "pr-148", "--lock-timeout", "0s") for _ in range(2)]
    outcomes = [(p.wait(timeout=180), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes in ([0, 0], [0, 1]), outcomes
    for code, err in outcomes:
        if code == 1:
            assert "Error: stage pr-148 is locked by " in err
    state = box.state("pr-148")
    assert resources(state) == ["terraform_data.branch", "terraform_data.workspace_guard"]


def test_via_cdktf_and_by_hand_never_hang(box: Sandbox) -> None:
    ensure_live(box, "staging")
    proc = box.forkstage("deploy", "--stage", "pr-150", "--via", "cdktf", timeout=240)
    assert proc.returncode == 0, proc.stderr
    # cdktf-cli's own output, passed on to stderr (as it comes)
    # (cdktf-cli prefixes the stack's name to the first line of each batch it prints, and
    # indents the rest: which lines share a batch depends on timing)
    assert re.search(
        r"^(stack-pr-150 | {13}) terraform_data\.branch \(branch\): Creating\.\.\.$",
        proc.stderr,
        re.MULTILINE,
    ), proc.stderr
    assert resources(box.state("pr-150")) == [
        "terraform_data.branch",
        "terraform_data.workspace_guard",
    ]

    script = 'eval "$(forkstage env --stage pr-151)" && cdktf deploy stack-pr-151 --auto-approve'
    by_hand = box.bash(script)
    assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
    assert resources(box.state("pr-151")) == [
        "terraform_data.branch",
        "terraform_data.workspace_guard",
    ]

    destroyed = box.forkstage("destroy", "--stage", "pr-150", "--via", "cdktf", timeout=240)
    assert destroyed.returncode == 0, destroyed.stderr
    assert not any(k.startswith("env:/pr-150/") for k in box.object_keys())


def test_plain_cdktf_in_the_wrong_workspace_is_stopped_by_the_guard(box: Sandbox) -> None:
    ensure_live(box, "staging", "pr-148")
    serial = box.state("staging")["serial"]
    keys_before = box.object_keys()
    admin = box.admin_credential()

    def run(exports: str) -> str:
        # the prepared environment of pr-148, but its config run in staging's workspace
        script = (
            f'eval "$(forkstage env --stage pr-148)" && export TF_WORKSPACE=staging {exports}&& '
            "cdktf deploy stack-pr-148 --auto-approve"
        )
        proc = box.bash(script)
        assert proc.returncode != 0
        return proc.stdout + proc.stderr

    # with pr-148's own key the state server already refuses staging's keys ...
    assert "stage pr-148 may not access this key" in run("")
    # ... and with a key that may write everywhere, the workspace guard stops the plan
    text = run(
        f"AWS_ACCESS_KEY_ID={admin.access_key_id} AWS_SECRET_ACCESS_KEY={admin.secret_access_key} "
    )
    assert "This config belongs to stage 'pr-148': select workspace 'pr-148'" in text, text[-3000:]
    assert box.state("staging")["serial"] == serial
    assert box.object_keys() == keys_before


def previews(box: Sandbox) -> set[str]:
    """The pull-request stages the backend holds."""
    rows = json.loads(box.forkstage("stages", "--json").stdout)
    return {r["stage"] for r in rows if r["stage"].startswith("pr-")}


def test_prune_destroys_closed_previews_only(box: Sandbox) -> None:
    ensure_live(box, "staging", "pr-148", "pr-151")
    # pr-151 (and whatever an earlier failed test left: never this test's failure too)
    closed = sorted(s for s in previews(box) if s != "pr-148")
    assert "pr-151" in closed
    dry = box.forkstage("prune", "--open", "pr-148", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == [
        {"destroyed": False, "reason": "closed", "stage": s} for s in closed
    ]
    assert set(closed) <= previews(box)

    proc = box.forkstage("prune", "--open", "pr-148")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "".join(f"destroyed {s} (closed)\n" for s in closed)
    left = {r["stage"] for r in json.loads(box.forkstage("stages", "--json").stdout)}
    assert left == {"staging", "pr-148"}

    bad = box.forkstage("prune")
    assert bad.returncode == 2
    assert "say what to prune: --older-than DURATION and/or --open pr-1,pr-2" in bad.stderr


def test_cleanup_in_order(box: Sandbox) -> None:
    ensure_live(box, "staging", "pr-148")
    for stage in sorted(previews(box)):  # pr-148 (and any an earlier failed test left)
        proc = box.forkstage("destroy", "--stage", stage)
        assert proc.returncode == 0, proc.stderr
    proc = box.forkstage("destroy", "--stage", "staging")
    assert proc.returncode == 0, proc.stderr
    assert [k for k in box.object_keys() if k.startswith("env:/")] == []
    assert json.loads(box.forkstage("stages", "--json").stdout) == []
    assert Path(box.home / "runs" / "staging.json").is_file()
