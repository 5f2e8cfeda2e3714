"""The SQL the local Neon control plane runs on a branch's server: roles and databases.

It connects as Neon's own superuser over the cluster's private Unix socket (trusted there, so no
secret is needed). A role's password never reaches the server in clear: the SCRAM verifier is
computed client-side, so it appears in no server log or statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from localcloud.postgres import Cluster

SUPERUSER = "cloud_admin"  # Neon's own superuser name; never handed out

Statement = Any  # a psycopg SQL composable, or a function of the connection that returns one


def admin_sql(cluster: Cluster, statements: Sequence[Statement], dbname: str = "postgres") -> None:
    """Run ``statements`` in autocommit as the superuser (a callable gets the connection)."""
    import psycopg  # 0.3 s to import: only paid by operations that need SQL

    with psycopg.connect(
        host=str(cluster.socket_dir),
        port=cluster.port,
        user=SUPERUSER,
        dbname=dbname,
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        for statement in statements:
            if callable(statement):
                statement = statement(conn)
            conn.execute(statement)


def create_role(cluster: Cluster, role: str, password: str) -> None:
    """A login role that may create databases and roles, as Neon's owner roles can."""
    from psycopg import sql

    def create(conn: Any) -> Any:
        verifier = conn.pgconn.encrypt_password(
            password.encode(), role.encode(), b"scram-sha-256"
        ).decode()
        return sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(verifier)
        )

    admin_sql(cluster, [create])


def create_database(cluster: Cluster, database: str, owner: str) -> None:
    from psycopg import sql

    admin_sql(
        cluster,
        [
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(owner)
            )
        ],
    )
