"""A real PostgreSQL cluster for the whole test session, and a fresh database per test.

Import the fixtures into a test module (``from pgfixture import pg_cluster, pg_db``). The cluster
runs with fsync off on 127.0.0.1, with a scram password full of URL-special characters so every
test also proves that passwords survive URL encoding and never leak into output.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from localcloud.net import free_port
from localcloud.postgres import Cluster

PASSWORD = "pw:@/?#%&= x"
_counter = itertools.count(1)


@dataclass
class Database:
    cluster: Cluster
    name: str
    family: list[str] = field(default_factory=list)  # databases made from this one (dropped too)

    @property
    def url(self) -> str:
        return self.cluster.url(self.name)

    def query(self, sql: Any, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def clone(self, suffix: str) -> Database:
        """A copy of this database, as a Neon branch would be (needs no open sessions)."""
        return self._create(suffix, f'TEMPLATE "{self.name}"')

    def sibling(self, suffix: str) -> Database:
        """Another empty database, dropped with this one."""
        return self._create(suffix, "")

    def _create(self, suffix: str, clause: str) -> Database:
        name = f"{self.name}_{suffix}"
        _admin(self.cluster, f'CREATE DATABASE "{name}" {clause}')
        self.family.append(name)
        return Database(self.cluster, name)


def _admin(cluster: Cluster, statement: str) -> None:
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(statement.encode())


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    # Not pytest's tmp dir: as root the server runs as `postgres`, which must traverse the path.
    base = Path(tempfile.mkdtemp(prefix="forkstage-pg-"))
    base.chmod(0o711)
    cluster = Cluster(base / "data", port=free_port(), password=PASSWORD, fsync=False)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_db(pg_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Database]:
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:30]
    name = f"t{os.getpid()}_{next(_counter)}_{stem}"
    _admin(pg_cluster, f'CREATE DATABASE "{name}"')
    db = Database(pg_cluster, name)
    yield db
    for doomed in [*db.family, name]:
        _admin(pg_cluster, f'DROP DATABASE IF EXISTS "{doomed}" WITH (FORCE)')
