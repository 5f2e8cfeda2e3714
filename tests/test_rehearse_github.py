"""Issue 20: `forkstage ci rehearse github` runs the rendered workflow's own steps offline, on an
app made by the installed `forkstage init` (tests/installed.py: the real wheel in a venv outside
this checkout).

The app is what a user commits: init's files and the Worker bundle `forkstage bundle` built (no
package-lock.json: npm cannot resolve offline). Each job's `pip install forkstage==<version>`
finds the wheel through PIP_FIND_LINKS. One full rehearsal (push to main, PR opened, closed, the
prune) and one that a planted defect stops at its first deploy.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from forkstage.rehearse_fakes import ORG
from tests import procs
from tests.installed import APP_NAME, Installed
from tests.rehearsal import check_preview_outcome

PR = 4
WORKFLOW = ".github/workflows/forkstage-preview.yml"


def _commit(repo: Path, message: str) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    procs.run(["git", "add", "-A"], cwd=repo, timeout=30, check=True)
    procs.run([*git, "commit", "-qm", message], cwd=repo, timeout=30, check=True)


def _user_app(installed: Installed, repo: Path) -> Path:
    """init, then the bundle built and committed with the rest (init's next steps say so)."""
    app = installed.new_app(repo)
    procs.assert_ok(installed.forkstage("bundle", cwd=app, timeout=120))
    _commit(repo, "the app, as init wrote it, and its Worker bundle")
    tracked = procs.run(["git", "ls-files"], cwd=repo, timeout=30, check=True).stdout.split()
    assert "infra/worker/dist/index.js" in tracked
    assert not [p for p in tracked if "node_modules" in p or p.endswith(".lock.hcl")], tracked
    return app


def _rehearse(
    installed: Installed, app: Path, work: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = installed.forkstage(
        "ci",
        "rehearse",
        "github",
        *args,
        "--json",
        "--work",
        str(work),
        cwd=app,
        timeout=600,
        # the jobs' offline `pip install forkstage==<version>` finds the wheel here
        PIP_FIND_LINKS=str(installed.wheel.parent),
    )
    assert done.stdout.strip(), procs.failure(done)
    return done, json.loads(done.stdout)


def _expected_steps(installed: Installed, app: Path) -> list[tuple[str, str]]:
    """(job, step) of the rendered workflow's four rehearsed jobs, in CI's order."""
    rendered = installed.forkstage("ci", "render", "github", cwd=app)
    procs.assert_ok(rendered)
    text = rendered.stdout.split(f"# path: {WORKFLOW}\n", 1)[1]
    jobs = yaml.safe_load(text)["jobs"]
    order = ("deploy-staging", "deploy-preview", "destroy-preview", "prune")
    return [
        (job, str(step.get("name") or step["uses"].split("@")[0]))
        for job in order
        for step in jobs[job]["steps"]
    ]


def test_the_github_pipeline_rehearsed_on_an_init_app(installed: Installed, tmp_path: Path) -> None:
    app = _user_app(installed, tmp_path / "repo")
    done, outcome = _rehearse(installed, app, tmp_path / "work", "--pr", str(PR))
    assert done.returncode == 0, procs.failure(done)
    assert outcome["ok"] is True
    steps = outcome["steps"]
    # every step of every job ran, in order, and passed (none skipped by its `if:`); between
    # the jobs, the rehearsal's own checks
    ran = [(s["job"], s["step"]) for s in steps if s["job"] != "rehearsal"]
    assert ran == _expected_steps(installed, app)
    assert all(s["code"] == 0 and not s["skipped"] for s in steps), steps
    deploys = [s for s in steps if s["step"] in ("Deploy", "Destroy")]
    assert [s["job"] for s in deploys] == ["deploy-staging", "deploy-preview", "destroy-preview"]
    assert all(s["seconds"] > 1 for s in deploys), deploys  # Terraform ran, not a no-op
    url, comment = check_preview_outcome(outcome, app=APP_NAME, pr=PR)
    # the Worker answered /health from the preview's own branch
    worker = outcome["worker"]
    assert json.loads(worker["body"]) == {"ok": True, "database": "app"}
    assert worker["local_url"].startswith("http://127.0.0.1:")
    assert url in comment
    # the Summarize step gets the org id (a variable, not a secret): the comment names the org
    assert f"Neon org {ORG}," in comment and "personal account" not in comment, comment
    # the prune asked the `gh` stand-in for the open pull requests: none, and pr-4 is gone
    assert steps[-1]["step"] == "Prune" and steps[-1]["output"].strip().endswith(
        "nothing to prune"
    ), steps[-1]


def test_a_missing_app_interpreter_fails_the_rehearsal_at_synth(
    installed: Installed, tmp_path: Path
) -> None:
    """The library bug the rehearsal exists for: an app command naming a `.venv` the pipeline
    never makes. The job installs forkstage, passes the preflight, then synth cannot start."""
    app = _user_app(installed, tmp_path / "repo")
    config = app / "cdktf.json"
    data = json.loads(config.read_text())
    data["app"] = ".venv/bin/python3 main.py"
    config.write_text(json.dumps(data, indent=2) + "\n")
    _commit(tmp_path / "repo", "the planted defect")
    done, outcome = _rehearse(installed, app, tmp_path / "work", "--pr", "9")
    assert done.returncode == 1, procs.failure(done)
    assert outcome["ok"] is False
    *before, failed = outcome["steps"]
    assert (failed["job"], failed["step"]) == ("deploy-staging", "Deploy")
    assert failed["code"] != 0
    assert [s["step"] for s in before][-2:] == [
        "Install forkstage (the cloud path only)",
        "Build the Worker bundle if its sources changed",
    ]
    assert all(s["code"] == 0 for s in before), before
    # past the preflight (its target line), stopped by synth's error naming the interpreter
    lines = failed["output"].strip().splitlines()
    assert lines[0].startswith("target: cloud: "), failed["output"]
    assert lines[-1] == (
        "Error: the app command '.venv/bin/python3 main.py' (cdktf.json \"app\") cannot start: "
        "No such file or directory"
    )
    assert "deploy-staging: Deploy" in done.stderr
    assert outcome["environment_url"] == "" and outcome["comment"] == ""
