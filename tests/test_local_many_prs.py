"""Four PR previews beside one staging, two pipelines at a time, on the local cloud.

CI runs several PR pipelines at once against one staging. Each PR's branch must be a database of
its own (a row written in one is seen by no other), and tearing the PRs down, also two at a
time, must leave staging's state serial and servers alone and leave no server or data behind.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from localcloud import live_workers
from tests.local_env import LocalCloud
from tests.wrapper_env import REPO

# ~2.5 min on 2 busy cores; the limit leaves room for a loaded CI runner (a run cut short by
# pytest-timeout would skip the clean-up and leave servers running).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

SEED = "Hello from forkstage: this note lives in the branch database."
PRS = [f"pr-{n}" for n in range(201, 205)]  # two pairs: isolation needs no more
PAIRS = [PRS[i : i + 2] for i in range(0, len(PRS), 2)]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


def notes(stage: str) -> list[str]:
    from forkstage.databases import ProjectDatabases

    databases = ProjectDatabases(environ={})
    url = databases.stage_url(stage)
    with psycopg.connect(url, **databases.connect_options(url)) as conn:
        return [str(r[0]) for r in conn.execute("select body from notes order by id")]


def write_note(stage: str, body: str) -> None:
    from forkstage.databases import ProjectDatabases

    databases = ProjectDatabases(environ={})
    url = databases.stage_url(stage)
    with psycopg.connect(url, **databases.connect_options(url)) as conn:
        conn.execute("insert into notes (body) values (%s)", (body,))


def staging_serial_now() -> int:
    """Read straight from the state server (as `forkstage stages` does), without a CLI start."""
    from forkstage.context import Project
    from forkstage.state import StateReader

    project = Project.load(REPO)
    state = StateReader(project.settings.backend, project.home).state("staging")
    assert state is not None
    return state.serial


def postmasters(cloud: LocalCloud) -> list[str]:
    return [p for p in cloud.processes() if "postgres -D" in p]


def suspend(plane: Any, branch_id: str) -> None:
    """Stop a branch's server as the endpoint proxy does after ``suspend_after`` idle."""
    with plane.store.change() as state:
        plane.computes.stop_server(state, branch_id)
    assert plane.computes.running_port(branch_id) is None


def worker_runtimes(cloud: LocalCloud) -> list[str]:
    """The Workers' processes: one Miniflare host (Node) and its workerd, however many Workers."""
    return [p for p in cloud.processes() if "miniflare" in p or "workerd" in p.split(" ")[0]]


def test_prs_two_at_a_time_stay_isolated_and_leave_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from localcloud.neon import ControlPlane

    started = time.monotonic()
    cloud = LocalCloud("forkstage-prs-")
    for key in [k for k in os.environ if k.startswith("FORKSTAGE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FORKSTAGE_HOME", str(cloud.home))
    monkeypatch.setenv("FORKSTAGE_BACKEND_ENDPOINT", cloud.endpoint)
    monkeypatch.chdir(REPO)
    plane = ControlPlane(cloud.home)
    branches_dir = cloud.home / "local" / "neon" / "branches"
    finished = False
    try:
        cloud.ok("deploy", "--stage", "staging")
        staging_serial = staging_serial_now()
        timings = {"staging deploy": time.monotonic() - started}
        staging_endpoints = {e.id for e in plane.endpoints()}
        staging_branches = {p.name for p in branches_dir.iterdir()}
        assert len(staging_endpoints) >= 1 and staging_branches
        assert notes("staging") == [SEED]

        branch_of: dict[str, str] = {}
        worker_of: dict[str, str] = {}
        mark = time.monotonic()
        for pair in PAIRS:
            outputs = cloud.together([("deploy", "--stage", s, "--json") for s in pair])
            for stage, out in zip(pair, outputs, strict=True):
                result: dict[str, Any] = json.loads(out)
                assert result["operation"] == "deploy" and result["stage"] == stage
                branch_of[stage] = result["outputs"]["neon_branch_id"]
                worker_of[stage] = result["outputs"]["local_url"]
        timings[f"{len(PRS)} PR deploys, 2 at a time"] = time.monotonic() - mark
        assert len(set(branch_of.values())) == len(PRS)
        assert not set(branch_of.values()) & staging_branches
        assert len(plane.endpoints()) == len(staging_endpoints) + len(PRS)
        # a server per endpoint at most (one idle past suspend_after is stopped until used)
        assert 0 < len(postmasters(cloud)) <= len(staging_endpoints) + len(PRS)
        runtimes = worker_runtimes(cloud)
        assert len(runtimes) == 2 and sum("miniflare_host.mjs" in p for p in runtimes) == 1
        assert len({urlsplit(url).port for url in worker_of.values()}) == len(PRS)
        # one endpoint proxy holds every endpoint's address (suspend/resume)
        assert sum("localcloud.endpoint_proxyd" in p for p in cloud.processes()) == 1
        assert plane.computes.proxy is not None
        assert set(plane.computes.proxy.serves()) == {e.id for e in plane.endpoints()}
        assert set(cloud.stages()) == {"staging", *PRS}
        assert staging_serial_now() == staging_serial

        # All of them exist at once; a shared database would show every PR's row everywhere.
        for stage in PRS:
            write_note(stage, f"written by {stage}")
        # Suspended endpoints (as after [local] suspend_after idle) resume on the next
        # connection, whether it comes from forkstage's own URL or a Worker's Hyperdrive.
        for stage in PRS[:2]:
            suspend(plane, branch_of[stage])
        with OPENER.open(worker_of[PRS[1]] + "/notes", timeout=15) as response:
            bodies = [row["body"] for row in json.loads(response.read())]
        assert bodies == [SEED, f"written by {PRS[1]}"]  # resumed by the Worker's query
        for stage in PRS:
            assert notes(stage) == [SEED, f"written by {stage}"], stage
            # the stage's Worker reads the same branch through its Hyperdrive binding
            with OPENER.open(worker_of[stage] + "/notes", timeout=15) as response:
                bodies = [row["body"] for row in json.loads(response.read())]
            assert bodies == [SEED, f"written by {stage}"], stage
        assert notes("staging") == [SEED]

        mark = time.monotonic()
        for pair in PAIRS:
            outputs = cloud.together([("destroy", "--stage", s, "--json") for s in pair])
            for out in outputs:
                serial = json.loads(out)["owner_serial"]
                assert serial == {"before": staging_serial, "after": staging_serial}
            assert staging_serial_now() == staging_serial
        timings[f"{len(PRS)} PR destroys, 2 at a time"] = time.monotonic() - mark

        assert cloud.stages() == ["staging"]
        assert {e.id for e in plane.endpoints()} == staging_endpoints
        assert {p.name for p in branches_dir.iterdir()} == staging_branches
        running = postmasters(cloud)
        # staging's endpoints are served still; a server idle past suspend_after may be stopped
        assert set(plane.computes.proxy.serves()) == staging_endpoints
        assert len(running) <= len(staging_endpoints)
        for stage, branch in branch_of.items():
            assert not any(branch in p for p in running), stage
        assert notes("staging") == [SEED]
        assert [w.name for w in live_workers.running(cloud.home)] == ["forkstage-api-staging"]
        assert len(worker_runtimes(cloud)) == 2

        mark = time.monotonic()
        cloud.ok("destroy", "--stage", "staging")
        cloud.ok("local", "down")
        timings["staging destroy + local down"] = time.monotonic() - mark
        finished = True
    finally:
        if not finished:
            cloud.clean_up()
    assert cloud.processes() == []
    assert not branches_dir.exists() or list(branches_dir.iterdir()) == []
    shutil.rmtree(cloud.home, ignore_errors=True)
    timings["total"] = time.monotonic() - started
    print(", ".join(f"{name}: {took:.0f} s" for name, took in timings.items()))
