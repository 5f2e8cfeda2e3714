"""Why a migration run stopped: the wrapper's error family, under the names the migrator uses.

The migrator raises these (no click) so the stack's local-exec, tests and the CLI share one
meaning per failure; ``forkstage.cli`` maps ``exit_code`` to the process exit code.
"""

from __future__ import annotations

from forkstage.errors import (
    EXIT_BAD_INPUT,
    EXIT_EDITED,
    EXIT_FAILED,
    BadInput,
    DatabaseUnavailable,
    EditedMigration,
    MigrationFailed,
)
from forkstage.errors import ForkstageError as MigrationError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_EDITED",
    "EXIT_FAILED",
    "BadInput",
    "DatabaseUnavailable",
    "EditedMigration",
    "MigrationError",
    "MigrationFailed",
]
