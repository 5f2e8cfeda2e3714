"""Issue 20: `forkstage ci rehearse gitlab` runs the rendered .gitlab-ci.yml's own scripts
offline on this repository: a fresh clone of its HEAD (what a pipeline checks out; other work
in the checkout is not part of it), whose jobs `pip install .` from the clone. The rehearsal runs
from this checkout's venv, as a developer here would run it before pushing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests import procs
from tests.rehearsal import check_preview_outcome

REPO = Path(__file__).resolve().parent.parent
PR = 5
APP = "forkstage"  # forkstage.toml [app] name


def _env() -> dict[str, str]:
    """This environment without forkstage's, Terraform's or the clouds' variables."""
    dropped = ("AWS_", "TF_", "FORKSTAGE_", "CDKTF_", "NEON_", "CLOUDFLARE_", "PIP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    return env


def _forkstage(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """This checkout's forkstage (-P: not the clone's, which only the jobs install)."""
    return procs.run(
        [sys.executable, "-P", "-m", "forkstage", *args], cwd=cwd, env=_env(), timeout=timeout
    )


def _script_lines(job: dict[str, object], base: dict[str, object]) -> list[str]:
    merged = {**base, **job}
    lines = [*merged.get("before_script", []), *merged.get("script", [])]  # type: ignore[misc]
    return [str(line).strip().splitlines()[0][:60] for line in lines]


def test_the_gitlab_pipeline_rehearsed_on_this_repository(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    procs.run(["git", "clone", "-q", str(REPO), str(clone)], cwd=tmp_path, timeout=120, check=True)
    # npm ci cannot run offline: the checkout's packages stand in (Miniflare for the stand-in
    # Cloudflare's Workers); the committed bundle must be current, so no job needs npm
    (clone / "node_modules").symlink_to(REPO / "node_modules")
    procs.assert_ok(_forkstage("bundle", "--check", cwd=clone))
    done = _forkstage(
        "ci",
        "rehearse",
        "gitlab",
        "--pr",
        str(PR),
        "--json",
        "--work",
        str(tmp_path / "work"),
        cwd=clone,
        timeout=600,
    )
    assert done.returncode == 0, procs.failure(done)
    outcome = json.loads(done.stdout)
    assert outcome["ok"] is True
    steps = outcome["steps"]
    # every script line of the four jobs ran in order and passed; the rehearsal's checks between
    rendered = _forkstage("ci", "render", "gitlab", cwd=clone)
    procs.assert_ok(rendered)
    doc = yaml.safe_load(rendered.stdout.split("\n", 1)[1])
    expected = [
        (job, line)
        for job in ("deploy-staging", "deploy-preview", "destroy-preview", "prune")
        for line in _script_lines(doc[job], doc[".forkstage"])
    ]
    assert [(s["job"], s["step"]) for s in steps if s["job"] != "rehearsal"] == expected
    assert all(s["code"] == 0 and not s["skipped"] for s in steps), steps
    deploys = [s for s in steps if s["step"].startswith("forkstage deploy")]
    assert [s["job"] for s in deploys] == ["deploy-staging", "deploy-preview"]
    assert all(s["seconds"] > 1 for s in deploys), deploys
    check_preview_outcome(outcome, app=APP, pr=PR)
    assert json.loads(outcome["worker"]["body"])["ok"] is True
    # with FORKSTAGE_GITLAB_TOKEN set, the note was posted and the prune listed the open merge
    # requests through the API stand-in (none open: the closed preview is already gone)
    outputs = {(s["job"], s["step"][:20]): s["output"] for s in steps}
    assert "is not set" not in outputs[("deploy-preview", "# One note per merge")]
    prune = outputs[("prune", "# Closed merge reque")]
    assert "is not set" not in prune and prune.strip().endswith("nothing to prune"), prune
