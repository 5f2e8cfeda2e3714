"""``forkstage unlock``: show a stage's state lock and release it when that is safe."""

from __future__ import annotations

import json

import click

from forkstage.commands import stage_option
from forkstage.context import Project
from forkstage.locks import describe, unlock
from forkstage.views import backend_reader


@click.command("unlock")
@stage_option
@click.option(
    "--force",
    is_flag=True,
    help="Release a lock held by another machine (or an unknown holder) whose run is gone.",
)
@click.option("--id", "lock_id", metavar="LOCK_ID", help="Release only the lock with this ID.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def unlock_cmd(stage: str, force: bool, lock_id: str | None, as_json: bool) -> None:
    """Show the stage's state lock and release it, with the stage's own backend settings.

    The lock object is deleted only while it still carries the ID shown (or --id). A lock held
    by a live forkstage run on this machine is refused (exit 3: stop that run instead); a lock
    of this machine whose run is gone is released; any other holder needs --force.

    Example: forkstage unlock --stage pr-147
    """
    project = Project.load()
    project.parse_stage(stage)
    reader = backend_reader(project)
    if not as_json and (shown := reader.lock(stage)):
        click.echo(f"lock of {stage}: {describe(shown)}")
    result = unlock(
        reader, project.settings.backend, project.home, stage, force=force, lock_id=lock_id
    )
    if as_json:
        click.echo(json.dumps(result.to_json(), sort_keys=True))
    elif result.lock is None:
        click.echo(f"stage {stage} is not locked")
    else:
        click.echo(f"released the lock {result.lock.get('ID')} of {stage}")
