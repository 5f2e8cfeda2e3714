"""Per-branch database migrations (see README.md beside this file).

Library use::

    from forkstage.migrator import migrate, status
    outcome = migrate(url, Path("migrations"))

Exit codes of the ``forkstage migrate`` / ``forkstage migrations`` commands: 0 ok, 1 a migration
failed (rolled back) or the database is unreachable, 2 bad input, 4 an applied migration was
edited.
"""

from __future__ import annotations

from forkstage.migrator.errors import (
    EXIT_BAD_INPUT,
    EXIT_EDITED,
    EXIT_FAILED,
    BadInput,
    DatabaseUnavailable,
    EditedMigration,
    MigrationError,
    MigrationFailed,
)
from forkstage.migrator.layout import Layout, Migration, MigrationSet, load_migrations
from forkstage.migrator.runner import Outcome, Plan, Status, inspect, migrate, status

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_EDITED",
    "EXIT_FAILED",
    "BadInput",
    "DatabaseUnavailable",
    "EditedMigration",
    "Layout",
    "Migration",
    "MigrationError",
    "MigrationFailed",
    "MigrationSet",
    "Outcome",
    "Plan",
    "Status",
    "inspect",
    "load_migrations",
    "migrate",
    "status",
]
