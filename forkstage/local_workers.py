"""The local cloud serves each deployed stage's Worker with Miniflare while the stage is up.

A deploy on the local target ends by (re)starting the stage's Worker, a destroy stops it, and
``forkstage local`` brings them back after a reboot. The Worker's pid and log live under the
home (``workers/<stage>.pid``, ``logs/worker-<stage>.log``), so any later command finds it.
"""

from __future__ import annotations

from pathlib import Path

from forkstage import embedded
from forkstage.context import Project
from forkstage.errors import BadInput, Failed
from forkstage.state import StateReader
from localcloud.cloudflare import Account, NotFound
from localcloud.workers import WorkerError, WorkerProcess, start_worker, stop_pid_file


def worker_files(home: Path, stage: str) -> tuple[Path, Path]:
    """The pid file and log file of a stage's Worker."""
    return home / "workers" / f"{stage}.pid", home / "logs" / f"worker-{stage}.log"


def _attach(home: Path, stage: str) -> WorkerProcess | None:
    pid_path, log_path = worker_files(home, stage)
    return WorkerProcess.attach(name=stage, pid_path=pid_path, log_path=log_path)


def serve_stage_worker(project: Project, stage: str, *, port: int = 0) -> WorkerProcess:
    """Start (or find) the stage's Worker with its Hyperdrive binding on the stage's branch."""
    project.parse_stage(stage)
    home = project.home
    running = _attach(home, stage)
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
    pid_path, log_path = worker_files(home, stage)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return start_worker(
            name=str(name),
            script=Path(script["path"]),
            bindings={},
            hyperdrive=hyperdrive,
            main_module=script.get("main_module"),
            compatibility_date=script.get("compatibility_date")
            or project.settings.compatibility_date,
            log_path=log_path,
            pid_path=pid_path,
            port=port,
            ready_path="/health",
            node_modules=project.root / "node_modules",
        )
    except WorkerError as exc:  # its messages never quote the connection string
        raise Failed(f"the Worker of {stage} did not start: {exc}") from None


def running_worker_url(home: Path, stage: str) -> str | None:
    """The URL of the stage's Worker if the local cloud serves it now."""
    worker = _attach(home, stage)
    return str(worker.url).rstrip("/") if worker is not None else None


def running_workers(home: Path) -> list[dict[str, str]]:
    """Every Worker of this home that runs now: ``{"stage", "url"}``, by stage."""
    workers = []
    for pid_path in sorted((home / "workers").glob("*.pid")):
        worker = _attach(home, pid_path.stem)
        if worker is not None:
            workers.append({"stage": pid_path.stem, "url": worker.url})
    return workers


def deployed_worker_stages(project: Project) -> list[str]:
    """Stages in the backend whose outputs name a Worker (what ``local up`` serves again)."""
    embedded.ensure_running(project.settings.backend, project.home)
    reader = StateReader(project.settings.backend, project.home)
    found = []
    for stage in reader.stages():
        state = reader.state(stage)
        if state is not None and state.public_outputs().get("worker_name"):
            found.append(stage)
    return found


def stop_stage_worker(home: Path, stage: str) -> bool:
    """Stop one stage's Worker (and a workerd its launcher left behind)."""
    return stop_pid_file(worker_files(home, stage)[0])


def stop_workers(home: Path) -> list[str]:
    """Stop every Worker of this home, leftover workerd processes included."""
    return [p.stem for p in sorted((home / "workers").glob("*.pid")) if stop_pid_file(p)]
