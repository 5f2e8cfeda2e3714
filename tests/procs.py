"""One way for the tests to run a command: text output captured, no stdin, a timeout, and when
asked a readable failure (the command, its exit code and the tail of its output) instead of a
bare exit code."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

OUT_TAIL = 2000
ERR_TAIL = 3000


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run to the end; past ``timeout`` the child is killed and TimeoutExpired raised (no hang)."""
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    if check:
        assert_ok(done)
    return done


def start(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start in the background (for commands that must run at the same time); see ``wait``."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def wait(
    proc: subprocess.Popen[str], *, timeout: float, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Collect a started command; past ``timeout`` it is killed and its output still returned."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        assert_ok(done)
    return done


def assert_ok(done: subprocess.CompletedProcess[str]) -> None:
    """Exit 0, or an AssertionError that shows what the command said."""
    assert done.returncode == 0, failure(done)


def failure(done: subprocess.CompletedProcess[str]) -> str:
    """The command, its exit code and the tails of its stdout and stderr, for a test failure."""
    argv = done.args if isinstance(done.args, str) else shlex.join(map(str, done.args))
    return (
        f"`{argv}` exited {done.returncode}\n"
        f"--- stdout (last {OUT_TAIL} chars) ---\n{(done.stdout or '')[-OUT_TAIL:]}\n"
        f"--- stderr (last {ERR_TAIL} chars) ---\n{(done.stderr or '')[-ERR_TAIL:]}"
    )
