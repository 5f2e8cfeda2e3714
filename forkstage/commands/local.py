"""``forkstage local up|down|status|serve``: the local cloud's processes on this machine.

The stand-in providers create PostgreSQL servers (one per endpoint) during `terraform apply`;
these commands bring them back after a reboot, serve a stage's Worker with Miniflare, and stop
everything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from forkstage import embedded
from forkstage.context import Project, stage_option
from forkstage.errors import BadInput, Failed


def _worker_files(home: Path, stage: str) -> tuple[Path, Path]:
    return home / "workers" / f"{stage}.pid", home / "logs" / f"worker-{stage}.log"


def serve_stage_worker(project: Project, stage: str, *, port: int = 0) -> Any:
    """Start (or find) the stage's Worker with its Hyperdrive binding on the stage's branch."""
    from forkstage.state import StateReader
    from localcloud.cloudflare import Account, NotFound
    from localcloud.workers import WorkerProcess, start_worker

    project.parse_stage(stage)
    home = project.home
    pid_path, log_path = _worker_files(home, stage)
    running = WorkerProcess.attach(name=stage, pid_path=pid_path, log_path=log_path)
    if running is not None:
        return running
    embedded.ensure_running(project.settings.backend, home)
    state = StateReader(project.settings.backend, home).state(stage)
    if state is None:
        raise BadInput(f"stage {stage} is not deployed: forkstage deploy --stage {stage}")
    name = state.public_outputs().get("worker_name")
    if not name:
        raise BadInput(f"stage {stage} has no Worker output")
    account = Account(home)
    try:
        script = account.get_script(project.settings.cloudflare_account_id, str(name))
        hyperdrive = {
            b["name"]: account.hyperdrive_local_url(b["id"])
            for b in script.get("bindings") or []
            if b.get("type") == "hyperdrive"
        }
    except NotFound as exc:
        raise Failed(f"the local cloud has no Worker for {stage}: {exc}") from None
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return start_worker(
        name=str(name),
        script=Path(script["path"]),
        bindings={},
        hyperdrive=hyperdrive,
        main_module=script.get("main_module"),
        compatibility_date=script.get("compatibility_date") or project.settings.compatibility_date,
        log_path=log_path,
        pid_path=pid_path,
        port=port,
        ready_path="/health",
        node_modules=project.root / "node_modules",
    )


def running_worker_url(home: Path, stage: str) -> str | None:
    """The URL of the stage's Worker if the local cloud serves it now."""
    from localcloud.workers import WorkerProcess

    pid_path, log_path = _worker_files(home, stage)
    worker = WorkerProcess.attach(name=stage, pid_path=pid_path, log_path=log_path)
    return str(worker.url).rstrip("/") if worker is not None else None


def stop_stage_worker(home: Path, stage: str) -> bool:
    """Stop one stage's Worker (and a workerd its launcher left behind)."""
    from localcloud.workers import stop_pid_file

    return stop_pid_file(_worker_files(home, stage)[0])


def stop_workers(home: Path) -> list[str]:
    """Stop every Worker of this home, leftover workerd processes included."""
    from localcloud.workers import stop_pid_file

    return [p.stem for p in sorted((home / "workers").glob("*.pid")) if stop_pid_file(p)]


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
    from forkstage.state import StateReader
    from localcloud.neon import ControlPlane

    project = Project.load()
    embedded.ensure_running(project.settings.backend, project.home)
    plane = ControlPlane(project.home)
    plane.start_all()
    click.echo(f"state server: {project.settings.backend.endpoint}")
    for endpoint in plane.endpoints():
        click.echo(f"endpoint {endpoint.host} -> 127.0.0.1:{endpoint.port}")
    reader = StateReader(project.settings.backend, project.home)
    for stage in reader.stages():
        state = reader.state(stage)
        if state is not None and state.public_outputs().get("worker_name"):
            worker = serve_stage_worker(project, stage)
            click.echo(f"worker {stage} -> {str(worker.url).rstrip('/')}")


@local.command()
def down() -> None:
    """Stop Workers, endpoints and the state server; data stays for the next `up`.

    Example: forkstage local down
    """
    from localcloud.neon import ControlPlane

    project = Project.load()
    for stage in stop_workers(project.home):
        click.echo(f"worker {stage} stopped")
    ControlPlane(project.home).stop_all()
    click.echo("endpoints stopped")
    if embedded.stop(project.home):
        click.echo("state server stopped")


@local.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """Show what the local cloud runs: state server, endpoints, Workers.

    Example: forkstage local status --json
    """
    from localcloud.neon import ControlPlane
    from localcloud.workers import WorkerProcess

    project = Project.load()
    home = project.home
    endpoints = [
        {"host": e.host, "port": e.port, "branch_id": e.branch_id}
        for e in ControlPlane(home).endpoints()
    ]
    workers = []
    for pid_path in sorted((home / "workers").glob("*.pid")):
        w = WorkerProcess.attach(
            name=pid_path.stem, pid_path=pid_path, log_path=_worker_files(home, pid_path.stem)[1]
        )
        if w is not None:
            workers.append({"stage": pid_path.stem, "url": w.url})
    info = {
        "state_server": project.settings.backend.endpoint,
        "state_server_running": embedded.running_pid(home) is not None,
        "endpoints": endpoints,
        "workers": workers,
    }
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    running = "running" if info["state_server_running"] else "stopped"
    click.echo(f"state server {info['state_server']} ({running})")
    for e in endpoints:
        click.echo(f"endpoint {e['host']} -> 127.0.0.1:{e['port']}")
    for w in workers:
        click.echo(f"worker {w['stage']} -> {w['url']}")


@local.command()
@stage_option
@click.option("--port", type=int, default=0, help="Port on 127.0.0.1 (default: a free one).")
def serve(stage: str, port: int) -> None:
    """Serve a stage's Worker on 127.0.0.1 with Miniflare, bound to the stage's branch.

    Example: forkstage local serve --stage pr-147
    """
    worker = serve_stage_worker(Project.load(), stage, port=port)
    click.echo(worker.url)
