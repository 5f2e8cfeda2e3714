"""CDK Terrain end to end (issue 24), on the local cloud, one deployment shared by the tests.

An app written by `forkstage init --cdk cdktf` deploys staging and pr-2 with forkstage on cdktf.
The README's steps then switch it to cdktn (`[app] cdk`, the CLI in package.json, the extra in
`[ci] install`); the switched files are what `forkstage init --cdk cdktn` writes. Then:

- the stages deployed with the cdktf app plan no changes on cdktn;
- unprepared, `STAGE=pr-3 npx cdktn deploy stack-pr-3` fails within seconds naming `forkstage env`
  (the gate file the app writes stops whatever `terraform` is on PATH);
- `eval "$(forkstage env --stage pr-1)" && npx cdktn deploy stack-pr-1` deploys pr-1 with the
  pinned engine, with GITHUB_ACTIONS=true CI=true (cdk-terrain issue #96 reports deploy and diff
  ignoring TERRAFORM_BINARY_NAME there) and a `terraform` first on PATH that records any run and
  fails; the Worker answers, and `npx cdktn diff` shows no changes;
- a bare `npx cdktn destroy` with pr-1's environment destroys pr-1 alone;
- `forkstage destroy --stage pr-2 --via cdktn` (cdktn-cli as forkstage's applier) destroys pr-2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import procs
from tests.local_env import BIN, LocalCloud
from tests.wrapper_env import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TIMEOUT = 300
UNPREPARED_SECONDS = 30
UNCHANGED = {"no-op", "read"}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# A `terraform` first on PATH that records being run and fails: only the pinned engine may run.
TRIPWIRE = '#!/bin/sh\necho "$0 $*" >> "$(dirname "$0")/ran"\nexit 97\n'


class App:
    """A person's shell in an initialised app: the LocalCloud's home and port."""

    def __init__(self, local: LocalCloud, root: Path, tripwire: Path) -> None:
        self.local, self.root, self.tripwire = local, root, tripwire

    def env(self, extra: dict[str, str], *, tripwire: bool = True) -> dict[str, str]:
        env = {
            k: v
            for k, v in self.local.env().items()
            if not k.startswith(("CDKTF_", "GITHUB_", "STAGE")) and k != "CI"
        }
        path = os.pathsep.join([*([str(self.tripwire)] if tripwire else []), str(BIN), env["PATH"]])
        return {**env, "PATH": path, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", **extra}

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

    def forkstage(self, *args: str) -> str:
        argv = [str(BIN / "forkstage"), *args]
        done = procs.run(argv, cwd=self.root, env=self.env({}), timeout=TIMEOUT)
        procs.assert_ok(done)
        return done.stdout

    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["stage"]: r for r in json.loads(self.forkstage("stages", "--json"))}

    def terraform_ran(self) -> str:
        ran = self.tripwire / "ran"
        return ran.read_text() if ran.exists() else ""


def init(folder: Path, cdk: str) -> Path:
    done = procs.run(
        [str(BIN / "forkstage"), "init", str(folder), "--name", "shop", "--cdk", cdk],
        cwd=folder.parent,
        timeout=60,
    )
    procs.assert_ok(done)
    (folder / "node_modules").symlink_to(REPO / "node_modules")  # both CLIs, Node 22
    return folder


def switch_to_cdktn(root: Path) -> None:
    """The README's steps (pip and npm installs aside: this venv and node_modules have both)."""
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
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app on cdktf with staging and pr-2 deployed by forkstage."""
    base = tmp_path_factory.mktemp("cdktn")
    tripwire = base / "tripwire"
    tripwire.mkdir()
    (tripwire / "terraform").write_text(TRIPWIRE)
    (tripwire / "terraform").chmod(0o755)
    local = LocalCloud("forkstage-cdktn-")
    box = App(local, init(base / "shop", "cdktf"), tripwire)
    try:
        box.forkstage("deploy", "--stage", "staging")
        box.forkstage("deploy", "--stage", "pr-2")
        yield box
    finally:
        # the local cloud lives in its home alone: stopping it and removing the home is enough
        box.bash("forkstage local down")
        if not local.processes():
            shutil.rmtree(local.home, ignore_errors=True)


@pytest.fixture(scope="module")
def switched(app: App) -> App:
    switch_to_cdktn(app.root)
    return app


def test_the_switch_is_what_init_writes_and_deployed_stages_plan_no_changes(
    switched: App, tmp_path: Path
) -> None:
    fresh = init(tmp_path / "shop", "cdktn")
    for name in ("forkstage.toml", "package.json"):
        assert (switched.root / name).read_text() == (fresh / name).read_text(), name
    plans = {
        stage: json.loads(switched.forkstage("plan", "--stage", stage, "--json"))
        for stage in ("staging", "pr-2")
    }
    assert {s: no_changes(p) for s, p in plans.items()} == {"staging": True, "pr-2": True}, plans
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
        "npx cdktn --version\n"
        "npx cdktn deploy stack-pr-1 --auto-approve\n"
        "npx cdktn diff stack-pr-1",
        GITHUB_ACTIONS="true",
        CI="true",
    )
    assert f"engine: {BIN / 'forkstage-terraform'}\n" in out
    assert "0.24.0" in out and "No changes" in out
    assert switched.terraform_ran() == ""  # the pinned engine only, never a terraform on PATH
    assert live(switched.rows()["pr-1"])
    outputs = json.loads(switched.forkstage("outputs", "--stage", "pr-1", "--json"))
    assert outputs["worker_name"] == "shop-api-pr-1"
    with _NO_PROXY.open(outputs["local_url"] + "/health", timeout=15) as response:
        assert json.loads(response.read())["ok"] is True

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
