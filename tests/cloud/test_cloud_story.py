"""The seed story on the real cloud: Neon, Cloudflare and an S3/R2 state bucket (opt-in).

`make test-cloud` (`pytest -m cloud`) runs it; plain `pytest` deselects it. Without every
credential below it is reported as skipped, naming what is missing. Each run uses its own app
name (so its own Neon project, branch, Hyperdrive config and Worker names) and its own state
key, destroys everything it made in `finally`, and checks through the providers' APIs that the
PR stage's branch, Hyperdrive config and Worker are gone while staging's project is still there.

Environment:
  NEON_API_KEY, CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_WORKERS_SUBDOMAIN,
  FORKSTAGE_BACKEND_ENDPOINT, FORKSTAGE_BACKEND_BUCKET and the bucket's credentials
  (FORKSTAGE_STATE_ACCESS_KEY_ID + FORKSTAGE_STATE_SECRET_ACCESS_KEY, or AWS_ACCESS_KEY_ID +
  AWS_SECRET_ACCESS_KEY); optional NEON_ORG_ID.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import procs

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NEON_API = "https://console.neon.tech/api/v2"
CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"
REQUIRED = (
    "NEON_API_KEY",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_ACCOUNT_ID",
    "CLOUDFLARE_WORKERS_SUBDOMAIN",
    "FORKSTAGE_BACKEND_ENDPOINT",
    "FORKSTAGE_BACKEND_BUCKET",
)
STATE_KEYS = (
    ("FORKSTAGE_STATE_ACCESS_KEY_ID", "FORKSTAGE_STATE_SECRET_ACCESS_KEY"),
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
)


def missing_credentials(env: Mapping[str, str] = os.environ) -> list[str]:
    """What the real-cloud story still needs in the environment."""
    missing = [name for name in REQUIRED if not env.get(name, "").strip()]
    if not any(env.get(key) and env.get(secret) for key, secret in STATE_KEYS):
        missing.append("FORKSTAGE_STATE_ACCESS_KEY_ID/FORKSTAGE_STATE_SECRET_ACCESS_KEY")
    return missing


MISSING = missing_credentials()
pytestmark = [
    pytest.mark.cloud,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        bool(MISSING),
        reason="real-cloud test: set " + ", ".join(MISSING) + " (see README 'Going to production')",
    ),
]

# The app's files a project needs (cdk/ and forkstage come from the installed package).
APP_FILES = ("cdktf.json", "main.py", "stacks", "migrations", "worker")


@dataclass
class CloudProject:
    """A copy of this repository's app with a per-run app name and state key."""

    root: Path
    run_id: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "CDKTF_"))}
        env.pop("STAGE", None)
        env.update(
            {
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "FORKSTAGE_HOME": str(self.root / ".forkstage"),
                "FORKSTAGE_TARGET": "cloud",
                "FORKSTAGE_BACKEND_KIND": "s3",
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            }
        )
        return env

    def forkstage(self, *args: str, timeout: float = 900) -> Any:
        return procs.run(
            [str(BIN / "forkstage"), *args], cwd=self.root, env=self.env(), timeout=timeout
        )

    def outputs(self, stage: str) -> dict[str, Any]:
        done = self.forkstage("outputs", "--stage", stage, "--json", timeout=120)
        procs.assert_ok(done)
        return dict(json.loads(done.stdout))


@pytest.fixture
def project(tmp_path: Path) -> CloudProject:
    run_id = secrets.token_hex(3)
    root = tmp_path / "app"
    for rel in APP_FILES:
        src, dest = REPO / rel, root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest)
    settings = (REPO / "forkstage.toml").read_text()
    settings = settings.replace('name = "forkstage"', f'name = "fst{run_id}"', 1)
    settings = settings.replace(
        'key = "forkstage/terraform.tfstate"',
        f'key = "forkstage-cloud-test/{run_id}/terraform.tfstate"',
        1,
    )
    assert f"fst{run_id}" in settings and run_id + "/terraform" in settings, "forkstage.toml moved"
    (root / "forkstage.toml").write_text(settings)
    return CloudProject(root=root, run_id=run_id)


def api(url: str, token: str, *, method: str = "GET", body: bytes | None = None) -> int:
    """The HTTP status of one API call (404 = gone)."""
    request = urllib.request.Request(
        url,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def fetch(url: str, *, data: bytes | None = None, wait: float = 120) -> str:
    """A request to a freshly deployed Worker: workers.dev may need a moment to route it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
                return str(r.read().decode())
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


@pytest.fixture
def deployed(project: CloudProject) -> Iterator[CloudProject]:
    """staging, then pr-1; both destroyed in `finally`, pr-1 first, whatever happened."""
    try:
        yield project
    finally:
        failures = []
        for stage in ("pr-1", "staging"):
            done = project.forkstage("destroy", "--stage", stage)
            if done.returncode != 0:
                failures.append(f"destroy {stage}: {done.stderr[-2000:]}")
        assert not failures, "LEFT RESOURCES BEHIND (clean up by hand):\n" + "\n".join(failures)


def test_seed_story_on_the_real_cloud(deployed: CloudProject) -> None:
    p = deployed
    env = os.environ
    account = env["CLOUDFLARE_ACCOUNT_ID"]
    neon_key, cf_token = env["NEON_API_KEY"], env["CLOUDFLARE_API_TOKEN"]

    procs.assert_ok(p.forkstage("deploy", "--stage", "staging"))
    procs.assert_ok(p.forkstage("deploy", "--stage", "pr-1"))
    staging, pr = p.outputs("staging"), p.outputs("pr-1")
    assert pr["worker_url"] == (
        f"https://{pr['worker_name']}.{env['CLOUDFLARE_WORKERS_SUBDOMAIN']}.workers.dev"
    )
    assert "database_url" not in pr  # no secret without --show-secrets

    # The PR's Worker reads staging's seed row through its own branch; its write stays there.
    seeded = fetch(pr["worker_url"] + "/notes")
    fetch(pr["worker_url"] + "/notes", data=f"from pr-1 {p.run_id}".encode())
    assert f"from pr-1 {p.run_id}" in fetch(pr["worker_url"] + "/notes")
    assert f"from pr-1 {p.run_id}" not in fetch(staging["worker_url"] + "/notes")
    assert seeded.strip() not in ("", "[]")

    project_url = f"{NEON_API}/projects/{staging['neon_project_id']}"
    branch_url = f"{project_url}/branches/{pr['neon_branch_id']}"
    hyperdrive_url = f"{CLOUDFLARE_API}/accounts/{account}/hyperdrive/configs/{pr['hyperdrive_id']}"
    script_url = f"{CLOUDFLARE_API}/accounts/{account}/workers/scripts/{pr['worker_name']}/settings"
    assert api(branch_url, neon_key) == 200
    assert api(hyperdrive_url, cf_token) == 200
    assert api(script_url, cf_token) == 200

    destroyed = p.forkstage("destroy", "--stage", "pr-1")
    procs.assert_ok(destroyed)
    assert api(branch_url, neon_key) == 404
    assert api(hyperdrive_url, cf_token) == 404
    assert api(script_url, cf_token) == 404
    assert api(project_url, neon_key) == 200  # staging's project is never the PR's to remove
    assert f"from pr-1 {p.run_id}" not in fetch(staging["worker_url"] + "/notes")
