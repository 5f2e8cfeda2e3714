"""CDK Terrain end to end (issue 24), on the local cloud, one deployment shared by the tests.

The app is the shared one of tests/installed.py (`forkstage init infra --name shop`, on cdktf,
forkstage's wheel in a venv outside this checkout). Staging and pr-2 are deployed with forkstage
on cdktf; the README's steps then switch the app to cdktn (`[app] cdk`, the CLI in package.json,
the extra in `[ci] install`), and the switched files are what `forkstage init --cdk cdktn`
writes. Then:

- the stages deployed with the cdktf app plan no changes on cdktn (pr-2's plan; staging's
  `forkstage deploy` by the cdktn app changes nothing);
- unprepared, `STAGE=pr-3 npx cdktn deploy stack-pr-3` fails within seconds naming `forkstage env`
  (the gate file the app writes stops whatever `terraform` is on PATH);
- `eval "$(forkstage env --stage pr-1)" && npx cdktn deploy stack-pr-1` deploys pr-1 with the
  pinned engine, with GITHUB_ACTIONS=true CI=true (cdk-terrain issue #96 reports deploy and diff
  ignoring TERRAFORM_BINARY_NAME there) and a `terraform` first on PATH that records any run and
  fails; the Worker answers, and `npx cdktn diff` shows no changes;
- a bare `npx cdktn destroy` with pr-1's environment destroys pr-1 alone;
- `forkstage destroy --stage pr-2 --via cdktn` (cdktn-cli as forkstage's applier) destroys pr-2.

The app is switched back and every stage destroyed afterwards: the fixture is shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import procs
from tests.installed import APP_NAME, Installed, clean_path

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TIMEOUT = 300
UNPREPARED_SECONDS = 30
UNCHANGED = {"no-op", "read"}
SWITCHED = ("forkstage.toml", "package.json")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# A `terraform` first on PATH that records being run and fails: only the pinned engine may run.
TRIPWIRE = '#!/bin/sh\necho "$0 $*" >> "$(dirname "$0")/ran"\nexit 97\n'


class App:
    """A person's shell in the initialised app, with forkstage installed from the wheel."""

    def __init__(self, installed: Installed, tripwire: Path) -> None:
        self.installed, self.root, self.tripwire = installed, installed.app, tripwire

    def env(self, extra: dict[str, str], *, tripwire: bool = True) -> dict[str, str]:
        env = {
            k: v
            for k, v in self.installed.env().items()
            if not k.startswith(("GITHUB_", "STAGE")) and k != "CI"
        }
        path = clean_path(self.installed.bin)
        if tripwire:
            path = os.pathsep.join([str(self.tripwire), path])
        return {**env, "PATH": path, **extra}

    def bash(
        self, script: str, *, tripwire: bool = True, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = ["bash", "-c", f"set -e\n{script}"]
        env = self.env(extra or {}, tripwire=tripwire)
        return procs.run(argv, cwd=self.root, env=env, timeout=TIMEOUT)

    def ok(self, script: str, **extra: str) -> str:
        done = self.bash(script, extra=extra)
        procs.assert_ok(done)
        return done.stdout + done.stderr

    def forkstage(self, *args: str, cwd: Path | None = None) -> str:
        argv = [str(self.installed.bin / "forkstage"), *args]
        done = procs.run(argv, cwd=cwd or self.root, env=self.env({}), timeout=TIMEOUT)
        procs.assert_ok(done)
        return done.stdout

    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["stage"]: r for r in json.loads(self.forkstage("stages", "--json"))}

    def terraform_ran(self) -> str:
        ran = self.tripwire / "ran"
        return ran.read_text() if ran.exists() else ""


def switch_to_cdktn(root: Path) -> None:
    """The README's steps (pip and npm installs aside: the venv and node_modules have both)."""
    toml = root / "forkstage.toml"
    text = toml.read_text()
    if 'cdk = "cdktn"' in text:
        return
    text = text.replace('cdk = "cdktf"', 'cdk = "cdktn"')
    toml.write_text(text.replace('install = "forkstage==', 'install = "forkstage[cdktn]=='))
    package = root / "package.json"
    text = package.read_text().replace('"cdktf-cli": "0.21.0"', '"cdktn-cli": "0.24.0"')
    package.write_text(text)


def live(row: dict[str, Any] | None) -> bool:
    return row is not None and (row["resources"] > 0 or row.get("status") == "live")


def no_changes(plan: dict[str, Any]) -> bool:
    counts = (plan["added"], plan["changed"], plan["destroyed"])
    return counts == (0, 0, 0) and {c["action"] for c in plan["changes"]} <= UNCHANGED


@pytest.fixture(scope="module")
def app(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The initialised app on cdktf with staging and pr-2 deployed by forkstage."""
    tripwire = tmp_path_factory.mktemp("tripwire")
    (tripwire / "terraform").write_text(TRIPWIRE)
    (tripwire / "terraform").chmod(0o755)
    box = App(installed, tripwire)
    original = {name: (box.root / name).read_text() for name in SWITCHED}
    assert 'cdk = "cdktf"' in original["forkstage.toml"]  # init's default
    try:
        box.forkstage("deploy", "--stage", "staging")
        box.forkstage("deploy", "--stage", "pr-2")
        yield box
    finally:
        for name, text in original.items():
            (box.root / name).write_text(text)
        box.bash(
            "forkstage destroy --stage staging --cascade || for stage in pr-1 pr-2 staging; do "
            "forkstage destroy --stage $stage || true; done\nforkstage local down",
            tripwire=False,
        )


@pytest.fixture(scope="module")
def switched(app: App) -> App:
    switch_to_cdktn(app.root)
    return app


def test_the_switch_is_what_init_writes_and_deployed_stages_plan_no_changes(
    switched: App, tmp_path: Path
) -> None:
    switched.forkstage("init", "fresh", "--name", APP_NAME, "--cdk", "cdktn", cwd=tmp_path)
    for name in SWITCHED:
        assert (switched.root / name).read_text() == (tmp_path / "fresh" / name).read_text(), name
    plan = json.loads(switched.forkstage("plan", "--stage", "pr-2", "--json"))
    assert no_changes(plan), plan
    # the cdktn app deploys staging with forkstage: nothing to change
    deployed = json.loads(switched.forkstage("deploy", "--stage", "staging", "--json"))
    counts = (deployed["added"], deployed["changed"], deployed["destroyed"])
    assert counts == (0, 0, 0), deployed
    switched.forkstage("synth", "--stage", "pr-2", "--out", str(tmp_path / "out"))
    config = json.loads((tmp_path / "out" / "stacks" / "stack-pr-2" / "cdk.tf.json").read_text())
    assert config["//"]["metadata"]["version"] == "0.24.0"  # planned as cdktn synthesized it


def test_the_literal_cdktn_path(switched: App) -> None:
    rows = switched.rows()
    before = {s: (rows[s]["serial"], rows[s]["resources"]) for s in ("staging", "pr-2")}

    # Unprepared: fails within seconds, naming `forkstage env`, and writes nothing, whatever
    # `terraform` is on PATH (this machine's own 1.11 here: the gate stops it at init).
    started = time.perf_counter()
    unprepared = switched.bash(
        "STAGE=pr-3 npx cdktn deploy stack-pr-3 --auto-approve", tripwire=False
    )
    took = time.perf_counter() - started
    assert unprepared.returncode != 0, procs.failure(unprepared)
    assert took < UNPREPARED_SECONDS, f"took {took:.1f}s\n{procs.failure(unprepared)}"
    assert 'eval "$(forkstage env --stage pr-3)"' in unprepared.stdout + unprepared.stderr
    assert "pr-3" not in switched.rows()

    # The first `npx cdktn deploy stack-pr-1`, as a GitHub Actions job would run it (#96).
    out = switched.ok(
        'eval "$(forkstage env --stage pr-1)"\n'
        'echo "engine: $TERRAFORM_BINARY_NAME"\n'
        "npx cdktn deploy stack-pr-1 --auto-approve\n"
        "npx cdktn diff stack-pr-1",
        GITHUB_ACTIONS="true",
        CI="true",
    )
    assert f"engine: {switched.installed.bin / 'forkstage-terraform'}\n" in out
    assert "No changes" in out
    assert switched.terraform_ran() == ""  # the pinned engine only, never a terraform on PATH
    assert live(switched.rows()["pr-1"])
    outputs = json.loads(switched.forkstage("outputs", "--stage", "pr-1", "--json"))
    assert outputs["worker_name"] == "shop-api-pr-1"
    with _NO_PROXY.open(outputs["local_url"] + "/health", timeout=15) as response:
        assert json.loads(response.read()) == {"ok": True, "database": "app"}

    # A bare `npx cdktn destroy` with pr-1's environment destroys pr-1 alone.
    switched.ok(
        'eval "$(forkstage env --stage pr-1)" && npx cdktn destroy --auto-approve',
        GITHUB_ACTIONS="true",
        CI="true",
    )
    assert switched.terraform_ran() == ""
    rows = switched.rows()
    assert not live(rows.get("pr-1")), rows.get("pr-1")
    assert {s: (rows[s]["serial"], rows[s]["resources"]) for s in before} == before

    # forkstage through cdktn-cli: pr-2, deployed by the cdktf app, destroyed by `cdktn destroy`
    done = json.loads(switched.forkstage("destroy", "--stage", "pr-2", "--via", "cdktn", "--json"))
    assert done["destroyed"] > 0, done
    assert switched.terraform_ran() == ""
    rows = switched.rows()
    assert not live(rows.get("pr-2")), rows.get("pr-2")
    assert (rows["staging"]["serial"], rows["staging"]["resources"]) == before["staging"]
