"""PostgreSQL's server binaries on this machine: where they are and which OS user runs them.

PostgreSQL refuses to run as root. When forkstage runs as root (containers, CI) every server
binary (initdb, pg_ctl, pg_basebackup...) runs as the ``postgres`` system user (created by
``make install``), the files it must own are handed over to that user, and the directories
above them must be traversable by it. This module is the one place that knows how.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
BINDIR_ENV = "FORKSTAGE_PG_BINDIR"


class PostgresError(RuntimeError):
    """A local PostgreSQL cluster could not be set up, started or stopped."""


class PostgresNotInstalled(PostgresError):
    """The server binaries (initdb, pg_ctl, postgres) or their OS user are missing."""


def find_bindir(root: Path = PG_ROOT, environ: Mapping[str, str] | None = None) -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl.

    ``$FORKSTAGE_PG_BINDIR`` wins, for machines whose PostgreSQL lives elsewhere.
    """
    env = os.environ if environ is None else environ
    if env.get(BINDIR_ENV):
        forced = Path(env[BINDIR_ENV])
        if not (forced / "initdb").is_file():
            raise PostgresNotInstalled(f"{BINDIR_ENV}={forced} holds no initdb")
        return forced
    found: list[tuple[tuple[int, ...], Path]] = []
    if root.is_dir():
        for child in root.iterdir():
            bindir = child / "bin"
            if not re.fullmatch(r"\d+(\.\d+)*", child.name):
                continue
            if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
                found.append((tuple(int(p) for p in child.name.split(".")), bindir))
    if not found:
        raise PostgresNotInstalled(
            f"PostgreSQL server binaries not found under {root}: install PostgreSQL "
            "(Debian/Ubuntu: apt-get install postgresql)"
        )
    return max(found)[1]


def server_account() -> pwd.struct_passwd | None:
    """The account the server binaries run as, or None to run them as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresNotInstalled(
            f"running as root needs the `{SERVER_USER}` system user to run PostgreSQL: "
            "create it (Debian/Ubuntu: apt-get install postgresql creates it)"
        ) from None


def run_as_server(
    argv: Sequence[str], *, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL binary (as ``postgres`` when we are root) with a clean C/UTC env."""
    account = server_account()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C",
        "LC_ALL": "C",
        "TZ": "UTC",
        "HOME": account.pw_dir if account else os.environ.get("HOME", "/"),
    }
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd="/" if account else None,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        extra_groups=[] if account else None,
    )


def hand_over(path: Path) -> None:
    """Make ``path`` the server user's (when we are root; otherwise it is ours already)."""
    account = server_account()
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


def blocked_parent(path: Path) -> Path | None:
    """The first of ``path`` and its existing parents the server user cannot enter, if any."""
    account = server_account()
    if account is None:
        return None
    for folder in [path, *path.parents]:
        if not folder.exists():
            continue
        st = folder.stat()
        if st.st_uid == account.pw_uid:
            bit = 0o100
        elif st.st_gid == account.pw_gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return folder
    return None
