"""The synth-speed measures on jsii engage on both runtimes, cdktf and cdktn (a jsii or runtime
upgrade must not switch them off silently)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import os
import cdk
from cdk.kernel import LAUNCHER, memoize_overrides, start_early
print(os.environ.get("JSII_NODE") == str(LAUNCHER))
print(start_early())
memoize_overrides()
import jsii._kernel as kernel
import jsii._kernel.providers.process as jp
print(getattr(kernel._get_overides, "forkstage_memo", False))
early_send = jp._NodeProcess.send
from cdk.core import RUNTIME, App, TerraformStack
stack = TerraformStack(App(), "s")
print(RUNTIME, type(stack).__module__)
# every load queued early was answered (jsii asked for exactly those), so jsii's own send is back
print(jp._NodeProcess.send is not early_send)
"""


@pytest.mark.parametrize("runtime", ["cdktf", "cdktn"])
def test_fast_host_early_start_and_override_memo_engage(runtime: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JSII_", "FORKSTAGE_JSII"))}
    env["FORKSTAGE_CDK"] = runtime
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "True", runtime, runtime, "True"]


def test_the_pinned_node_22_is_what_the_host_runs() -> None:
    node = REPO / "node_modules" / ".bin" / "node"
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("v22.")
