"""The local account's Workers are live, as on Cloudflare: a script's Worker runs while it exists.

The Cloudflare stand-in (re)starts a script's Worker when the script is uploaded, when a
Hyperdrive config it binds changes, and when Terraform reads a script whose Worker does not run
(after a reboot: as Neon endpoints wake on read); deleting the script stops it. A stand-in lives
for one Terraform run, so every Worker runs in one detached Miniflare host per home
(``localcloud.workers_host``), which any later process finds and asks which Workers it serves,
on which URL, started from what (a fingerprint); its log is ``$FORKSTAGE_HOME/logs/workers.log``.
Per-script pid files (``workers/<script>.pid``) are what earlier versions ran: they are still
found and stopped.

Miniflare comes from the project's ``node_modules``: ``$FORKSTAGE_NODE_MODULES``, else the
``node_modules/.bin`` folder on PATH, which forkstage's Terraform environment already has.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from localcloud.cloudflare import Account, NotFound, safe_name
from localcloud.neon_state import NeonError
from localcloud.workers import (
    DEFAULT_COMPATIBILITY_DATE,
    WorkerError,
    WorkerProcess,
    check_binding_name,
    check_connection_string,
    stop_pid_file,
)
from localcloud.workers_host import WorkersHost

NODE_MODULES_ENV = "FORKSTAGE_NODE_MODULES"


def worker_files(home: Path, script_name: str) -> tuple[Path, Path]:
    """The pid file an earlier version kept for a script's Worker, and the Workers' log."""
    key = safe_name(script_name)
    return Path(home) / "workers" / f"{key}.pid", WorkersHost(home).log_path


def _config_file(pid_path: Path) -> Path:
    return pid_path.with_name(pid_path.name + ".config")


def find_node_modules(environ: Mapping[str, str] | None = None) -> Path:
    """The ``node_modules`` folder holding Miniflare: ``$FORKSTAGE_NODE_MODULES``, else PATH's."""
    env = os.environ if environ is None else environ
    if env.get(NODE_MODULES_ENV):
        return Path(env[NODE_MODULES_ENV])
    for entry in env.get("PATH", "").split(os.pathsep):
        folder = Path(entry)
        modules = folder.parent
        if folder.name == ".bin" and (modules / "miniflare" / "package.json").is_file():
            return modules
    raise WorkerError(
        "the local cloud cannot run Workers: Miniflare was not found; put the project's "
        f"node_modules/.bin on PATH or set {NODE_MODULES_ENV} (`npm install` in the project)"
    )


def attach(home: Path, script_name: str) -> WorkerProcess | None:
    """The script's Worker if it runs now."""
    hosted = WorkersHost(home).workers().get(script_name)
    if hosted is not None:
        return hosted
    pid_path, _ = worker_files(home, script_name)  # one an earlier version started
    legacy = Path(home) / "logs" / f"worker-{safe_name(script_name)}.log"
    return WorkerProcess.attach(name=script_name, pid_path=pid_path, log_path=legacy)


def _fingerprint(account: Account, record: Mapping[str, Any], urls: Mapping[str, str]) -> str:
    """What a running Worker must match: the code, its settings, and where each Hyperdrive
    binding leads now (config version and local port; never the password)."""
    bindings = []
    for binding in record.get("bindings") or []:
        if binding.get("type") == "hyperdrive":
            config = account.get_hyperdrive(record["account_id"], binding.get("id") or "")
            where = urlsplit(urls[binding["name"]])
            bindings.append(
                [binding["name"], config["id"], config["modified_on"], where.hostname, where.port]
            )
    keys = ("etag", "modified_on", "main_module", "compatibility_date", "compatibility_flags")
    doc = {"settings": {k: record.get(k) for k in keys}, "hyperdrive": sorted(bindings)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _port(worker: WorkerProcess) -> int | None:
    return urlsplit(worker.url).port


def ensure_worker(
    account: Account,
    account_id: str,
    script_name: str,
    *,
    port: int = 0,
    node_modules: Path | None = None,
) -> WorkerProcess:
    """The script's Worker, started (or restarted) unless one already runs what the account
    holds now (same code, settings and Hyperdrive origins; on ``port`` when one is asked for).

    Raises ``NotFound`` when the account has no such script and ``WorkerError`` when it does not
    start (its messages never quote a connection string).
    """
    record = account.get_script(account_id, script_name)
    urls = {}
    for binding in record.get("bindings") or []:
        if binding.get("type") == "hyperdrive":
            try:
                urls[binding["name"]] = account.hyperdrive_local_url(binding.get("id") or "")
            except NeonError as exc:  # an origin whose endpoint is gone
                raise WorkerError(f"Hyperdrive binding {binding['name']}: {exc}") from None
    for binding, url in urls.items():  # what Miniflare would refuse, said without the URL
        check_binding_name(binding)
        check_connection_string(binding, url)
    fingerprint = _fingerprint(account, record, urls)
    host = WorkersHost(account.home)
    with host.locked():
        running = host.workers().get(script_name)
        moves = running is not None and port not in (0, _port(running))
        if running is not None and running.fingerprint == fingerprint and not moves:
            return running
        if moves:
            host.delete(script_name)  # to serve it on the port asked for
        _stop_legacy(account.home, script_name)
        host.start(node_modules or find_node_modules())
        source = Path(record["path"])
        try:
            script = source.read_text()
        except OSError as exc:
            raise WorkerError(f"cannot read Worker script {source}: {exc.strerror}") from None
        return host.put(
            {
                "name": script_name,
                "script": script,
                "main_module": record.get("main_module") or source.name,
                "compatibility_date": record.get("compatibility_date")
                or DEFAULT_COMPATIBILITY_DATE,
                "compatibility_flags": list(record.get("compatibility_flags") or ()),
                "bindings": {},
                "hyperdrives": urls,
                "port": port or (_port(running) if running else 0) or 0,
                "fingerprint": fingerprint,
            }
        )


def _stop_legacy(home: Path, script_name: str) -> bool:
    pid_path, _ = worker_files(home, script_name)
    _config_file(pid_path).unlink(missing_ok=True)
    return stop_pid_file(pid_path)


def stop_worker(home: Path, script_name: str) -> bool:
    """Stop the script's Worker (the others keep serving); False if none ran."""
    host = WorkersHost(home)
    with host.locked():
        removed = host.delete(script_name)
    return _stop_legacy(home, script_name) or removed


def restart_bound(account: Account, account_id: str, hyperdrive_id: str) -> None:
    """Bring running Workers bound to a changed Hyperdrive config onto its new origin
    (on Cloudflare a config change reaches bound Workers without a redeploy)."""
    for record in account.scripts():
        bound = any(
            b.get("type") == "hyperdrive" and b.get("id") == hyperdrive_id
            for b in record.get("bindings") or []
        )
        name = record["script_name"]
        if record["account_id"] == account_id and bound and attach(account.home, name):
            ensure_worker(account, account_id, name)


def running(home: Path) -> list[WorkerProcess]:
    """Every Worker of this home that runs now, by name."""
    found: list[WorkerProcess] = [w for _, w in sorted(WorkersHost(home).workers().items())]
    for pid_path in sorted((Path(home) / "workers").glob("*.pid")):
        if pid_path.name == "host.pid":
            continue
        log_path = Path(home) / "logs" / f"worker-{pid_path.stem}.log"
        worker = WorkerProcess.attach(name=pid_path.stem, pid_path=pid_path, log_path=log_path)
        if worker is not None:
            found.append(worker)
    return found


def stop_all(home: Path) -> list[str]:
    """Stop every Worker of this home, leftover workerd processes included; their names."""
    host = WorkersHost(home)
    with host.locked():
        stopped = sorted(host.workers())
        host.stop()
    for pid_path in sorted((Path(home) / "workers").glob("*.pid")):
        if pid_path.name == "host.pid":
            continue
        _config_file(pid_path).unlink(missing_ok=True)
        if stop_pid_file(pid_path):
            stopped.append(pid_path.stem)
    return stopped


def ensure_all(home: Path, *, node_modules: Path | None = None) -> list[WorkerProcess]:
    """A Worker for every script the local account holds (``forkstage local up``)."""
    account = Account(home)
    return [
        ensure_worker(account, r["account_id"], r["script_name"], node_modules=node_modules)
        for r in account.scripts()
    ]


__all__ = [
    "NODE_MODULES_ENV",
    "NotFound",
    "WorkerError",
    "attach",
    "ensure_all",
    "ensure_worker",
    "find_node_modules",
    "restart_bound",
    "running",
    "stop_all",
    "stop_worker",
    "worker_files",
]
