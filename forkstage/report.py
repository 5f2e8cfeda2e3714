"""Progress and summaries: rich on a terminal, plain lines otherwise, only JSON with --json.

The Reporter is also the public hook for watching a run from outside: its ``phases`` hold each
step's seconds, and observers get every Terraform run's output (a benchmark reads the ``-json``
events of ``apply`` there, e.g. for the time the migrations resource took).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TerraformOutput:
    """One finished Terraform run of a stage: its arguments, exit code and captured output."""

    stage: str
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


TerraformObserver = Callable[[TerraformOutput], None]
# Observers every Reporter calls (see ``observing``), besides its own.
_OBSERVERS: list[TerraformObserver] = []


@contextlib.contextmanager
def observing(observer: TerraformObserver) -> Iterator[None]:
    """Within the block, every Reporter passes each Terraform run's output to ``observer``.

    For code that runs the CLI in-process (``forkstage.cli.main``) and so never builds the
    Reporter itself, e.g. ``bench/preview.py``.
    """
    _OBSERVERS.append(observer)
    try:
        yield
    finally:
        _OBSERVERS.remove(observer)


class Reporter:
    """Times phases and tells the user what is happening (on stderr; stdout is for results)."""

    def __init__(
        self, *, quiet: bool = False, on_terraform_output: TerraformObserver | None = None
    ) -> None:
        self.quiet = quiet
        self.phases: dict[str, float] = {}
        self.on_terraform_output = on_terraform_output
        self.tty = sys.stderr.isatty()
        self._console: Any = None
        if self.tty and not quiet:
            from rich.console import Console

            self._console = Console(stderr=True)

    @contextlib.contextmanager
    def phase(self, name: str, label: str) -> Iterator[None]:
        started = time.perf_counter()
        if self._console is not None:
            with self._console.status(f"{label} ..."):
                yield
        else:
            yield
        took = time.perf_counter() - started
        self.phases[name] = self.phases.get(name, 0.0) + took
        self.say(f"{label}: {took:.2f}s", style="dim")

    def target(self, line: str) -> None:
        """What the run acts on ("local cloud" or "cloud: Neon org ..."), said before anything
        else so a log shows at once whether a pipeline deployed the stand-ins or the cloud."""
        self.say(f"target: {line}", style="bold")

    def terraform_output(self, output: TerraformOutput) -> None:
        """Called by the pipeline after each Terraform run, failed ones included."""
        if self.on_terraform_output is not None:
            self.on_terraform_output(output)
        for observer in list(_OBSERVERS):
            observer(output)

    def say(self, message: str, *, style: str = "") -> None:
        if self.quiet:
            return
        if self._console is not None:
            self._console.print(message, style=style or None, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)
