"""Upgrading forkstage keeps deployed stages working: stages deployed by the code before the
house's architecture change (commit 68c6b78, checked out as a git worktree) plan no changes with
the code of this tree but one documented update (``UPGRADE``), which this tree's code applies;
then it destroys them and stops the local cloud.

The old code runs from its worktree with ``PYTHONPATH`` pointing there, so its ``forkstage``,
``cdk`` and ``stacks`` win over this venv's editable install (same dependencies, same venv); the
new code runs from the repo root like any other test. Both share one FORKSTAGE_HOME and one
embedded state-server port of their own (see tests/local_env.py).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import procs
from tests.local_env import LocalCloud
from tests.wrapper_env import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

OLD_COMMIT = "68c6b78"  # the last commit before the architecture change
TIMEOUT = 300
UNCHANGED = {"no-op", "read"}
# The deliberate changes to a deployed stage, each in place or a create, never a replace:
# issue 10 moves the Worker's code from inline `content` (the whole bundle in every plan) to a
# file asset (`content_file` + `content_sha256`); issue 12 enables workers.dev (a new
# `cloudflare_workers_script_subdomain`), caps an owned project's history retention at Neon's
# Free-plan 21600 s, and gives referencing stages' endpoints cheap compute limits. On staging the
# project's update defers the role-password read to the apply (Terraform reads a data source
# whose dependencies have changes pending only then), so its Hyperdrive's origin password is
# "known after apply" once: an in-place update to the same value. In address order, as planned.
WORKER = {"address": "cloudflare_workers_script.api_script_CD6F5F56", "action": "update"}
SUBDOMAIN = {
    "address": "cloudflare_workers_script_subdomain.api_subdomain_7A215A55",
    "action": "create",
}
UPGRADE = {
    "staging": [
        {"address": "cloudflare_hyperdrive_config.hyperdrive_config_3666ADBD", "action": "update"},
        WORKER,
        SUBDOMAIN,
        {"address": "neon_project.db_project_FA782935", "action": "update"},
    ],
    "pr-147": [
        # issue 20: previews' Hyperdrive stops caching reads (caching.disabled); the endpoint's
        # update is gone: suspend_timeout_seconds is no longer sent unless configured, and the
        # cheap CU limits (0.25) equal what the endpoint already has
        {"address": "cloudflare_hyperdrive_config.hyperdrive_config_3666ADBD", "action": "update"},
        WORKER,
        SUBDOMAIN,
    ],
}


def git(*args: str) -> str:
    return procs.run(["git", *args], cwd=REPO, timeout=120, check=True).stdout.strip()


@pytest.fixture(scope="module")
def old_tree() -> Iterator[Path]:
    """The old code as a detached worktree, with this checkout's node_modules and venv linked."""
    commit = git("rev-parse", "--verify", f"{OLD_COMMIT}^{{commit}}")
    base = Path(tempfile.mkdtemp(prefix="forkstage-upgrade-tree-", dir="/tmp"))
    tree = base / "old"
    git("worktree", "add", "--detach", str(tree), commit)
    links = ("node_modules", ".venv")  # what the old code finds under its project root
    try:
        for name in links:  # Node tools (cdktf, miniflare); cdktf.json's app: .venv/bin/python
            (tree / name).symlink_to(REPO / name)
        yield tree
    finally:
        for name in links:
            (tree / name).unlink(missing_ok=True)
        procs.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, timeout=120)
        procs.run(["git", "worktree", "prune"], cwd=REPO, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def no_changes(plan: dict[str, Any]) -> bool:
    counts = (plan["added"], plan["changed"], plan["destroyed"])
    return counts == (0, 0, 0) and {c["action"] for c in plan["changes"]} <= UNCHANGED


def changes(plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "added": plan["added"],
        "changed": plan["changed"],
        "destroyed": plan["destroyed"],
        "changes": [
            {"address": c["address"], "action": c["action"]}
            for c in plan["changes"]
            if c["action"] not in UNCHANGED
        ],
    }


def expected(stage: str) -> dict[str, Any]:
    updates = sum(c["action"] == "update" for c in UPGRADE[stage])
    return {"added": 1, "changed": updates, "destroyed": 0, "changes": UPGRADE[stage]}


def test_stages_deployed_by_the_old_code_plan_only_the_documented_updates(old_tree: Path) -> None:
    cloud = LocalCloud("forkstage-upgrade-")
    old_env = {**cloud.env(), "PYTHONPATH": str(old_tree)}

    def old(*args: str, check: bool = True) -> str:
        argv = [sys.executable, "-m", "forkstage", *args]
        return procs.run(argv, cwd=old_tree, env=old_env, timeout=TIMEOUT, check=check).stdout

    finished = False
    try:
        where = procs.run(
            [sys.executable, "-c", "import forkstage; print(forkstage.__file__)"],
            cwd=old_tree, env=old_env, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip
        assert Path(where).is_relative_to(old_tree), where

        old("deploy", "--stage", "staging")
        old("deploy", "--stage", "pr-147")
        assert sorted(r["stage"] for r in json.loads(old("stages", "--json"))) == [
            "pr-147",
            "staging",
        ]

        # the new code, from the repo root, on the same home and state server
        plans = {
            stage: json.loads(cloud.ok("plan", "--stage", stage, "--json"))
            for stage in ("staging", "pr-147")
        }
        changed = {stage: changes(plan) for stage, plan in plans.items()}
        assert changed == {stage: expected(stage) for stage in plans}, (
            f"the new code would change stages the old code deployed: {changed}"
        )
        # the updates apply (the stand-in reads the file asset) and leave nothing to change
        deployed = json.loads(cloud.ok("deploy", "--stage", "pr-147", "--json"))
        assert changes(deployed) == expected("pr-147")
        assert deployed["outputs"]["local_url"].startswith("http://127.0.0.1:")
        assert no_changes(json.loads(cloud.ok("plan", "--stage", "pr-147", "--json")))

        cloud.ok("destroy", "--stage", "pr-147")
        cloud.ok("destroy", "--stage", "staging")
        assert cloud.stages() == []
        cloud.ok("local", "down")
        finished = True
    finally:
        if not finished:
            cloud.clean_up()
            if cloud.processes():  # the new code could not stop what the old one started
                old("local", "down", check=False)
            if not cloud.processes():
                shutil.rmtree(cloud.home, ignore_errors=True)
    assert cloud.processes() == []
    shutil.rmtree(cloud.home, ignore_errors=True)
