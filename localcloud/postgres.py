"""Unprivileged PostgreSQL clusters built from Debian's server binaries, bound to 127.0.0.1.

Tests and the local Neon emulation need real PostgreSQL servers they can create and throw away
without touching the machine's own clusters (no ``pg_ctlcluster``, no systemd). A cluster here is
one data directory plus one server process on a loopback port.

Authentication (chosen so that no secret is ever needed on the machine itself):

- the Unix socket lives in a private directory (mode 0700) inside the data directory and uses
  ``trust``: only the cluster's OS user (and root) can reach it;
- TCP is 127.0.0.1 only. With ``password=`` the superuser gets that password and TCP uses
  ``scram-sha-256`` (what Neon does, so URLs carry a password as they would in the cloud); without
  it TCP uses ``trust``, acceptable only for throw-away test clusters.

PostgreSQL refuses to run as root. When forkstage runs as root (containers, CI) the server binaries
run as the ``postgres`` system user and the data directory is chowned to it; its parent directories
must then be traversable by that user (``localcloud.pg_binaries`` does all of that).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from cdk.connection import postgres_url
from localcloud.net import LOOPBACK
from localcloud.pg_binaries import (
    SERVER_USER,
    PostgresError,
    PostgresNotInstalled,
    blocked_parent,
    find_bindir,
    hand_over,
    run_as_server,
)

__all__ = ["Cluster", "PostgresError", "PostgresNotInstalled", "find_bindir"]

# sockaddr_un.sun_path is 108 bytes; PostgreSQL appends "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535")
_STOP_MODES = ("smart", "fast", "immediate")


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class Cluster:
    """One PostgreSQL data directory and its server on ``127.0.0.1:port``.

    Example::

        cluster = Cluster(tmp / "pg", port=free_port(), password="s3cret", fsync=False)
        cluster.init()
        with cluster:  # start() ... stop()
            psycopg.connect(cluster.url("postgres"))
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int,
        socket_dir: Path | None = None,
        superuser: str = "postgres",
        password: str | None = None,
        fsync: bool = True,
        settings: Mapping[str, str] | None = None,
        bindir: Path | None = None,
    ) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is not a TCP port")
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.socket_dir = (
            Path(socket_dir).absolute() if socket_dir is not None else self.data_dir / "run"
        )
        self.superuser = superuser
        self.password = password
        self.fsync = fsync
        self.settings = dict(settings or {})
        self._bindir = bindir

    # -- facts ------------------------------------------------------------------------------
    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def host(self) -> str:
        return LOOPBACK

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def url(self, dbname: str = "postgres", *, user: str | None = None) -> str:
        """A libpq URL over TCP; it carries the password only for the superuser."""
        who = user or self.superuser
        password = self.password if who == self.superuser else None
        return postgres_url(
            host=LOOPBACK, port=self.port, database=dbname, user=who, password=password
        )

    # -- lifecycle --------------------------------------------------------------------------
    def init(self) -> None:
        """Create the data directory with initdb (it must not hold a cluster already)."""
        if self.initialized():
            raise PostgresError(f"{self.data_dir} already holds a PostgreSQL cluster")
        if len(str(self.socket_dir)) > _MAX_SOCKET_DIR:
            raise PostgresError(
                f"socket directory path {self.socket_dir} is longer than {_MAX_SOCKET_DIR} "
                "characters: pass a shorter socket_dir"
            )
        initdb = self.bindir / "initdb"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise PostgresError(f"{self.data_dir} is not empty: initdb needs an empty directory")
        self.data_dir.chmod(0o700)
        hand_over(self.data_dir)
        self._check_reachable(self.data_dir)

        pwfile: Path | None = None
        argv = [
            str(initdb),
            "-D",
            str(self.data_dir),
            "-U",
            self.superuser,
            "--encoding=UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=" + ("trust" if self.password is None else "scram-sha-256"),
            "--no-instructions",
        ]
        if not self.fsync:
            argv.append("--no-sync")
        try:
            if self.password is not None:
                pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
                fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(self.password + "\n")
                hand_over(pwfile)
                argv.append(f"--pwfile={pwfile}")
            self._run(argv, what="initdb")
        finally:
            if pwfile is not None:
                pwfile.unlink(missing_ok=True)
        self._write_hba()

    def start(self, *, timeout: float = 60) -> None:
        """Start the server on 127.0.0.1:port and wait until it accepts connections."""
        if not self.initialized():
            raise PostgresError(f"{self.data_dir} holds no cluster: call init() first")
        if self.is_running():
            return
        # A killed server's lock file names a pid that is gone or a zombie (PID 1 here does not
        # reap orphans); PostgreSQL would take a zombie for a live postmaster and refuse.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        for stale in (f".s.PGSQL.{self.port}.lock", f".s.PGSQL.{self.port}"):
            (self.socket_dir / stale).unlink(missing_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.chmod(0o700)
        hand_over(self.socket_dir)
        self._write_conf()
        # listen_addresses and port on the command line: they beat postgresql.auto.conf, so
        # not even ALTER SYSTEM can make this server listen beyond loopback.
        options = f"-c listen_addresses={LOOPBACK} -p {self.port}"
        argv = [
            str(self.bindir / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            options,
        ]
        self._run(argv, what="pg_ctl start", timeout=timeout + 10)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs (``fast`` rolls back open sessions)."""
        if mode not in _STOP_MODES:
            raise ValueError(f"stop mode must be one of {', '.join(_STOP_MODES)}")
        if not self.is_running():
            return
        argv = [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w"]
        self._run(argv, what="pg_ctl stop", timeout=120)

    def is_running(self) -> bool:
        """The postmaster in postmaster.pid is alive (a zombie is not: where PID 1 does not
        reap orphans, a killed postmaster lingers as one and ``pg_ctl status`` says running)."""
        if not self.initialized():
            return False
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError, IndexError):
            return False
        state = stat.rsplit(")", 1)[-1].split()[0]
        return state not in ("Z", "X")

    def destroy(self) -> None:
        """Stop the server (immediately) and delete the data directory."""
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.socket_dir.exists() and not self.socket_dir.is_relative_to(self.data_dir):
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------
    def _check_reachable(self, path: Path) -> None:
        """As root, fail early (with the fix) when the postgres user cannot reach ``path``."""
        blocked = blocked_parent(path)
        if blocked is not None:
            raise PostgresError(
                f"PostgreSQL runs as user {SERVER_USER} here (we are root) and cannot enter "
                f"{blocked}: put the cluster under a directory it can traverse "
                f"(e.g. chmod o+x {blocked})"
            )

    def _write_hba(self) -> None:
        method = "trust" if self.password is None else "scram-sha-256"
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# written by forkstage: private socket trusted, TCP on loopback only\n"
            "local   all          all                 trust\n"
            "local   replication  all                 trust\n"
            f"host    all          all  127.0.0.1/32   {method}\n"
            f"host    replication  all  127.0.0.1/32   {method}\n"
        )
        hand_over(hba)

    def _write_conf(self) -> None:
        conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'forkstage.conf'"
        text = conf.read_text()
        if include not in text:
            conf.write_text(text.rstrip("\n") + "\n\n# forkstage settings\n" + include + "\n")
        values: dict[str, str] = {
            "unix_socket_directories": _conf_quote(str(self.socket_dir)),
            "unix_socket_permissions": "0700",
            "logging_collector": "off",
        }
        if not self.fsync:
            # No fsync: a machine crash may lose data, a killed server may not. Commits still
            # wait for their WAL write (synchronous_commit stays on), so `kill -9` of the
            # server loses nothing it acknowledged.
            values.update(fsync="off", full_page_writes="off")
        values.update(self.settings)
        values.pop("listen_addresses", None)  # loopback only, always (set on the command line)
        values.pop("port", None)
        lines = [f"{key} = {value}" for key, value in values.items()]
        target = self.data_dir / "forkstage.conf"
        target.write_text("# written by forkstage on every start\n" + "\n".join(lines) + "\n")
        hand_over(target)

    def _run(self, argv: Sequence[str], *, what: str, timeout: float = 120) -> None:
        try:
            done = run_as_server(argv, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(f"{what} did not finish in {timeout:.0f} s") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            if self.log_file.is_file():
                detail += self.log_file.read_text(errors="replace").strip().splitlines()[-5:]
            raise PostgresError(f"{what} failed (exit {done.returncode}): " + " | ".join(detail))
