"""Ten PR previews beside one staging, two pipelines at a time, on the local cloud.

CI runs several PR pipelines at once against one staging. Each PR's branch must be a database of
its own (a row written in one is seen by no other), and tearing the PRs down, also two at a
time, must leave staging's state serial and servers alone and leave no server or data behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.wrapper_env import REPO, free_port

# ~2.5 min on 2 busy cores; the limit leaves room for a loaded CI runner (a run cut short by
# pytest-timeout would skip the clean-up and leave servers running).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

BIN = Path(sys.executable).parent
SEED = "Hello from forkstage: this note lives in the branch database."
PRS = [f"pr-{n}" for n in range(201, 211)]
PAIRS = [PRS[i : i + 2] for i in range(0, len(PRS), 2)]
TIMEOUT = 240
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


class LocalCloud:
    """The `forkstage` CLI on its own FORKSTAGE_HOME and state-server port."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="forkstage-prs-", dir="/tmp"))
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

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / "forkstage"), *args], cwd=REPO, env=self.env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        return self.together([args])[0]

    def together(self, commands: list[tuple[str, ...]]) -> list[str]:
        """Run the commands at once (like parallel CI jobs); every one must succeed."""
        procs = [self.start(*args) for args in commands]
        outputs = []
        for args, proc in zip(commands, procs, strict=True):
            try:
                out, err = proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            assert proc.returncode == 0, (args, out[-2000:], err[-3000:])
            outputs.append(out)
        return outputs

    def stages(self) -> list[str]:
        return [r["stage"] for r in json.loads(self.ok("stages", "--json"))]

    def processes(self) -> list[str]:
        """Command lines of processes that mention the home or run inside it (a Worker does)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                args = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                )
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if args and (str(self.home) in args or Path(cwd).is_relative_to(self.home)):
                found.append(args.strip())
        return found

    def clean_up(self) -> None:
        """After a failure: destroy what is left (PR stages first), stop everything."""
        for _ in range(2):
            try:
                left = self.stages()
            except AssertionError:
                break
            for stage in sorted(left, key=lambda s: s == "staging"):
                self.start("destroy", "--stage", stage, "--force").communicate(timeout=TIMEOUT)
        self.start("local", "down").communicate(timeout=TIMEOUT)
        if not self.processes():
            shutil.rmtree(self.home, ignore_errors=True)


def notes(stage: str) -> list[str]:
    from forkstage.local.endpoints import connect_overrides
    from forkstage.migrator.stage import resolve_stage_database_url

    url = resolve_stage_database_url(stage, environ={})
    with psycopg.connect(url, **connect_overrides(url)) as conn:
        return [str(r[0]) for r in conn.execute("select body from notes order by id")]


def write_note(stage: str, body: str) -> None:
    from forkstage.local.endpoints import connect_overrides
    from forkstage.migrator.stage import resolve_stage_database_url

    url = resolve_stage_database_url(stage, environ={})
    with psycopg.connect(url, **connect_overrides(url)) as conn:
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


def test_ten_prs_two_at_a_time_stay_isolated_and_leave_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from forkstage.local.neon import ControlPlane

    started = time.monotonic()
    cloud = LocalCloud()
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
                worker_of[stage] = result["outputs"]["worker_url"]
        timings["10 PR deploys, 2 at a time"] = time.monotonic() - mark
        assert len(set(branch_of.values())) == len(PRS)
        assert not set(branch_of.values()) & staging_branches
        assert len(plane.endpoints()) == len(staging_endpoints) + len(PRS)
        assert len(postmasters(cloud)) == len(staging_endpoints) + len(PRS)
        assert set(cloud.stages()) == {"staging", *PRS}
        assert staging_serial_now() == staging_serial

        # All ten exist at once; a shared database would show every PR's row everywhere.
        for stage in PRS:
            write_note(stage, f"written by {stage}")
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
        timings["10 PR destroys, 2 at a time"] = time.monotonic() - mark

        assert cloud.stages() == ["staging"]
        assert {e.id for e in plane.endpoints()} == staging_endpoints
        assert {p.name for p in branches_dir.iterdir()} == staging_branches
        running = postmasters(cloud)
        assert len(running) == len(staging_endpoints)
        for stage, branch in branch_of.items():
            assert not any(branch in p for p in running), stage
        assert notes("staging") == [SEED]
        assert sorted(p.stem for p in (cloud.home / "workers").glob("*.pid")) == ["staging"]

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
