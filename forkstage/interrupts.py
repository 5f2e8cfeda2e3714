"""Ctrl-C and CI cancels: Terraform stops gracefully, records what it made, releases its lock.

Terraform and cdktf-cli run in a process group of their own, so a terminal's Ctrl-C (sent to
forkstage's group) never reaches them directly: a second SIGINT makes Terraform exit at once
with the state lock held. Inside ``handling``, the first SIGINT or SIGTERM is forwarded to the
child's group as exactly one SIGINT, and the child gets ``stop_timeout`` seconds to stop; a
second signal (or the timeout) kills the group at once. The caller then releases the lock if
it is still held and raises ``Interrupted``: exit 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from forkstage.errors import Failed, ForkstageError

SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEFAULT_STOP_TIMEOUT = 60.0


class Interrupted(ForkstageError):
    """The run was interrupted (exit 128 + the signal: 130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int, *, resume: str = "") -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
        self.resume = resume

    @property
    def message(self) -> str:
        text = str(self)
        return f"{text}; resume with: {self.resume}" if self.resume else text


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class _Signals:
    """What the handler knows: the first signal, how many came, the running child."""

    def __init__(self) -> None:
        self.active = False
        self.signum: int | None = None
        self.count = 0
        self.child: subprocess.Popen[str] | None = None
        self.stop_timeout = DEFAULT_STOP_TIMEOUT
        self.deadline: float | None = None
        self.defer = False

    def reset(self, stop_timeout: float) -> None:
        self.__init__()  # type: ignore[misc]
        self.active = True
        self.stop_timeout = stop_timeout

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        child = self.child
        if child is not None and child.poll() is None:
            if self.count == 1:
                self.deadline = time.monotonic() + self.stop_timeout
                _killpg(child, signal.SIGINT)
            else:
                _killpg(child, signal.SIGKILL)
            return
        if self.defer:
            return  # the caller checks ``pending()`` when its step is done
        raise Interrupted(f"interrupted by {signal_name(signum)}", signum)


_STATE = _Signals()


def _killpg(child: subprocess.Popen[str], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


@contextlib.contextmanager
def handling(stop_timeout: float = DEFAULT_STOP_TIMEOUT) -> Iterator[None]:
    """SIGINT and SIGTERM handled as described above for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _STATE.reset(stop_timeout)
    for s in SIGNALS:
        signal.signal(s, _STATE.handle)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _STATE.active = False


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Signals in the block go to the running child or are recorded, never raised here."""
    before = _STATE.defer
    _STATE.defer = True
    try:
        yield
    finally:
        _STATE.defer = before


def pending() -> int | None:
    """The signal received (inside ``handling``), if any."""
    return _STATE.signum if _STATE.active else None


def killed() -> bool:
    """Whether a second signal or the stop timeout ended the child at once."""
    return _STATE.count > 1 or (_STATE.deadline is not None and time.monotonic() >= _STATE.deadline)


@dataclass
class Streamed:
    """A finished child: exit code, its whole output, and whether an interrupt stopped it."""

    returncode: int
    stdout: str
    stderr: str
    signum: int | None = None
    forced: bool = False


def stream(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> Streamed:
    """Run ``argv`` in a process group of its own, passing each stdout line to ``on_line`` as
    it comes; interrupts are handled as described above (never raised from here)."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        process_group=0,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []

    def pump_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def pump_err() -> None:
        assert proc.stderr is not None
        errors.extend(proc.stderr)

    readers = [threading.Thread(target=f, daemon=True) for f in (pump_out, pump_err)]
    for reader in readers:
        reader.start()
    out: list[str] = []
    started, forced, eof = time.monotonic(), False, False
    with deferred():
        _STATE.child = proc
        try:
            while not (eof and proc.poll() is not None):
                try:
                    line = lines.get(timeout=0.1)
                except queue.Empty:
                    line = ""
                if line is None:
                    eof = True
                elif line:
                    out.append(line)
                    if on_line is not None:
                        on_line(line)
                overdue = _STATE.deadline is not None and time.monotonic() >= _STATE.deadline
                if proc.poll() is None and overdue:
                    _killpg(proc, signal.SIGKILL)
                    forced = True
                if proc.poll() is None and _STATE.count > 1:
                    forced = True
                if timeout is not None and time.monotonic() - started > timeout:
                    _killpg(proc, signal.SIGKILL)
                    proc.wait()
                    raise Failed(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s")
                if proc.poll() is not None and not eof:
                    # a grandchild outside the group may still hold the pipe: do not wait on it
                    eof = _drain(lines, out, on_line, proc)
        finally:
            if proc.poll() is None:
                _killpg(proc, signal.SIGKILL)
            proc.wait()
            _STATE.child = None
    for reader in readers:
        reader.join(timeout=2)
    return Streamed(
        returncode=proc.returncode,
        stdout="".join(out),
        stderr="".join(errors),
        signum=pending(),
        forced=forced or (pending() is not None and proc.returncode < 0),
    )


def _drain(
    lines: queue.Queue[str | None],
    out: list[str],
    on_line: Callable[[str], None] | None,
    proc: subprocess.Popen[str],
    wait: float = 2.0,
) -> bool:
    """After the child exited: its remaining output, waiting at most ``wait`` seconds."""
    until = time.monotonic() + wait
    while time.monotonic() < until:
        try:
            line = lines.get(timeout=0.05)
        except queue.Empty:
            continue
        if line is None:
            return True
        out.append(line)
        if on_line is not None:
            on_line(line)
    return True
