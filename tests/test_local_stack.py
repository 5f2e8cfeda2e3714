"""The real AppStack against the local stand-ins: plans for every stage kind, the PR plan's
resources (the Worker's code shown as a hash), an endpoint and a Worker brought back by
`forkstage local up` after their processes were killed, and a destroy that stops the Worker."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from forkstage.engine import run_terraform
from tests.local_env import LocalCloud
from tests.wrapper_env import REPO

BUNDLE = REPO / "worker" / "dist" / "index.js"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCloud]:
    box = LocalCloud("forkstage-stack-")
    try:
        yield box
    finally:
        box.discard()


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
        ("cloudflare_workers_script_subdomain", "create"),  # workers.dev on
        ("neon_branch", "create"),
        ("neon_endpoint", "create"),
        ("terraform_data", "create"),  # the migrations step
        ("terraform_data", "create"),  # the workspace guard
    ]
    assert any(c["address"].startswith("terraform_data.migrations") for c in plan["changes"])

    # what `cdktf diff` / a plain `terraform plan` of the stage shows: the Worker's code as a
    # file and its hash, never the bundle's text
    exports = [shlex.split(line)[1] for line in local.ok("env", "--stage", "pr-301").splitlines()]
    env = dict(item.split("=", 1) for item in exports)
    stack = local.home / "work" / "local" / "pr-301" / "stacks" / "stack-pr-301"
    assert run_terraform(["init", "-input=false"], cwd=stack, env=env).returncode == 0
    shown = run_terraform(["plan", "-input=false", "-no-color"], cwd=stack, env=env)
    assert shown.returncode == 0, shown.stderr
    digest = hashlib.sha256(BUNDLE.read_bytes()).hexdigest()
    assert re.search(rf'\+ content_sha256 += "{digest}"', shown.stdout), shown.stdout[-3000:]
    assert re.search(r'\+ content_file += "assets/api_code_\w+/\w+/index\.js"', shown.stdout)
    assert "Hello from forkstage" not in shown.stdout  # a string of the bundle
    assert len(shown.stdout) < 20_000


def _alive(pid: int) -> bool:
    """Running, not a zombie (here PID 1 does not reap orphans: a killed server stays one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _get(url: str) -> Any:
    with _NO_PROXY.open(url, timeout=15) as response:
        return json.loads(response.read())


def _local_url(local: LocalCloud, stage: str) -> str:
    return str(json.loads(local.ok("outputs", "--stage", stage, "--json"))["local_url"])


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
    deployed = json.loads(local.ok("deploy", "--stage", "pr-301", "--json"))
    assert deployed["phases"]["worker"] > 0  # the deploy waited for the Worker's URL
    worker = deployed["outputs"]["local_url"]
    assert _local_url(local, "pr-301") == worker
    assert _get(worker + "/health") == {"ok": True, "database": "app"}
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
    # the endpoint's address stays; as a Neon compute, the next connection starts it again
    with psycopg.connect(url, connect_timeout=5, autocommit=True, **extra) as conn:
        rows = [r[0] for r in conn.execute("select body from notes order by id")]
    assert "survives kill -9" in rows
    assert not _alive(pid)  # a new server, not the killed one

    # the Workers host goes down too (a reboot, say): one process group serves every Worker
    script = str(deployed["outputs"]["worker_name"])
    launcher = int((local.home / "workers" / "host.pid").read_text())
    os.killpg(launcher, signal.SIGKILL)
    while time.monotonic() < deadline + 10 and _alive(launcher):
        time.sleep(0.05)
    assert "local_url" not in json.loads(local.ok("outputs", "--stage", "pr-301", "--json"))

    out = local.ok("local", "up")
    assert endpoint.host in out
    assert f"worker {script} -> http://127.0.0.1:" in out
    url, extra = _url(local, "pr-301", monkeypatch)  # the port may have moved, as on Neon
    with psycopg.connect(url, autocommit=True, **extra) as conn:
        rows = [r[0] for r in conn.execute("select body from notes order by id")]
    assert "survives kill -9" in rows
    notes = _get(_local_url(local, "pr-301") + "/notes")
    assert "survives kill -9" in [n["body"] for n in notes]


def test_destroy_stops_the_stage_s_worker(local: LocalCloud) -> None:
    local.ok("deploy", "--stage", "pr-301")  # a no-op when the previous test deployed it
    outputs = json.loads(local.ok("outputs", "--stage", "pr-301", "--json"))
    script = outputs["worker_name"]
    host = int((local.home / "workers" / "host.pid").read_text())
    assert _alive(host)
    status = json.loads(local.ok("local", "status", "--json"))
    assert {"script": script, "url": outputs["local_url"] + "/"} in status["workers"]
    assert _get(outputs["local_url"] + "/health") == {"ok": True, "database": "app"}

    local.ok("destroy", "--stage", "pr-301")
    scripts = [w["script"] for w in json.loads(local.ok("local", "status", "--json"))["workers"]]
    assert script not in scripts and "forkstage-api-staging" in scripts
    with pytest.raises(OSError):  # nothing answers on the destroyed Worker's port
        urllib.request.urlopen(outputs["local_url"] + "/health", timeout=5)
    assert _alive(host)  # the host keeps serving staging's Worker
    assert not [p for p in local.processes() if script in p]
