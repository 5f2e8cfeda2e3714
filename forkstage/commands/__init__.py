"""The CLI's commands, one module per group of commands; options they share live here.

Command modules parse flags, call the library and print; they never import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def stage_option(func: F) -> F:
    """``--stage S`` (required), validated by the command so the message is ours."""
    return click.option(
        "--stage",
        "-s",
        required=True,
        metavar="STAGE",
        help="Stage name: staging, prod, pr-<number>, dev_<name>, ...",
    )(func)
