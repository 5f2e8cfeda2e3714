"""Issue 19's pure parts, fast: progress lines from Terraform's ``-json`` events, the lock info in
Terraform's lock error, the guard's lift file, and the refusal naming what forces a replacement.
(The same paths end to end, on the local cloud: tests/test_interrupts.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from cdk.stage import Stage
from forkstage import guards, locks
from forkstage.tfevents import Progress, lock_info, parse_event, progress


def event(kind: str, action: str, addr: str, elapsed: float | None = None) -> dict[str, object]:
    hook: dict[str, object] = {"resource": {"addr": addr}, "action": action}
    if elapsed is not None:
        hook["elapsed_seconds"] = elapsed
    return {"type": kind, "hook": hook, "@message": "..."}


def test_apply_events_become_one_line_per_step() -> None:
    addr = "neon_endpoint.branch_endpoint_2D35CFE5"
    lines = [
        progress(event("apply_start", "create", addr)),
        progress(event("apply_progress", "create", addr, 10)),
        progress(event("apply_complete", "create", addr, 12)),
        progress(event("apply_start", "delete", "neon_branch.b")),
        progress(event("apply_errored", "delete", "neon_branch.b", 0)),
    ]
    assert [p.line for p in lines if p] == [
        f"creating {addr} ...",
        f"still creating {addr} (10s)",
        f"created {addr} after 12s",
        "destroying neon_branch.b ...",
        "failed destroying neon_branch.b after 0s",
    ]
    assert Progress("complete", addr, "create", 1).done == f"created {addr}"
    # reads of data sources and other events are no resource steps
    assert progress(event("apply_start", "read", "data.neon_branch_role_password.p")) is None
    assert progress({"type": "planned_change", "change": {}}) is None
    assert parse_event("not json") is None and parse_event("{broken") is None
    assert parse_event(json.dumps({"type": "version"})) == {"type": "version"}


TERRAFORM_LOCK_ERROR = """Error acquiring the state lock: operation error S3: PutObject, https
response error StatusCode: 412, api error PreconditionFailed
Lock Info:
  ID:        11111111-2222-3333-4444-555555555555
  Path:      forkstage-state/env:/pr-148/forkstage/terraform.tfstate
  Operation: OperationTypeApply
  Who:       ci@runner-7
  Version:   1.15.5
  Created:   2026-11-26 10:00:00.123456789 +0000 UTC
  Info:

Terraform acquires a state lock to protect the state from being written
by multiple users at the same time."""


def test_the_lock_holder_is_read_from_terraform_s_error() -> None:
    info = lock_info(TERRAFORM_LOCK_ERROR)
    assert info["ID"] == "11111111-2222-3333-4444-555555555555"
    assert (info["Who"], info["Operation"], info["Info"]) == (
        "ci@runner-7",
        "OperationTypeApply",
        "",
    )
    moment = locks.created_at(info)
    assert moment == datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
    assert locks.created_at({"Created": "2026-11-26T10:00:00Z"}) == datetime(
        2026, 11, 26, 10, tzinfo=UTC
    )
    assert locks.created_at({"Created": "soon"}) is None
    text = locks.describe(info)
    assert text.startswith("ci@runner-7 since 2026-11-26 10:00:00 UTC (")
    assert text.endswith(", for apply, lock ID 11111111-2222-3333-4444-555555555555")
    assert lock_info("no lock here") == {}


def test_the_lift_exists_only_inside_the_block(tmp_path: Path) -> None:
    config = {
        "resource": {
            "neon_project": {"db": {"lifecycle": {"prevent_destroy": True}}},
            "neon_branch": {"b": {"lifecycle": {"prevent_destroy": True}}, "other": {}},
        }
    }
    (tmp_path / "cdk.tf.json").write_text(json.dumps(config))
    guarded = guards.guarded_addresses(tmp_path)
    assert guarded == ["neon_branch.b", "neon_project.db"]
    lift = tmp_path / guards.LIFT_FILE
    with guards.lifted(tmp_path, guarded):
        assert json.loads(lift.read_text()) == {
            "resource": {
                "neon_branch": {"b": {"lifecycle": {"prevent_destroy": False}}},
                "neon_project": {"db": {"lifecycle": {"prevent_destroy": False}}},
            }
        }
    assert not lift.exists()
    with guards.lifted(tmp_path, []):
        assert not lift.exists()  # nothing guarded, nothing written


def test_a_refused_replacement_names_what_forces_it() -> None:
    shown = {
        "resource_changes": [
            {
                "address": "neon_project.db",
                "change": {"replace_paths": [["pg_version"]]},
            },
            {"address": "neon_branch.b", "action_reason": "replace_by_triggers", "change": {}},
            {"address": "neon_endpoint.e", "change": {"replace_paths": []}},
        ]
    }
    forcing = guards.forcing_attributes(shown)
    assert forcing == {
        "neon_project.db": "pg_version forces it",
        "neon_branch.b": "replace_triggered_by: it follows that replacement",
    }
    changes = [
        {"address": "neon_branch.b", "type": "neon_branch", "action": "replace"},
        {"address": "neon_endpoint.e", "type": "neon_endpoint", "action": "replace"},
        {"address": "neon_project.db", "type": "neon_project", "action": "replace"},
    ]
    touched = guards.guarded_changes(changes, ["neon_branch.b", "neon_project.db"])
    refusal = guards.refuse_replacement(Stage(name="staging", kind="owner"), touched, forcing)
    assert refusal.exit_code == 3
    assert str(refusal) == (
        "deploy of staging would replace neon_project.db (pg_version forces it) and replace "
        "neon_branch.b (replace_triggered_by: it follows that replacement): its data, and every "
        "branch forked from it, would be lost; nothing was changed. Pass --allow-replace to "
        "deploy it anyway"
    )
