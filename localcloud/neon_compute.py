"""The PostgreSQL side of the local Neon: one data directory per branch, one server per endpoint.

A branch's data lives in ``<branches root>/<branch id>/pgdata``; an endpoint is that directory's
server, reached on the endpoint's loopback port through the endpoint proxy
(``localcloud.endpoint_proxy``), which suspends an idle server and resumes it on the next
connection; the server itself listens on a private port of its own (read back from
``postmaster.pid``). Branching a running parent uses ``pg_basebackup`` (no downtime for the
parent); a stopped parent is copied file by file. The recorded state (``neon_state``) says which
ports and passwords; this module only starts, stops, creates and copies servers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path

from localcloud.endpoint_proxy import ProxyClient
from localcloud.neon_sql import SUPERUSER, create_database, create_role
from localcloud.neon_state import Branch, Endpoint, NeonError, NeonState, Project
from localcloud.net import free_port, port_is_free
from localcloud.pg_binaries import PostgresNotInstalled, blocked_parent, hand_over, run_as_server
from localcloud.postgres import Cluster

# Sized for preview branches (a few MiB each, a dozen of them on a CI runner): small shared
# buffers, no parallel query workers, no logical replication launcher; enough WAL senders for
# pg_basebackup (a fork of a running branch) and autovacuum kept on.
_SETTINGS = {
    "shared_buffers": "16MB",
    "max_connections": "50",
    "max_worker_processes": "2",
    "max_parallel_workers": "0",
    "max_parallel_workers_per_gather": "0",
    "max_logical_replication_workers": "0",
    "max_wal_senders": "3",
    "autovacuum_max_workers": "1",
    "wal_buffers": "512kB",
}
_LEFTOVERS = ("server.log", "postmaster.pid", "postmaster.opts")  # of the parent's server


def _server_can_enter(path: Path) -> bool:
    """Whether PostgreSQL's server user (root runs it as ``postgres``) can reach ``path``."""
    try:
        return blocked_parent(path) is None
    except PostgresNotInstalled:
        return True  # no `postgres` user: creating a cluster says so, with the fix


def branches_root(root: Path) -> Path:
    """Where branch data lives: under the home, unless PostgreSQL's user cannot enter it.

    A project under /root (mode 0700) would otherwise have no local cloud when run as root; its
    branch data then goes to /var/tmp (kept across reboots), in a folder named after the home.
    """
    if _server_can_enter(root):
        return root / "branches"
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path("/var/tmp") / f"forkstage-neon-{digest}" / "branches"


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total


class Computes:
    """The servers of every branch of one control plane (``root`` is its state folder)."""

    def __init__(self, root: Path, *, fsync: bool = False, proxy: bool = True) -> None:
        self.root = branches_root(root)
        self.fsync = fsync
        # the proxy itself starts and stops servers with proxy=False
        self.proxy = ProxyClient(root) if proxy else None

    # -- where -----------------------------------------------------------------------------------
    def branch_dir(self, branch_id: str) -> Path:
        return self.root / branch_id

    def data_dir(self, branch_id: str) -> Path:
        return self.branch_dir(branch_id) / "pgdata"

    def socket_dir(self, branch_id: str) -> Path:
        # sun_path is 108 bytes: a short, stable directory per data directory.
        digest = hashlib.sha256(str(self.data_dir(branch_id)).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"forkstage-neon-{digest}"

    def cluster(self, project: Project, branch_id: str, port: int = 5432) -> Cluster:
        return Cluster(
            self.data_dir(branch_id),
            port=port,
            socket_dir=self.socket_dir(branch_id),
            superuser=SUPERUSER,
            password=project.admin_password,
            fsync=self.fsync,
            settings=_SETTINGS,
        )

    def endpoint_cluster(self, state: NeonState, endpoint: Endpoint) -> Cluster:
        """The endpoint's server (on its private port while it runs)."""
        port = self.running_port(endpoint.branch_id) or 5432
        return self.cluster(state.projects[endpoint.project_id], endpoint.branch_id, port)

    def running_port(self, branch_id: str) -> int | None:
        """The private port the branch's server listens on, while it runs."""
        cluster = Cluster(self.data_dir(branch_id), port=5432)
        if not cluster.is_running():
            return None
        try:
            return int((cluster.data_dir / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, ValueError, IndexError):
            return None

    def free_port(self, state: NeonState) -> int:
        taken = {e.port for e in state.endpoints.values()}
        for _ in range(50):
            port = free_port()
            if port not in taken:
                return port
        raise NeonError("no free TCP port on 127.0.0.1 for a new endpoint")

    # -- servers ---------------------------------------------------------------------------------
    def start(self, state: NeonState, endpoint: Endpoint, *, resume: bool = True) -> None:
        """The endpoint's address served (by the proxy) and, with ``resume``, its server
        running now rather than at the next connection."""
        served = self.proxy.serves() if self.proxy else {}
        if served.get(endpoint.id) != endpoint.port and not port_is_free(endpoint.port):
            # Taken while the endpoint was stopped: move, as a restarted Neon compute may.
            endpoint.port = self.free_port(state)
        if resume or self.proxy is None:
            self.start_server(state, endpoint)
        if self.proxy is not None:
            self.proxy.serve(endpoint.id, endpoint.port, endpoint.branch_id)

    def start_server(self, state: NeonState, endpoint: Endpoint) -> None:
        """Start the endpoint's server on a private port unless it runs (the proxy resumes)."""
        if self.running_port(endpoint.branch_id) is not None:
            return
        project = state.projects[endpoint.project_id]
        self.cluster(project, endpoint.branch_id, self.free_port(state)).start()

    def stop_server(self, state: NeonState, branch_id: str) -> None:
        """Stop the branch's server (suspend: its address stays served)."""
        branch = state.branches.get(branch_id)
        if branch is None or branch.project_id not in state.projects:
            return
        port = self.running_port(branch_id) or 5432
        cluster = self.cluster(state.projects[branch.project_id], branch_id, port)
        if cluster.initialized():
            cluster.stop("fast")

    def stop_branch(self, state: NeonState, branch_id: str) -> None:
        self.stop_server(state, branch_id)
        shutil.rmtree(self.socket_dir(branch_id), ignore_errors=True)

    def release(self, endpoint_id: str) -> None:
        """The endpoint's address no longer served (it is deleted)."""
        if self.proxy is not None:
            self.proxy.drop(endpoint_id)

    def stop_all(self) -> None:
        """Stop every server under the root, recorded or not (a killed process may have
        started one it never recorded)."""
        for data_dir in sorted(self.root.glob("*/pgdata")):
            branch_id = data_dir.parent.name
            cluster = Cluster(data_dir, port=5432, socket_dir=self.socket_dir(branch_id))
            cluster.stop("fast")
            shutil.rmtree(cluster.socket_dir, ignore_errors=True)
        if self.proxy is not None:
            self.proxy.stop()

    def remove_branch_data(self, branch_id: str) -> None:
        shutil.rmtree(self.branch_dir(branch_id), ignore_errors=True)
        shutil.rmtree(self.socket_dir(branch_id), ignore_errors=True)

    # -- making branches -------------------------------------------------------------------------
    def init_primary(
        self, state: NeonState, project: Project, branch_id: str, *, role: str, password: str
    ) -> int:
        """A new running server (on a private port) for a project's first branch, with its owner
        role and database; returns its PostgreSQL major version."""
        cluster = self.cluster(project, branch_id, self.free_port(state))
        self.branch_dir(branch_id).mkdir(parents=True, exist_ok=True)
        self.branch_dir(branch_id).chmod(0o711)
        try:
            cluster.init()
            cluster.start()
            create_role(cluster, role, password)
            create_database(cluster, project.database_name, role)
            return int((cluster.data_dir / "PG_VERSION").read_text().split(".")[0])
        except Exception:
            cluster.destroy()
            self.remove_branch_data(branch_id)
            raise

    def fork(self, state: NeonState, parent: Branch, branch_id: str) -> Path:
        """The parent's data as of now in the new branch's data directory (returned)."""
        target = self.data_dir(branch_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.parent.chmod(0o711)
        running = [
            e
            for e in state.endpoints.values()
            if e.branch_id == parent.id and self.endpoint_cluster(state, e).is_running()
        ]
        try:
            if running:
                self._base_backup(self.endpoint_cluster(state, running[0]), target)
            else:
                # A stopped server's directory is consistent: a file copy is a branch.
                subprocess.run(
                    ["cp", "-a", str(self.data_dir(parent.id)), str(target)],
                    check=True,
                    capture_output=True,
                )
            for leftover in _LEFTOVERS:
                (target / leftover).unlink(missing_ok=True)
        except Exception:
            self.remove_branch_data(branch_id)
            raise
        return target

    def _base_backup(self, source: Cluster, target: Path) -> None:
        target.mkdir(mode=0o700)
        hand_over(target)
        argv = [
            str(source.bindir / "pg_basebackup"),
            "-D",
            str(target),
            "-h",
            str(source.socket_dir),
            "-p",
            str(source.port),
            "-U",
            SUPERUSER,
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        ]
        done = run_as_server(argv, timeout=600)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise NeonError(
                f"pg_basebackup of the parent branch failed (exit {done.returncode}): {tail}"
            )
