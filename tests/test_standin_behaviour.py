"""One test per row of docs/provider-behaviour.md, on the stand-ins under the real engine.

A small config (project, two branches, an endpoint, the guarded role password, a Hyperdrive and
a Worker) is applied once; each row then plans a variant of it and checks the action Terraform
plans (create / update / replace / no-op) or the error the apply (or plan) gets, as the real
provider would answer. Rows that change the remote thing apply and re-plan.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdk.neon import password_postcondition
from forkstage.engine import run_terraform
from localcloud import live_workers
from localcloud.cloudflare import Account
from localcloud.neon import ControlPlane
from tests.test_local_providers import ACCOUNT, PROVIDERS, REQUIRED, Terraform, worker

pytestmark = pytest.mark.timeout(120)

Config = dict[str, Any]


def base_config() -> Config:
    return {
        "terraform": REQUIRED,
        "provider": PROVIDERS,
        "resource": {
            "neon_project": {
                "p": {
                    "name": "rows",
                    "region_id": "aws-us-east-2",
                    "pg_version": 16,
                    "history_retention_seconds": 21600,
                    "store_password": "yes",
                    "branch": {"name": "main", "database_name": "app", "role_name": "app_owner"},
                }
            },
            "neon_branch": {
                "b": {"project_id": "${neon_project.p.id}", "name": "b"},
                "other": {"project_id": "${neon_project.p.id}", "name": "other"},
            },
            "neon_endpoint": {
                "e": {
                    "project_id": "${neon_project.p.id}",
                    "branch_id": "${neon_branch.b.id}",
                    "type": "read_write",
                }
            },
            "cloudflare_hyperdrive_config": {
                "h": {
                    "account_id": ACCOUNT,
                    "name": "rows-h",
                    "origin": {
                        "scheme": "postgresql",
                        "host": "${neon_endpoint.e.host}",
                        "port": 5432,
                        "database": "app",
                        "user": "app_owner",
                        "password": "${data.neon_branch_role_password.pw.password}",
                    },
                }
            },
            "cloudflare_workers_script": {"w": worker("rows-w", "h", inline=True)},
            "cloudflare_workers_script_subdomain": {
                "s": {
                    "account_id": ACCOUNT,
                    "script_name": "${cloudflare_workers_script.w.script_name}",
                    "enabled": True,
                }
            },
        },
        "data": {
            "neon_branch_role_password": {
                "pw": {
                    "project_id": "${neon_project.p.id}",
                    "branch_id": "${neon_branch.b.id}",
                    "role_name": "app_owner",
                    "lifecycle": {"postcondition": [password_postcondition("b")]},
                }
            }
        },
    }


class Rows:
    """The applied base config and ways to plan or apply variants of it."""

    def __init__(self, tf: Terraform) -> None:
        self.tf = tf

    def variant(self, change: Callable[[Config], None]) -> Config:
        config = copy.deepcopy(base_config())
        change(config)
        return config

    def actions(self, change: Callable[[Config], None] = lambda c: None) -> dict[str, str]:
        """Address -> planned action for every resource (no-op included)."""
        self.tf.write(self.variant(change))
        self.tf.run("plan", "-out=rows.plan", codes=(0,))
        shown = run_terraform(
            ["show", "-json", "rows.plan"], cwd=self.tf.workdir, env=self.tf.env, timeout=60
        )
        assert shown.returncode == 0, shown.stderr
        plan = json.loads(shown.stdout)
        out = {}
        for rc in plan.get("resource_changes", []):
            acts = rc["change"]["actions"]
            name = {("no-op",): "no-op", ("create",): "create", ("update",): "update"}.get(
                tuple(acts), "replace" if "create" in acts and "delete" in acts else "/".join(acts)
            )
            out[rc["address"]] = name
        return out

    def apply(self, change: Callable[[Config], None], *, ok: bool = True) -> Any:
        self.tf.write(self.variant(change))
        return self.tf.run("apply", "-auto-approve", ok=ok)


@pytest.fixture(scope="module")
def rows() -> Iterator[Rows]:
    home = Path(tempfile.mkdtemp(prefix="fs-rows-"))
    home.chmod(0o711)
    tf = Terraform(home, home / "work")
    tf.workdir.mkdir(parents=True)
    try:
        tf.write(base_config())
        tf.run("init")
        tf.run("apply", "-auto-approve")
        yield Rows(tf)
    finally:
        tf.write(base_config())
        tf.run("destroy", "-auto-approve", ok=False)
        live_workers.stop_all(home)
        ControlPlane(home).stop_all()
        shutil.rmtree(home, ignore_errors=True)


def setter(path: str, value: Any) -> Callable[[Config], None]:
    """``resource.neon_project.p.name`` = value (None deletes the key)."""

    def change(config: Config) -> None:
        *parents, key = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value

    return change


P, B, E = "neon_project.p", "neon_branch.b", "neon_endpoint.e"
H, W = "cloudflare_hyperdrive_config.h", "cloudflare_workers_script.w"
S = "cloudflare_workers_script_subdomain.s"


def test_the_base_config_replans_with_no_changes(rows: Rows) -> None:
    assert set(rows.actions().values()) == {"no-op"}


# (batch, path, value, address, action): rows of one batch change different resources, so they
# share one plan (each row is still its own test).
PLAN_ROWS = [
    # neon_project (resource_project.go): ForceNew org_id, region_id, pg_version, branch.
    (1, "resource.neon_project.p.name", "renamed", P, "update"),
    (2, "resource.neon_project.p.history_retention_seconds", 3600, P, "update"),
    (3, "resource.neon_project.p.region_id", "aws-eu-central-1", P, "replace"),
    (4, "resource.neon_project.p.org_id", "org-cool-sky-12345678", P, "replace"),
    (5, "resource.neon_project.p.pg_version", 17, P, "replace"),
    (
        6,
        "resource.neon_project.p.branch",
        {"name": "main", "database_name": "other", "role_name": "app_owner"},
        P,
        "replace",
    ),
    # neon_branch (resource_branch.go): parent_id and project_id are not ForceNew.
    (1, "resource.neon_branch.b.name", "b2", B, "update"),
    (2, "resource.neon_branch.b.parent_id", "${neon_branch.other.id}", B, "update"),
    # neon_endpoint (resource_endpoint.go): only region_id is ForceNew.
    (1, "resource.neon_endpoint.e.branch_id", "${neon_branch.other.id}", E, "update"),
    (2, "resource.neon_endpoint.e.type", "read_only", E, "update"),
    (3, "resource.neon_endpoint.e.autoscaling_limit_max_cu", 0.5, E, "update"),
    (4, "resource.neon_endpoint.e.suspend_timeout_seconds", 300, E, "update"),
    (5, "resource.neon_endpoint.e.region_id", "aws-eu-central-1", E, "replace"),
    # cloudflare (hyperdrive_config/schema.go, workers_script/schema.go).
    (1, "resource.cloudflare_hyperdrive_config.h.name", "rows-h2", H, "update"),
    (2, "resource.cloudflare_hyperdrive_config.h.account_id", "f" * 32, H, "replace"),
    # caching is a plain Optional nested attribute: in place (issue 20)
    (3, "resource.cloudflare_hyperdrive_config.h.caching", {"disabled": True}, H, "update"),
    (1, "resource.cloudflare_workers_script.w.compatibility_date", "2025-10-01", W, "update"),
    (2, "resource.cloudflare_workers_script.w.script_name", "rows-w2", W, "replace"),
    (3, "resource.cloudflare_workers_script.w.account_id", "f" * 32, W, "replace"),
    # workers_script_subdomain/schema.go: account_id and script_name RequiresReplace.
    (1, "resource.cloudflare_workers_script_subdomain.s.enabled", False, S, "update"),
    (2, "resource.cloudflare_workers_script_subdomain.s.script_name", "rows-w2", S, "replace"),
    (4, "resource.cloudflare_workers_script_subdomain.s.account_id", "f" * 32, S, "replace"),
]
_BATCH_PLANS: dict[int, dict[str, str]] = {}


def batch_actions(rows: Rows, batch: int) -> dict[str, str]:
    """The plan of every change in ``batch`` together (made once per module)."""
    if batch not in _BATCH_PLANS:
        changes = [setter(path, value) for b, path, value, _, _ in PLAN_ROWS if b == batch]

        def change_all(config: Config) -> None:
            for change in changes:
                change(config)

        _BATCH_PLANS[batch] = rows.actions(change_all)
    return _BATCH_PLANS[batch]


@pytest.mark.parametrize(
    ("batch", "path", "value", "address", "action"),
    PLAN_ROWS,
    ids=[f"{row[1].split('.', 2)[2]}-{row[4]}" for row in PLAN_ROWS],
)
def test_plan_action(
    rows: Rows, batch: int, path: str, value: Any, address: str, action: str
) -> None:
    assert batch_actions(rows, batch)[address] == action


def test_history_retention_over_the_free_plan_is_refused_at_apply(rows: Rows) -> None:
    done = rows.apply(setter("resource.neon_project.p.history_retention_seconds", 86400), ok=False)
    assert done.returncode != 0
    assert "history_retention_seconds 86400 is not allowed on the free plan" in done.stderr
    # Unset means the provider's default, 86400: a new project without it is refused too.
    extra = setter("resource.neon_project.q", {"name": "unset-retention"})
    done = rows.apply(extra, ok=False)
    assert done.returncode != 0 and "at most 21600" in done.stderr
    assert rows.actions()[P] == "no-op"


def test_a_changed_parent_is_not_reforked_and_the_diff_stays(rows: Rows) -> None:
    move = setter("resource.neon_branch.b.parent_id", "${neon_branch.other.id}")
    rows.apply(move)
    assert rows.actions(move)[B] == "update"
    assert rows.actions()[B] == "no-op"


def test_an_endpoint_moves_to_another_branch_in_place_and_type_is_not_sent(rows: Rows) -> None:
    rows.apply(setter("resource.neon_endpoint.e.branch_id", "${neon_branch.other.id}"))
    state = json.loads((rows.tf.home / "local" / "neon" / "state.json").read_text())
    defaults = {p["default_endpoint_id"] for p in state["projects"].values()}
    (endpoint,) = [e for e in state["endpoints"].values() if e["id"] not in defaults]
    branch_names = {b["id"]: b["name"] for b in state["branches"].values()}
    assert branch_names[endpoint["branch_id"]] == "other"
    rows.apply(lambda c: None)  # back to branch b
    kind = setter("resource.neon_endpoint.e.type", "read_only")
    rows.apply(kind)
    assert rows.actions(kind)[E] == "update"  # the API kept read_write


def test_parent_lsn_is_refused_locally(rows: Rows) -> None:
    rows.tf.write(rows.variant(setter("resource.neon_branch.b.parent_lsn", "0/1234")))
    done = rows.tf.run("plan", ok=False)
    assert done.returncode != 0 and "parent_lsn is not emulated locally" in done.stderr


def test_an_empty_role_password_fails_the_postcondition_naming_branch_and_role(
    rows: Rows,
) -> None:
    # The data source returns "" when the API call fails (here: no such role), as the real one.
    done = rows.apply(setter("data.neon_branch_role_password.pw.role_name", "nobody"), ok=False)
    assert done.returncode != 0
    text = " ".join(done.stderr.split())
    assert "Neon returned an empty password for role nobody on branch b" in text
    assert "NEON_API_KEY" in text and 'store_password = "yes"' in text


def test_hyperdrive_caching_is_stored_and_an_unchanged_redeploy_plans_nothing(rows: Rows) -> None:
    """Issue 20: the stand-in keeps ``caching`` as sent, and a second plan with it is a no-op,
    as cloudflare/cloudflare v5.17.0+ whose Read keeps what the API does not return
    (hyperdrive_config/custom.go); v5.14.0-v5.16.x planned an update on every deploy."""
    off = setter("resource.cloudflare_hyperdrive_config.h.caching", {"disabled": True})
    rows.apply(off)
    try:
        state = json.loads(Account(rows.tf.home).state_file.read_text())
        configs = [c for c in state["hyperdrive"].values() if c.get("name") == "rows-h"]
        assert [c["caching"] for c in configs] == [{"disabled": True}]
        assert rows.actions(off)[H] == "no-op"
    finally:
        rows.apply(lambda c: None)
    assert rows.actions()[H] == "no-op"
