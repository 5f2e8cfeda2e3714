"""forkstage's one error family: every library module raises these, ``cli.py`` maps them once.

Each class carries the exit code documented in ``--help`` and the README:
0 ok · 1 the operation failed · 2 bad usage or input · 3 refused by a guard ·
4 an already-applied migration was edited (``forkstage migrate``).
``str(exc)`` is the one-line message shown to the user; it never contains a secret.
No click here: library code must not know it is called from a command line.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_EDITED = 4


class ForkstageError(Exception):
    """Base class; ``exit_code`` is what the process exits with."""

    exit_code = EXIT_FAILED

    @property
    def message(self) -> str:
        return str(self)


class Failed(ForkstageError):
    """The operation ran and failed (Terraform's, the server's or PostgreSQL's message)."""

    exit_code = EXIT_FAILED


class BadInput(ForkstageError):
    """The user's input is wrong; nothing was changed."""

    exit_code = EXIT_BAD_INPUT


class Refused(ForkstageError):
    """A guard refused the operation before anything ran; nothing was changed."""

    exit_code = EXIT_REFUSED


class EditedMigration(ForkstageError):
    """A migration already applied to this database has different content now."""

    exit_code = EXIT_EDITED

    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


class MigrationFailed(Failed):
    """PostgreSQL rejected a migration; it was rolled back and later ones did not run."""

    def __init__(self, message: str, file: str, applied: list[str]) -> None:
        super().__init__(message)
        self.file = file
        self.applied = applied


class DatabaseUnavailable(Failed):
    """The database could not be reached, or the migration lock was not granted in time."""
