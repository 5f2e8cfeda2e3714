"""``forkstage init``: write a complete forkstage app into a folder (never over a file)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from cdk.runtime import INSTALL, installed
from forkstage.errors import BadInput
from forkstage.scaffold import InitError, git_root, plan, write


@click.command()
@click.argument(
    "folder", required=False, type=click.Path(file_okay=False, path_type=Path), default=None
)
@click.option(
    "--name",
    default=None,
    help="The app's name, part of every Neon and Cloudflare name (default: the folder's name).",
)
@click.option(
    "--cdk",
    type=click.Choice(["cdktf", "cdktn"]),
    default="cdktf",
    show_default=True,
    help="The CDK runtime: cdktf 0.21 (archived by HashiCorp) or CDK Terrain, cdktn 0.24 "
    "(maintained; recommended for new apps).",
)
@click.option(
    "--install",
    default=None,
    help="[ci] install: how pipelines install forkstage (default: how it was installed here).",
)
def init(folder: Path | None, name: str | None, cdk: str, install: str | None) -> None:
    """Write a forkstage app into FOLDER (default: the current folder).

    forkstage.toml, cdktf.json, main.py, stacks/app.py, migrations/, worker/src/, package.json
    (the Node tooling) and .gitignore lines. An existing file is never overwritten: init lists
    every conflict and exits 2 with nothing written. In an existing repository keep the app in
    its own folder, e.g. infra/.

    Example: forkstage init infra --name shop --cdk cdktn
    """
    target = (folder or Path.cwd()).resolve()
    app_name = name or target.name.lower()
    try:
        result = plan(target, app_name, install=install, cdk=cdk)
    except InitError as exc:
        for line in exc.lines:
            click.echo(f"  {line}", err=True)
        raise BadInput(str(exc)) from None
    write(result)
    where = os.path.relpath(target)
    click.echo(f"wrote a forkstage app {app_name!r} in {target}:")
    for rel in [*result.files, *([".gitignore (appended)"] if result.gitignore_append else [])]:
        click.echo(f"  {rel}")
    repo = git_root(target) or target
    click.echo("next:")
    if not installed(cdk):
        click.echo(f"  {INSTALL[cdk]:<34} # {cdk}, the app's CDK runtime, is not installed here")
    if where != ".":
        click.echo(f"  cd {shlex.quote(where)}")
    click.echo("  npm install                        # the Node tooling; commit package-lock.json")
    click.echo("  forkstage bundle                   # the Worker bundle: commit worker/dist too")
    click.echo("  forkstage deploy --stage staging   # on the local cloud (no account needed)")
    click.echo("  forkstage deploy --stage pr-1      # a preview: a branch forked off staging")
    click.echo(f"  forkstage ci render github --out {shlex.quote(os.path.relpath(repo, target))}")
