"""``PostgresOrigin``: a database as a client such as Hyperdrive sees it, and when it is ready.

Neutral ground between the construct that provides a database (a Neon branch) and the ones that
connect to it (a Hyperdrive config), so neither module imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import ITerraformDependable


@dataclass(frozen=True)
class PostgresOrigin:
    """Where to connect, as the owner role, and what must have run first (e.g. migrations)."""

    host: str
    database: str
    user: str
    password: str
    port: int = 5432
    depends_on: tuple[ITerraformDependable, ...] = ()
