"""``forkstage synth``: write a stage's Terraform config, as `STAGE=<stage> npx cdktf synth`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from forkstage.commands import stage_option
from forkstage.context import Project
from forkstage.engine import terraform_env
from forkstage.synth import run_app


@click.command()
@stage_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: cdktf.out in the project).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def synth(stage: str, out: Path | None, as_json: bool) -> None:
    """Write stack-<stage>'s Terraform JSON (that stack alone).

    Runs the same app as `STAGE=<stage> npx cdktf synth`, without the cdktf CLI, and writes the
    same files (Terraform runs there need `eval "$(forkstage env --stage <stage>)"` first).

    Example: forkstage synth --stage pr-147 --out cdktf.out
    """
    project = Project.load()
    project.parse_stage(stage)  # exit 2 before anything is written
    started = time.perf_counter()
    target = (out if out is not None else project.root / "cdktf.out").resolve()
    env = terraform_env(project.home)
    path = run_app(project, stage, target, env=env, prepared=False)
    took = time.perf_counter() - started
    if as_json:
        result = {"stage": stage, "stack": f"stack-{stage}", "path": str(path)}
        click.echo(json.dumps({**result, "seconds": round(took, 3)}))
    else:
        click.echo(f"synthesized stack-{stage} -> {path} ({took:.2f}s)")
