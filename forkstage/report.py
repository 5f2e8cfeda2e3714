"""Progress and summaries: rich on a terminal, plain lines otherwise, only JSON with --json."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any


class Reporter:
    """Times phases and tells the user what is happening (on stderr; stdout is for results)."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.phases: dict[str, float] = {}
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

    def say(self, message: str, *, style: str = "") -> None:
        if self.quiet:
            return
        if self._console is not None:
            self._console.print(message, style=style or None, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)
