"""The real AppStack against the local stand-ins: plans for every stage kind, the PR plan's
resources, and an endpoint brought back by `forkstage local up` after its server was killed."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.local_env import LocalCloud
from tests.wrapper_env import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCloud]:
    box = LocalCloud("forkstage-stack-")
    try:
        yield box
    finally:
        for stage in ("pr-301", "staging"):
            box.run("destroy", "--stage", stage)
        box.run("local", "down")


def test_every_stage_kind_plans_against_the_standins(local: LocalCloud) -> None:
    for stage in ("staging", "prod", "dev_sam"):
        plan = json.loads(local.ok("plan", "--stage", stage, "--json"))
        types = {c["type"] for c in plan["changes"]}
        assert "neon_project" in types, stage
        assert {c["action"] for c in plan["changes"]} == {"create"}


def test_pr_plan_creates_only_its_own_resources(
    local: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    local.ok("deploy", "--stage", "staging")
    plan = json.loads(local.ok("plan", "--stage", "pr-301", "--json"))
    by_type = sorted((c["type"], c["action"]) for c in plan["changes"])
    assert by_type == [
        ("cloudflare_hyperdrive_config", "create"),
        ("cloudflare_workers_script", "create"),
        ("neon_branch", "create"),
        ("neon_endpoint", "create"),
        ("terraform_data", "create"),  # the migrations step
        ("terraform_data", "create"),  # the workspace guard
    ]
    assert any(c["address"].startswith("terraform_data.migrations") for c in plan["changes"])


def _alive(pid: int) -> bool:
    """Running, not a zombie (here PID 1 does not reap orphans: a killed server stays one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _url(
    local: LocalCloud, stage: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, dict[str, str]]:
    from forkstage.databases import ProjectDatabases

    monkeypatch.setenv("FORKSTAGE_HOME", str(local.home))
    monkeypatch.setenv("FORKSTAGE_BACKEND_ENDPOINT", local.endpoint)
    monkeypatch.chdir(REPO)
    databases = ProjectDatabases(environ={})
    url = databases.stage_url(stage)
    return url, databases.connect_options(url)


def test_killed_endpoint_comes_back_with_its_data(
    local: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localcloud.neon import ControlPlane

    local.ok("deploy", "--stage", "staging")  # a no-op when the previous test deployed it
    local.ok("deploy", "--stage", "pr-301")
    url, extra = _url(local, "pr-301", monkeypatch)
    with psycopg.connect(url, autocommit=True, **extra) as conn:
        conn.execute("insert into notes (body) values ('survives kill -9')")
    port = int(extra["port"])
    [endpoint] = [e for e in ControlPlane(local.home).endpoints() if e.port == port]
    pid_file = ControlPlane(local.home).data_dir(endpoint.branch_id) / "postmaster.pid"
    pid = int(pid_file.read_text().splitlines()[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2, **extra).close()

    out = local.ok("local", "up")
    assert endpoint.host in out
    url, extra = _url(local, "pr-301", monkeypatch)  # the port may have moved, as on Neon
    with psycopg.connect(url, autocommit=True, **extra) as conn:
        rows = [r[0] for r in conn.execute("select body from notes order by id")]
    assert "survives kill -9" in rows
