"""The literal cdktf path on a fresh checkout (issues 10 item 4 and 11), on the local cloud.

One fresh copy of the repository (tracked and unignored files only: no cdktf.out, no lock
file; node_modules and .venv symlinked), one LocalCloud, staging deployed with forkstage, then
what the README's cdktf section shows, typed into bash:

- unprepared, `STAGE=pr-148 npx cdktf deploy stack-pr-148` fails within seconds naming
  `forkstage env` (and writes no state), whatever `terraform` is on PATH;
- `eval "$(forkstage env --stage pr-147)" && npx cdktf deploy stack-pr-147` succeeds the first
  time (no registry for cdktf's provider-lock step) and the PR's Worker answers;
- with pr-147's environment a bare `npx cdktf destroy` destroys pr-147 only (staging's serial
  and resources unchanged, pr-147 no longer live);
- with pr-148's environment a bare `npx cdktf deploy` deploys pr-148, a bare `npx cdktf diff`
  shows it unchanged, and `npx cdktf destroy stack-pr-148` removes it.
"""

from __future__ import annotations

import json
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

CDKTF_TIMEOUT = 300
UNPREPARED_SECONDS = 30  # cdktf-cli start + synth + a failed init; a hang would be minutes
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fresh_copy(dest: Path) -> Path:
    """The repository as a fresh checkout of this working tree would have it."""
    listed = procs.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        timeout=60,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for linked in ("node_modules", ".venv"):
        (dest / linked).symlink_to(REPO / linked)
    return dest


class Shell:
    """A person's shell in the copy: the LocalCloud's home and port, nothing prepared."""

    def __init__(self, local: LocalCloud, root: Path) -> None:
        self.local, self.root = local, root

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in self.local.env().items() if not k.startswith("CDKTF_")}
        env.pop("STAGE", None)
        env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
        return env

    def bash(self, script: str) -> subprocess.CompletedProcess[str]:
        return procs.run(
            ["bash", "-c", f"set -e\n{script}"],
            cwd=self.root,
            env=self.env(),
            timeout=CDKTF_TIMEOUT,
        )

    def ok(self, script: str) -> str:
        done = self.bash(script)
        procs.assert_ok(done)
        return done.stdout

    def forkstage(self, *args: str) -> str:
        return self.ok(" ".join(["forkstage", *args]))

    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["stage"]: r for r in json.loads(self.forkstage("stages", "--json"))}


def live(row: dict[str, Any] | None) -> bool:
    """Whether `forkstage stages` shows the stage with resources (an emptied state is not)."""
    return row is not None and (row["resources"] > 0 or row.get("status") == "live")


def get_json(url: str) -> Any:
    with _NO_PROXY.open(url, timeout=15) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    local = LocalCloud("forkstage-cdktf-")
    box = Shell(local, fresh_copy(tmp_path_factory.mktemp("checkout")))
    try:
        yield box
    finally:
        # the stages' state and data live in the home: stopping its servers is enough
        box.bash("forkstage local down")
        if not local.processes():
            shutil.rmtree(local.home, ignore_errors=True)


def test_a_stand_in_lock_file_sets_a_real_one_aside_and_gives_it_back(tmp_path: Path) -> None:
    from localcloud.registry import drop_lock_file, is_standin_lock, write_lock_file

    home, folder = tmp_path / "home", tmp_path / "stack"
    folder.mkdir()
    real = 'provider "registry.terraform.io/kislerdm/neon" {\n  hashes = [\n    "zh:00",\n  ]\n}\n'
    (folder / ".terraform.lock.hcl").write_text(real)
    lock = write_lock_file(folder, home, {"registry.terraform.io/kislerdm/neon"})
    assert is_standin_lock(lock, home)
    assert "kislerdm/neon" in lock.read_text() and "cloudflare" not in lock.read_text()
    write_lock_file(folder, home)  # again: the real one stays aside, not overwritten
    drop_lock_file(folder, home)
    assert lock.read_text() == real
    assert sorted(p.name for p in folder.iterdir()) == [".terraform.lock.hcl"]


@pytest.mark.slow
def test_the_literal_cdktf_path_on_a_fresh_checkout(shell: Shell) -> None:
    stack_dir = shell.root / "cdktf.out" / "stacks"
    assert not (shell.root / "cdktf.out").exists()
    shell.forkstage("deploy", "--stage", "staging")
    staging = shell.rows()["staging"]

    # Unprepared: fails within seconds, naming `forkstage env`, and writes nothing.
    started = time.perf_counter()
    unprepared = shell.bash("STAGE=pr-148 npx cdktf deploy stack-pr-148 --auto-approve")
    took = time.perf_counter() - started
    assert unprepared.returncode != 0, procs.failure(unprepared)
    assert took < UNPREPARED_SECONDS, f"took {took:.1f}s\n{procs.failure(unprepared)}"
    assert 'eval "$(forkstage env --stage pr-148)"' in unprepared.stdout + unprepared.stderr
    assert "pr-148" not in shell.rows()
    assert not (stack_dir / "stack-pr-148" / ".terraform.lock.hcl").exists()

    # Issue 10: the first `cdktf deploy stack-pr-147` on a fresh checkout succeeds.
    engine = shell.ok(
        'eval "$(forkstage env --stage pr-147)"\n'
        'echo "engine: $TERRAFORM_BINARY_NAME"\n'
        "npx cdktf deploy stack-pr-147 --auto-approve"
    )
    assert f"engine: {BIN / 'forkstage-terraform'}\n" in engine  # never a terraform from PATH
    lock = (stack_dir / "stack-pr-147" / ".terraform.lock.hcl").read_text()
    assert "zh:" not in lock and "kislerdm/neon" in lock  # the stand-ins', from the mirror
    assert live(shell.rows()["pr-147"])
    outputs = json.loads(shell.forkstage("outputs", "--stage", "pr-147", "--json"))
    assert outputs["worker_name"] == "forkstage-api-pr-147"
    # the stand-in started the Worker when cdktf applied it, as Cloudflare serves an upload
    assert get_json(outputs["local_url"] + "/health") == {"ok": True, "database": "app"}

    # Issue 11: a bare `cdktf destroy` with pr-147's environment destroys pr-147 only.
    shell.ok('eval "$(forkstage env --stage pr-147)" && npx cdktf destroy --auto-approve')
    rows = shell.rows()
    assert not live(rows.get("pr-147")), rows.get("pr-147")
    assert (rows["staging"]["serial"], rows["staging"]["resources"]) == (
        staging["serial"],
        staging["resources"],
    )

    # ... and a bare `cdktf deploy` / `cdktf diff` with pr-148's environment act on pr-148.
    done = shell.ok(
        'eval "$(forkstage env --stage pr-148)"\n'
        "npx cdktf deploy --auto-approve\n"
        "npx cdktf diff\n"
        "forkstage stages --json > stages-after-deploy.json\n"
        "npx cdktf destroy stack-pr-148 --auto-approve"
    )
    assert "stack-pr-148" in done and "No changes" in done
    deployed = {
        r["stage"]: r for r in json.loads((shell.root / "stages-after-deploy.json").read_text())
    }
    assert live(deployed["pr-148"]) and not live(deployed.get("pr-147"))
    rows = shell.rows()
    assert not live(rows.get("pr-148"))
    assert rows["staging"]["serial"] == staging["serial"]
    assert {p.name for p in stack_dir.iterdir()} == {"stack-pr-148"}
