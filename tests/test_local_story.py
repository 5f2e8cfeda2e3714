"""The seed story on the local cloud, through the real AppStack config (issue: local cloud).

Runs the README's demo with its own FORKSTAGE_HOME and state-server port: staging, pr-147 forked
from staging's branch, a write through pr-147's Worker invisible in staging, destroy pr-147 with
staging's rows and state serial untouched, then staging destroyed with nothing left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.wrapper_env import REPO, free_port

pytestmark = pytest.mark.slow


def test_demo_story_end_to_end() -> None:
    # PostgreSQL runs as the postgres user: its data must live below folders it can enter.
    home = Path(tempfile.mkdtemp(prefix="forkstage-story-", dir="/tmp"))
    home.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSTAGE_", "AWS_", "TF_"))}
    env.update(
        FORKSTAGE_HOME=str(home),
        FORKSTAGE_BACKEND_ENDPOINT=f"http://127.0.0.1:{free_port()}",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    )
    proc = subprocess.run(
        [sys.executable, "scripts/demo.py"], cwd=REPO, env=env, text=True,
        capture_output=True, timeout=600, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    seed = "Hello from forkstage: this note lives in the branch database."
    assert f"staging rows: [(1, '{seed}')]" in out
    assert "'body': 'written by pr-147'" in out
    assert "pr-147 does not see staging's write" in out
    assert (
        f"staging rows (without pr-147's write): [(1, '{seed}'), (2, 'written by staging')]" in out
    )
    assert "pr-147's endpoint is stopped and its branch data" in out
    assert "pr-147's Worker stopped with its script" in out  # no wrapper step stopped it
    assert "owner state serial unchanged" in out
    assert "worker ready" in proc.stderr
    # no process of this home survives, and no branch data is left
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(home) not in ps
    branches = home / "local" / "neon" / "branches"
    assert not branches.exists() or list(branches.iterdir()) == []
