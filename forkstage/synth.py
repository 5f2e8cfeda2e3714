"""Run the project's cdktf app: the one program that writes a stage's Terraform JSON."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from forkstage.context import Project
from forkstage.errors import Failed


def run_app(project: Project, stage: str, out: Path, *, only: bool, env: dict[str, str]) -> Path:
    """Run the project's cdktf app (cdktf.json "app") exactly as `npx cdktf synth` would.

    The same program writes the same JSON whichever tool starts it.
    """
    app = project.app_command()
    out.mkdir(parents=True, exist_ok=True)
    env = {**env, "FORKSTAGE_STAGE": stage, "CDKTF_OUTDIR": str(out)}
    env.pop("STAGE", None)
    if only:
        env["FORKSTAGE_SYNTH_ONLY"] = "1"
    else:
        env.pop("FORKSTAGE_SYNTH_ONLY", None)
    proc = subprocess.run(
        shlex.split(app),
        cwd=project.root,
        env=env,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise Failed(f"synth failed: {(proc.stderr or proc.stdout).strip()}")
    path = out / "stacks" / f"stack-{stage}" / "cdk.tf.json"
    if not path.is_file():
        raise Failed(f"synth wrote no stack-{stage}: is {app!r} a forkstage app?")
    return path
