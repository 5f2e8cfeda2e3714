"""localcloud.postgres: throw-away clusters that only ever listen on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from localcloud.net import free_port
from localcloud.postgres import Cluster, PostgresError, PostgresNotInstalled, find_bindir


@pytest.fixture
def base() -> Iterator[Path]:
    # as root the server runs as `postgres`, which cannot enter pytest's 0700 tmp dirs
    folder = Path(tempfile.mkdtemp(prefix="forkstage-pgt-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses in LISTEN state on ``port``, read from the kernel's socket tables."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as handle:
            next(handle)
            for line in handle:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


def test_cluster_lifecycle_password_and_loopback_only(base: Path) -> None:
    cluster = Cluster(base / "data", port=free_port(), password="s3cr:t/", fsync=False)
    assert not cluster.is_running()
    cluster.init()
    with pytest.raises(PostgresError, match="already holds a PostgreSQL cluster"):
        cluster.init()
    try:
        cluster.start()
        assert cluster.is_running()
        assert (
            cluster.url("app") == f"postgresql://postgres:s3cr%3At%2F@127.0.0.1:{cluster.port}/app"
        )
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            # even a superuser cannot widen it: the command line beats postgresql.auto.conf
            conn.execute("ALTER SYSTEM SET listen_addresses = '*'")
        cluster.stop()
        assert not cluster.is_running()
        cluster.start()
        with psycopg.connect(cluster.url("postgres")) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert _listening_addresses(cluster.port) == {"0100007F"}  # 127.0.0.1, no IPv6

        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(cluster.url("postgres").replace("s3cr%3At%2F", "wrong"))
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(cluster.url("postgres", user="nobody"))
    finally:
        cluster.stop()
    assert not cluster.is_running()
    cluster.stop()  # stopping a stopped cluster is a no-op


def test_cluster_without_password_trusts_loopback(base: Path) -> None:
    cluster = Cluster(base / "data", port=free_port(), fsync=False)
    cluster.init()
    with cluster:
        assert cluster.url() == f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        with psycopg.connect(cluster.url()) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    assert not cluster.is_running()
    cluster.destroy()
    assert not (base / "data").exists()


def test_find_bindir_picks_newest_and_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotInstalled) as missing:
        find_bindir(tmp_path, environ={})
    assert str(missing.value) == (
        f"PostgreSQL server binaries not found under {tmp_path}: install PostgreSQL "
        "(Debian/Ubuntu: apt-get install postgresql)"
    )
    for version in ("9.6", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        for tool in ("initdb", "pg_ctl"):
            (tmp_path / version / "bin" / tool).write_text("")
    assert find_bindir(tmp_path, environ={}) == tmp_path / "15" / "bin"
    forced = tmp_path / "13" / "bin"
    assert find_bindir(tmp_path, environ={"FORKSTAGE_PG_BINDIR": str(forced)}) == forced
    assert find_bindir().name == "bin"  # this machine has one (make install)


def test_socket_path_too_long_is_refused_before_initdb(base: Path) -> None:
    cluster = Cluster(base / "data", port=free_port(), socket_dir=base / ("s" * 120))
    with pytest.raises(PostgresError, match="pass a shorter socket_dir"):
        cluster.init()
    assert not (base / "data").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to `postgres`")
def test_as_root_an_unreachable_parent_is_explained(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    cluster = Cluster(private / "data", port=free_port())
    with pytest.raises(PostgresError, match=r"cannot enter .*: put the cluster under a directory"):
        cluster.init()
