"""Per-branch database migrations (see README.md beside this file).

Library use::

    from forkstage.migrator import migrate, status
    outcome = migrate(url, Path("migrations"), connect_options=resolver.connect_options)

The caller says how to reach a database (``reach.Resolver``); the migrator looks nothing up.
Failures are ``forkstage.errors`` classes, whose ``exit_code`` the ``forkstage migrate`` /
``forkstage migrations`` commands exit with: 0 ok, 1 a migration failed (rolled back) or the
database is unreachable, 2 bad input, 4 an applied migration was edited.
"""

from __future__ import annotations

from forkstage.errors import BadInput, DatabaseUnavailable, EditedMigration, MigrationFailed
from forkstage.migrator.layout import Layout, Migration, MigrationSet, load_migrations
from forkstage.migrator.reach import ConnectOptions, Resolver, choose_url
from forkstage.migrator.runner import Outcome, Plan, Status, inspect, migrate, status

__all__ = [
    "BadInput",
    "ConnectOptions",
    "DatabaseUnavailable",
    "EditedMigration",
    "Layout",
    "Migration",
    "MigrationFailed",
    "MigrationSet",
    "Outcome",
    "Plan",
    "Resolver",
    "Status",
    "choose_url",
    "inspect",
    "load_migrations",
    "migrate",
    "status",
]
