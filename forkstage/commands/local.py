"""``forkstage local up|down|status|serve``: the local cloud's processes on this machine.

The stand-in providers start PostgreSQL servers (one per endpoint) and Workers (Miniflare, one
per script) during `terraform apply`; these commands bring them back after a reboot, serve a
stage's Worker on a chosen port, and stop everything.
"""

from __future__ import annotations

import json

import click

from forkstage import embedded
from forkstage.commands import stage_option
from forkstage.context import Project
from forkstage.local_workers import (
    running_workers,
    serve_all,
    serve_stage_worker,
    stop_workers,
)


@click.group()
def local() -> None:
    """The local cloud: state server, PostgreSQL endpoints and Workers on 127.0.0.1.

    Example: forkstage local up
    """


@local.command()
def up() -> None:
    """Start the state server, every deployed endpoint and Worker (e.g. after a reboot).

    Example: forkstage local up
    """
    from localcloud.neon import ControlPlane  # PostgreSQL helpers: only when used

    project = Project.load()
    embedded.ensure_running(project.settings.backend, project.home)
    plane = ControlPlane(project.home)
    plane.start_all()
    click.echo(f"state server: {project.settings.backend.endpoint}")
    for endpoint in plane.endpoints():
        click.echo(f"endpoint {endpoint.host} -> 127.0.0.1:{endpoint.port}")
    for worker in serve_all(project):
        click.echo(f"worker {worker.name} -> {str(worker.url).rstrip('/')}")


@local.command()
def down() -> None:
    """Stop Workers, endpoints and the state server; data stays for the next `up`.

    Example: forkstage local down
    """
    from localcloud.neon import ControlPlane  # PostgreSQL helpers: only when used

    project = Project.load()
    for name in stop_workers(project.home):
        click.echo(f"worker {name} stopped")
    ControlPlane(project.home).stop_all()
    click.echo("endpoints stopped")
    if embedded.stop(project.home):
        click.echo("state server stopped")


@local.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """Show what the local cloud runs: state server, endpoints, Workers (by script name).

    Example: forkstage local status --json
    """
    from localcloud.neon import ControlPlane  # PostgreSQL helpers: only when used

    project = Project.load()
    home = project.home
    endpoints = [
        {"host": e.host, "port": e.port, "branch_id": e.branch_id}
        for e in ControlPlane(home).endpoints()
    ]
    workers = running_workers(home)
    running = embedded.running_pid(home) is not None
    if as_json:
        info = {
            "state_server": project.settings.backend.endpoint,
            "state_server_running": running,
            "endpoints": endpoints,
            "workers": workers,
        }
        click.echo(json.dumps(info, sort_keys=True))
        return
    state = "running" if running else "stopped"
    click.echo(f"state server {project.settings.backend.endpoint} ({state})")
    for e in endpoints:
        click.echo(f"endpoint {e['host']} -> 127.0.0.1:{e['port']}")
    for w in workers:
        click.echo(f"worker {w['script']} -> {w['url']}")


@local.command()
@stage_option
@click.option("--port", type=int, default=0, help="Port on 127.0.0.1 (default: a free one).")
def serve(stage: str, port: int) -> None:
    """Serve a stage's Worker on 127.0.0.1 (if it does not run, or on another --port).

    Example: forkstage local serve --stage pr-147
    """
    worker = serve_stage_worker(Project.load(), stage, port=port)
    click.echo(worker.url)
