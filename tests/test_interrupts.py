"""Safe when interrupted, safe outside the wrapper, visible while it works (issue 19).

One deployment on the local cloud (staging + pr-147, the real AppStack in a copy of the example
app, real Terraform, real processes) shared by every test here:

- a deploy prints a line for each resource it creates (plain lines: stderr is no terminal);
- SIGINT to forkstage (and, separately, to its process group) while the endpoint is being
  created (the Neon stand-in told to take longer there): exit 130 within the bound, no lock
  left, every endpoint and branch of the local cloud in some stage's state, the next deploy
  succeeds without flags, and after a destroy nothing of the stage is served; meanwhile a
  second deploy names the holder and --lock-timeout, and `unlock` refuses the live run;
- `unlock` releases a stale lock of this machine, and another machine's only with --force;
- plain `npx cdktf destroy` of staging with pr-147 live stops at plan (prevent_destroy);
- a pg_version change (which replaces staging's project) is refused naming pg_version;
  --allow-replace is refused too while pr-147 forks staging, and deploys it once pr-147 is gone.

Measured at 2.8 to 6.5 minutes on the shared 2-core machine, depending on its load (two deploys
in the fixture, two interrupted ones, their second deploys and destroys side by side, one cdktf
destroy, one project replacement).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from forkstage.locks import who
from tests import procs
from tests.local_env import BIN, LocalCloud
from tests.wrapper_env import REPO

pytestmark = pytest.mark.slow

TIMEOUT = 300
STOP_BOUND = 30  # seconds from the SIGINT to forkstage's exit
DELAY = "neon_endpoint:create=20"  # the endpoint's creation waits (StopProvider ends it)


APP_FILES = ("main.py", "cdktf.json", "forkstage.toml", "stacks", "migrations", "worker")


def app_copy(dest: Path) -> Path:
    """The example app alone, as a team's own repository holds it (forkstage installed)."""
    dest.mkdir(mode=0o755)
    for name in APP_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    (dest / "node_modules").symlink_to(REPO / "node_modules")
    return dest


@dataclass
class Cloud:
    local: LocalCloud
    app: Path
    deployed: dict[str, str] = field(default_factory=dict)  # stage -> deploy's stderr

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in self.local.env().items() if not k.startswith("CDKTF_")}
        env.pop("STAGE", None)
        env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
        env.update(extra)
        return env

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "forkstage"), *args]
        return procs.run(argv, cwd=self.app, env=self.env(**env), timeout=TIMEOUT)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(*args)
        procs.assert_ok(done)
        return done

    def start(self, *args: str) -> subprocess.Popen[str]:
        return procs.start([str(BIN / "forkstage"), *args], cwd=self.app, env=self.env())

    def bash(self, script: str) -> subprocess.CompletedProcess[str]:
        return procs.run(["bash", "-c", script], cwd=self.app, env=self.env(), timeout=TIMEOUT)

    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["stage"]: r for r in json.loads(self.ok("stages", "--json").stdout)}

    @functools.cached_property
    def client(self) -> Any:
        return self.s3()

    def s3(self) -> Any:
        lines = self.ok("backend", "credentials", "--policy", "admin").stdout.split()
        cred = dict(line.split("=", 1) for line in lines if "=" in line)
        return boto3.client(
            "s3",
            endpoint_url=self.local.endpoint,
            region_name="us-east-1",
            aws_access_key_id=cred["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=cred["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}),
        )

    def state(self, stage: str) -> dict[str, Any]:
        key = f"env:/{stage}/forkstage/terraform.tfstate"
        try:
            body = self.client.get_object(Bucket="forkstage-state", Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return {"serial": None, "resources": []}
        doc: dict[str, Any] = json.loads(body) if body.strip() else {"resources": []}
        return doc

    def recorded(self, stages: list[str]) -> tuple[set[str], set[str], set[str]]:
        """Endpoint and branch ids (a project's own included) and Worker script names the
        stages' states record."""
        endpoints: set[str] = set()
        branches: set[str] = set()
        workers: set[str] = set()
        for stage in stages:
            for resource in self.state(stage)["resources"]:
                for instance in resource.get("instances", []):
                    attrs = instance["attributes"]
                    if resource["type"] == "cloudflare_workers_script":
                        workers.add(attrs["script_name"])
                    elif resource["type"] == "neon_endpoint":
                        endpoints.add(attrs["id"])
                    elif resource["type"] == "neon_branch":
                        branches.add(attrs["id"])
                    elif resource["type"] == "neon_project":
                        endpoints.add(attrs["default_endpoint_id"])
                        branches.add(attrs["default_branch_id"])
        return endpoints, branches, workers

    def served(self) -> tuple[set[str], set[str], list[str]]:
        """What the local cloud has: endpoint ids, their branch ids, running Worker scripts."""
        from forkstage.local_workers import running_workers
        from localcloud.neon import ControlPlane

        found = ControlPlane(self.local.home).endpoints()
        workers = [w["script"] for w in running_workers(self.local.home)]
        return {e.id for e in found}, {e.branch_id for e in found}, workers


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    local = LocalCloud("forkstage-int-")
    # the app in the cloud's folder (PostgreSQL may enter it), its home the default .forkstage
    app = app_copy(local.home / "app")
    local.home = app / ".forkstage"
    box = Cloud(local, app)
    try:
        box.ok("deploy", "--stage", "staging")
        box.deployed["pr-147"] = box.ok("deploy", "--stage", "pr-147").stderr
        yield box
    finally:
        # the state and data live in the copy: stopping its servers and deleting it is enough
        box.run("local", "down")
        if not local.processes():
            shutil.rmtree(app.parent, ignore_errors=True)


def test_a_deploy_prints_a_line_per_resource_created(cloud: Cloud) -> None:
    err = cloud.deployed["pr-147"]
    managed = [r for r in cloud.state("pr-147")["resources"] if r["mode"] == "managed"]
    assert len(managed) == 7
    for resource in managed:
        address = f"{resource['type']}.{resource['name']}"
        assert f"  creating {address} ...\n" in err, err
        assert f"  created {address} after " in err, err
    # the summary is unchanged: stdout holds it, progress is on stderr only
    assert "creating" not in cloud.ok("outputs", "--stage", "pr-147").stdout


class Deploy:
    """``forkstage deploy`` in a session of its own, its stderr read line by line."""

    def __init__(self, cloud: Cloud, stage: str) -> None:
        argv = [str(BIN / "forkstage"), "deploy", "--stage", stage]
        self.proc = subprocess.Popen(
            argv,
            cwd=cloud.app,
            env=cloud.env(FORKSTAGE_LOCAL_DELAY=DELAY),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.seen = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.strip().startswith("creating neon_endpoint."):
                self.seen.set()

    def wait_for_endpoint(self) -> None:
        if not self.seen.wait(TIMEOUT):
            self.proc.kill()
            raise AssertionError("no endpoint creation line:\n" + "".join(self.lines))

    def finish(self) -> tuple[int, str, float]:
        started = time.monotonic()
        try:
            code = self.proc.wait(timeout=STOP_BOUND)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError("forkstage did not stop:\n" + "".join(self.lines)) from None
        self.reader.join(timeout=5)
        return code, "".join(self.lines), time.monotonic() - started


def check_interrupted(cloud: Cloud, stage: str, code: int, err: str, took: float) -> None:
    assert code == 130, err
    assert took < STOP_BOUND
    assert "Error: interrupted by SIGINT: Terraform stopped gracefully" in err, err
    assert f"resume with: forkstage deploy --stage {stage}" in err
    rows = cloud.rows()
    assert rows[stage]["lock_id"] is None
    endpoints, branches, workers = cloud.recorded(list(rows))
    served_endpoints, served_branches, served_workers = cloud.served()
    assert served_endpoints <= endpoints, "an endpoint runs outside every state"
    assert served_branches <= branches
    assert set(served_workers) <= workers
    addresses = {r["type"] for r in cloud.state(stage)["resources"]}
    assert "neon_endpoint" in addresses  # the one being created when the SIGINT came


def test_sigint_to_forkstage_stops_gracefully_and_the_lock_is_named_meanwhile(
    cloud: Cloud,
) -> None:
    deploy = Deploy(cloud, "pr-148")
    deploy.wait_for_endpoint()

    second = cloud.run("deploy", "--stage", "pr-148")
    assert second.returncode == 1, second.stderr
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: stage pr-148 is locked by {who()} since "), line
    assert "for apply" in line and "--lock-timeout" in line
    assert "forkstage unlock --stage pr-148" in line

    live = cloud.run("unlock", "--stage", "pr-148")
    assert live.returncode == 3, live.stderr
    assert "held by a live forkstage run on this machine" in live.stderr
    assert cloud.rows()["pr-148"]["lock_id"] is not None

    assert deploy.proc.poll() is None, "".join(deploy.lines)
    os.kill(deploy.proc.pid, signal.SIGINT)
    code, err, took = deploy.finish()
    check_interrupted(cloud, "pr-148", code, err, took)


def test_sigint_to_the_process_group_stops_gracefully(cloud: Cloud) -> None:
    deploy = Deploy(cloud, "pr-149")
    deploy.wait_for_endpoint()
    os.killpg(deploy.proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
    code, err, took = deploy.finish()
    check_interrupted(cloud, "pr-149", code, err, took)


def test_interrupted_stages_deploy_again_without_flags_then_leave_nothing_served(
    cloud: Cloud,
) -> None:
    stages = ("pr-148", "pr-149")  # interrupted above, each while its endpoint was created
    started = [cloud.start("deploy", "--stage", stage) for stage in stages]
    for stage, proc in zip(stages, started, strict=True):
        done = procs.wait(proc, timeout=TIMEOUT, check=True)
        assert f"deployed {stage}:" in done.stdout
    outputs = [json.loads(cloud.ok("outputs", "--stage", s, "--json").stdout) for s in stages]
    started = [cloud.start("destroy", "--stage", stage) for stage in stages]
    for proc in started:
        procs.wait(proc, timeout=TIMEOUT, check=True)
    endpoints, branches, workers = cloud.recorded(["staging", "pr-147"])
    served_endpoints, served_branches, served_workers = cloud.served()
    assert served_endpoints <= endpoints and served_branches <= branches
    assert set(served_workers) <= workers
    assert not {o["worker_name"] for o in outputs} & set(served_workers)


def put_lock(cloud: Cloud, stage: str, holder: str) -> dict[str, str]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    lock = {
        "ID": f"0000-{holder}",
        "Operation": "OperationTypeApply",
        "Who": holder,
        "Version": "1.15.5",
        "Created": created,
        "Path": f"forkstage-state/env:/{stage}/forkstage/terraform.tfstate",
        "Info": "",
    }
    key = f"env:/{stage}/forkstage/terraform.tfstate.tflock"
    cloud.client.put_object(Bucket="forkstage-state", Key=key, Body=json.dumps(lock).encode())
    return lock


def test_unlock_releases_a_stale_lock_and_another_machines_only_with_force(cloud: Cloud) -> None:
    assert cloud.ok("unlock", "--stage", "pr-147").stdout == "stage pr-147 is not locked\n"

    stale = put_lock(cloud, "pr-147", who())  # this machine, no forkstage run alive
    rows = cloud.rows()
    assert rows["pr-147"]["lock_age"] == "1h ago"
    assert f"{who()} (1h ago)" in cloud.ok("stages").stdout
    released = cloud.ok("unlock", "--stage", "pr-147")
    assert released.stdout.splitlines() == [
        f"lock of pr-147: {who()} since " + released.stdout.split(" since ", 1)[1].split("\n")[0],
        f"released the lock {stale['ID']} of pr-147",
    ]
    assert cloud.rows()["pr-147"]["lock_id"] is None

    other = put_lock(cloud, "pr-147", "ci@runner-7")
    refused = cloud.run("unlock", "--stage", "pr-147")
    assert refused.returncode == 3
    assert "ci@runner-7" in refused.stderr and "--force" in refused.stderr
    wrong_id = cloud.run("unlock", "--stage", "pr-147", "--force", "--id", "nope")
    assert wrong_id.returncode == 3 and cloud.rows()["pr-147"]["lock_id"] == other["ID"]
    forced = cloud.ok("unlock", "--stage", "pr-147", "--force", "--id", other["ID"])
    assert forced.stdout.endswith(f"released the lock {other['ID']} of pr-147\n")
    assert cloud.rows()["pr-147"]["lock_id"] is None


def counts(cloud: Cloud, stage: str) -> tuple[int, list[str]]:
    state = cloud.state(stage)
    return state["serial"], sorted(f"{r['type']}.{r['name']}" for r in state["resources"])


def test_plain_cdktf_destroy_of_the_owner_stops_at_plan(cloud: Cloud) -> None:
    assert cloud.rows()["pr-147"]["status"] == "live"
    before = counts(cloud, "staging")
    done = cloud.bash('eval "$(forkstage env --stage staging)" && npx cdktf destroy --auto-approve')
    assert done.returncode != 0
    text = done.stdout + done.stderr
    if "prevent_destroy" not in text:
        # Under load cdktf-cli can drop Terraform's closing diagnostics ("planned the following
        # actions, but then encountered a problem" is its last line): ask the engine itself,
        # in the same folder and shell, why that plan stops.
        assert "but then encountered a problem" in text, text[-3000:]
        again = cloud.bash(
            'eval "$(forkstage env --stage staging)" && cd cdktf.out/stacks/stack-staging && '
            '"$TERRAFORM_BINARY_NAME" plan -destroy -input=false -no-color'
        )
        assert again.returncode == 1, again.stdout[-3000:]
        text = again.stdout + again.stderr
    assert "prevent_destroy" in text, text[-3000:]
    assert counts(cloud, "staging") == before


def test_a_deploy_that_replaces_the_owners_project_is_refused_then_allowed(cloud: Cloud) -> None:
    settings = cloud.app / "forkstage.toml"
    settings.write_text(settings.read_text().replace("pg_version = 16", "pg_version = 17"))
    before = counts(cloud, "staging")
    refused = cloud.run("deploy", "--stage", "staging")
    assert refused.returncode == 3, refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: deploy of staging would replace neon_project.db_project_"), line
    assert "(pg_version forces it)" in line and "--allow-replace" in line
    assert counts(cloud, "staging") == before

    # allowed, but not under a live fork: Neon keeps a branch with children (nothing done)
    forked = cloud.run("deploy", "--stage", "staging", "--allow-replace")
    assert forked.returncode == 3, forked.stderr
    assert forked.stderr.strip().splitlines()[-1] == (
        "Error: stage staging is referenced by pr-147, whose branches fork the one this deploy "
        "would replace: destroy it first (forkstage destroy --stage pr-147); nothing was changed"
    )
    assert counts(cloud, "staging") == before
    cloud.ok("destroy", "--stage", "pr-147")

    allowed = cloud.run("deploy", "--stage", "staging", "--allow-replace")
    assert allowed.returncode == 0, allowed.stderr
    assert "  created neon_project.db_project_" in allowed.stderr
    state = cloud.state("staging")
    [project] = [r for r in state["resources"] if r["type"] == "neon_project"]
    assert project["instances"][0]["attributes"]["pg_version"] == 17
