"""Why a migration run stopped, each with the exit code the CLI turns it into.

The library raises these (no click here) so the stack's local-exec, tests and the CLI share one
meaning per failure; ``forkstage.migrator.cli`` maps ``exit_code`` to the process exit code.
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_EDITED = 4


class MigrationError(Exception):
    """Base class: ``str(exc)`` is a one-line message that never contains a password."""

    exit_code = EXIT_FAILED


class BadInput(MigrationError):
    """Missing folder, unknown layout, unreadable journal, bad URL: nothing was touched."""

    exit_code = EXIT_BAD_INPUT


class EditedMigration(MigrationError):
    """A migration already applied to this database has different content now."""

    exit_code = EXIT_EDITED

    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


class MigrationFailed(MigrationError):
    """PostgreSQL rejected a migration; it was rolled back and later ones did not run."""

    def __init__(self, message: str, file: str, applied: list[str]) -> None:
        super().__init__(message)
        self.file = file
        self.applied = applied


class DatabaseUnavailable(MigrationError):
    """The database could not be reached, or the migration lock was not granted in time."""
