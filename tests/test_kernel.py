"""The synth-speed measures on jsii engage (a jsii upgrade must not switch them off silently)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import os
import cdk
from cdk.kernel import LAUNCHER, memoize_overrides, start_early
print(os.environ.get("JSII_NODE") == str(LAUNCHER))
print(start_early())
memoize_overrides()
import jsii._kernel as kernel
print(getattr(kernel._get_overides, "forkstage_memo", False))
import cdktf
print(cdktf.App is not None)
"""


def test_fast_host_early_start_and_override_memo_engage() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JSII_", "FORKSTAGE_JSII"))}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "True", "True"]


def test_the_pinned_node_22_is_what_the_host_runs() -> None:
    node = REPO / "node_modules" / ".bin" / "node"
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("v22.")
