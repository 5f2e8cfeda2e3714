"""Exit codes shared by every forkstage command (documented in --help and the README).

0 ok · 1 the operation failed · 2 bad usage or input · 3 refused by a guard ·
4 an already-applied migration was edited (``forkstage migrate``, see forkstage/migrator/errors.py).
"""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


class Failed(click.ClickException):
    """The operation ran and failed (Terraform's or the server's message is shown)."""

    exit_code = EXIT_FAILED


class BadInput(click.ClickException):
    """The user's input is wrong; nothing was changed."""

    exit_code = EXIT_BAD_INPUT


class Refused(click.ClickException):
    """A guard refused the operation before anything ran; nothing was changed."""

    exit_code = EXIT_REFUSED
