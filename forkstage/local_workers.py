"""The wrapper's view of the local cloud's Workers: from a stage to the local address that
serves its Worker (``local_url``; the ``worker_url`` output is the workers.dev address).

The local Cloudflare stand-in keeps a Worker running for every script the account holds: it
starts one when ``terraform apply`` (ours, cdktf-cli's or a plain one) uploads the script and
stops it when the script is deleted (``localcloud.live_workers``, files keyed by script name).
So the wrapper starts and stops nothing around a deploy or a destroy: it maps a stage to its
script (the ``worker_name`` output) and reads the URL. ``forkstage local`` brings the Workers
back after a reboot (``serve_all``), serves one on a chosen port, and stops them all.
"""

from __future__ import annotations

from pathlib import Path

from forkstage import embedded
from forkstage.context import Project
from forkstage.errors import BadInput, Failed
from forkstage.state import StateReader
from localcloud import live_workers
from localcloud.cloudflare import Account, CloudflareError
from localcloud.workers import READY_TIMEOUT, WorkerError, WorkerProcess, wait_until_answers

READY_PATH = "/health"


def stage_worker_name(project: Project, stage: str) -> str:
    """The script name of a deployed stage's Worker (its ``worker_name`` output)."""
    project.parse_stage(stage)
    embedded.ensure_running(project.settings.backend, project.home)
    state = StateReader(project.settings.backend, project.home).state(stage)
    if state is None:
        raise BadInput(f"stage {stage} is not deployed: forkstage deploy --stage {stage}")
    name = state.public_outputs().get("worker_name")
    if not name:
        raise BadInput(f"stage {stage} has no Worker output")
    return str(name)


def wait_for_worker(
    home: Path, stage: str, worker_name: str, *, timeout: float = READY_TIMEOUT
) -> str:
    """The URL of the Worker the stand-in runs for ``worker_name``, once it answers HTTP."""
    worker = live_workers.attach(home, worker_name)
    if worker is None:
        log = live_workers.worker_files(home, worker_name)[1]
        raise Failed(
            f"the local cloud runs no Worker for {stage} (script {worker_name}); see {log}, "
            "and `forkstage local up` to start it again"
        )
    try:
        wait_until_answers(worker, READY_PATH, timeout)
    except WorkerError as exc:
        raise Failed(f"the Worker of {stage} is not serving: {exc}") from None
    return str(worker.url).rstrip("/")


def serve_stage_worker(project: Project, stage: str, *, port: int = 0) -> WorkerProcess:
    """The stage's Worker, started if it does not run (on ``port`` when one is asked for)."""
    name = stage_worker_name(project, stage)
    try:
        return live_workers.ensure_worker(
            Account(project.home),
            project.settings.cloudflare_account_id,
            name,
            port=port,
            node_modules=project.root / "node_modules",
        )
    except CloudflareError as exc:
        raise Failed(f"the local cloud has no Worker for {stage}: {exc}") from None
    except WorkerError as exc:  # its messages never quote the connection string
        raise Failed(f"the Worker of {stage} did not start: {exc}") from None


def serve_all(project: Project) -> list[WorkerProcess]:
    """A running Worker for every script of the local account (after a reboot, say)."""
    try:
        return live_workers.ensure_all(project.home, node_modules=project.root / "node_modules")
    except (CloudflareError, WorkerError) as exc:
        raise Failed(f"a Worker of the local cloud did not start: {exc}") from None


def running_local_url(home: Path, stage: str, worker_name: str | None = None) -> str | None:
    """The URL of the stage's Worker if the local cloud serves it now.

    ``worker_name`` is the stage's ``worker_name`` output; without it, it is read from the
    stage's state.
    """
    if worker_name is None:
        project = Project.load()
        if project.home != home:
            return None
        try:
            worker_name = stage_worker_name(project, stage)
        except BadInput:
            return None
    worker = live_workers.attach(home, worker_name)
    return str(worker.url).rstrip("/") if worker is not None else None


def running_workers(home: Path) -> list[dict[str, str]]:
    """Every Worker of this home that runs now: ``{"script", "url"}``, by script."""
    return [{"script": w.name, "url": w.url} for w in live_workers.running(home)]


def stop_workers(home: Path) -> list[str]:
    """Stop every Worker of this home, leftover workerd processes included."""
    return live_workers.stop_all(home)
