"""The real AppStack against the local stand-ins: plans for every stage kind, the PR plan's
resources, and an endpoint brought back by `forkstage local up` after its server was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.wrapper_env import REPO, free_port

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


class Local:
    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="forkstage-stack-", dir="/tmp"))
        self.home.chmod(0o755)  # PostgreSQL runs as the postgres user and must enter it
        self.endpoint = f"http://127.0.0.1:{free_port()}"

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("FORKSTAGE_", "AWS_", "TF_"))
        }
        env.update(
            FORKSTAGE_HOME=str(self.home),
            FORKSTAGE_BACKEND_ENDPOINT=self.endpoint,
            PATH=f"{BIN}{os.pathsep}{env['PATH']}",
        )
        return env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "forkstage"), *args], cwd=REPO, env=self.env(), text=True,
            capture_output=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-3000:])
        return proc.stdout


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    box = Local()
    try:
        yield box
    finally:
        for stage in ("pr-301", "staging"):
            box.run("destroy", "--stage", stage)
        box.run("local", "down")


def test_every_stage_kind_plans_against_the_standins(local: Local) -> None:
    for stage in ("staging", "prod", "dev_sam"):
        plan = json.loads(local.ok("plan", "--stage", stage, "--json"))
        types = {c["type"] for c in plan["changes"]}
        assert "neon_project" in types, stage
        assert {c["action"] for c in plan["changes"]} == {"create"}


def test_pr_plan_creates_only_its_own_resources(
    local: Local, monkeypatch: pytest.MonkeyPatch
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


def _url(local: Local, stage: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, str]]:
    from forkstage.local.endpoints import connect_overrides
    from forkstage.migrator.stage import resolve_stage_database_url

    monkeypatch.setenv("FORKSTAGE_HOME", str(local.home))
    monkeypatch.setenv("FORKSTAGE_BACKEND_ENDPOINT", local.endpoint)
    monkeypatch.chdir(REPO)
    url = resolve_stage_database_url(stage, environ={})
    return url, connect_overrides(url, local.home)


def test_killed_endpoint_comes_back_with_its_data(
    local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forkstage.local.neon import ControlPlane

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
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.05)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2, **extra).close()

    out = local.ok("local", "up")
    assert endpoint.host in out
    url, extra = _url(local, "pr-301", monkeypatch)  # the port may have moved, as on Neon
    with psycopg.connect(url, autocommit=True, **extra) as conn:
        rows = [r[0] for r in conn.execute("select body from notes order by id")]
    assert "survives kill -9" in rows
