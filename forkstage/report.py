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

from forkstage.tfevents import Progress


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
        self,
        *,
        quiet: bool = False,
        progress: bool | None = None,
        on_terraform_output: TerraformObserver | None = None,
    ) -> None:
        """``quiet``: no phase lines (``--json``); ``progress``: a line per resource as
        Terraform works on it (the commands: off with ``--quiet``, on with ``--json`` too, on
        stderr; by default as the phase lines)."""
        self.quiet = quiet
        self.progress = not quiet if progress is None else progress
        self.phases: dict[str, float] = {}
        self.on_terraform_output = on_terraform_output
        self.tty = sys.stderr.isatty()
        self._console: Any = None
        self._status: Any = None
        self._label = ""
        self._running: dict[str, Progress] = {}
        if self.tty and not quiet:
            from rich.console import Console

            self._console = Console(stderr=True)

    @contextlib.contextmanager
    def phase(self, name: str, label: str) -> Iterator[None]:
        started = time.perf_counter()
        if self._console is not None:
            with self._console.status(f"{label} ...") as status:
                self._status, self._label = status, label
                try:
                    yield
                finally:
                    self._status, self._running = None, {}
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

    def resource(self, step: Progress) -> None:
        """One resource's step (creating, created after N s, destroying ...): on a terminal
        finished steps as lines under a live status line, else every step as a plain line."""
        if not self.progress:
            return
        if self._console is None:
            print(f"  {step.line}", file=sys.stderr, flush=True)
            return
        if step.kind in ("start", "progress"):
            self._running[step.address] = step
        else:
            self._running.pop(step.address, None)
            style = "red" if step.kind == "errored" else "dim"
            self._console.print(f"  {step.line}", style=style, highlight=False)
        if self._status is not None:
            busy = [s.line for s in self._running.values()]
            more = f" (+{len(busy) - 1} more)" if len(busy) > 1 else ""
            self._status.update(f"{self._label}: {busy[0]}{more}" if busy else self._label)

    def passthrough(self, line: str) -> None:
        """A line of another tool's own output (cdktf-cli), shown as it comes."""
        if self.progress and line.strip():
            print(line.rstrip(), file=sys.stderr, flush=True)

    def say(self, message: str, *, style: str = "") -> None:
        if self.quiet:
            return
        if self._console is not None:
            self._console.print(message, style=style or None, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)
