"""``forkstage backend start|stop``: the embedded server as a background process of this project.

`serve` (backend/cli.py) runs in the foreground; these manage the background copy that other
commands start by themselves, with its pid file and log under FORKSTAGE_HOME.
"""

from __future__ import annotations

import click

from forkstage import embedded
from forkstage.context import Project
from forkstage.errors import BadInput


@click.command("start")
def start() -> None:
    """Start the embedded state server in the background (no-op when it already answers).

    Example: forkstage backend start
    """
    project = Project.load()
    backend = project.settings.backend
    if not backend.embedded:
        raise BadInput(f"the configured backend is {backend.endpoint}, not the embedded server")
    embedded.ensure_running(backend, project.home)
    click.echo(f"state server: {backend.endpoint} (log: {embedded.log_file(project.home)})")


@click.command("stop")
def stop() -> None:
    """Stop the embedded state server this project's commands started.

    Example: forkstage backend stop
    """
    home = Project.load().home
    if embedded.stop(home):
        click.echo("state server stopped")
    else:
        click.echo("no state server was running")
