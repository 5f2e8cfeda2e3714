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


@click.command()
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: exit 0 when the bundle is current (or there is no Worker), 1 when it "
    "must be built.",
)
def bundle(check: bool) -> None:
    """Build the Worker bundle (<worker>/dist/index.js) when its sources or lock file changed.

    Every synth does this on its own; pipelines ask first, and install the Node packages only
    when the answer is that it must be built. The bundle records the hash of what it was
    built from (file times mean nothing after a clone).

    Example: forkstage bundle --check || npm ci
    """
    from forkstage.bundle import BundleError, WorkerBundle
    from forkstage.errors import BadInput, Failed

    project = Project.load()
    worker = WorkerBundle(root=project.root, worker=project.settings.worker_path)
    rel = (
        worker.bundle.relative_to(project.root)
        if worker.bundle.is_relative_to(project.root)
        else worker.bundle
    )
    try:
        status = worker.status()
        if status == "none":
            click.echo(f"no Worker here ({project.settings.worker_dir}/ does not exist)")
            return
        if status == "fresh":
            click.echo(f"{rel} is up to date")
            return
        if check:
            raise Failed(f"{rel} is {status}: it must be built (forkstage bundle)")
        worker.build()
    except BundleError as exc:
        raise BadInput(str(exc)) from None
    click.echo(f"built {rel}")
