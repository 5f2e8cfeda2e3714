"""forkstage.interrupts with real processes, in a second: a child in its own process group gets
exactly one forwarded SIGINT (from SIGINT or SIGTERM, to forkstage or to its group), a child that
will not stop is killed after the stop timeout, and a second signal kills it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from forkstage.interrupts import Interrupted
from tests.wrapper_env import REPO

CHILD = """
import signal, sys, time
count = 0
def stop(*_):
    global count
    count += 1
    print(f"sigint {count}", flush=True)
    if MODE == "graceful":
        time.sleep(0.3)
        sys.exit(3)
signal.signal(signal.SIGINT, stop)
print("ready", flush=True)
for _ in range(300):
    time.sleep(0.1)
"""

PARENT = """
import os, sys
from pathlib import Path
from forkstage import interrupts
child = f"MODE = {sys.argv[1]!r}\\n" + sys.argv[3]
with interrupts.handling(stop_timeout=float(sys.argv[2])):
    done = interrupts.stream(
        [sys.executable, "-c", child], cwd=Path("."), env=os.environ,
        on_line=lambda line: print("child:", line.strip(), flush=True),
    )
print("result", done.returncode, done.signum, done.forced, flush=True)
"""


def start(mode: str, stop_timeout: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PARENT, mode, str(stop_timeout), CHILD],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def read_until(proc: subprocess.Popen[str], text: str) -> list[str]:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line.strip())
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never came: {seen}")


@pytest.mark.parametrize(
    ("sig", "group"), [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)]
)
def test_one_sigint_is_forwarded_and_the_child_stops_gracefully(sig: int, group: bool) -> None:
    proc = start("graceful", 30)
    read_until(proc, "child: ready")
    (os.killpg if group else os.kill)(proc.pid, sig)
    lines = read_until(proc, "result")
    assert lines == ["child: sigint 1", f"result 3 {int(sig)} False"]  # once, then it exited
    assert proc.wait(timeout=5) == 0


def test_a_child_that_does_not_stop_is_killed_after_the_stop_timeout() -> None:
    proc = start("stubborn", 0.5)
    read_until(proc, "child: ready")
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    lines = read_until(proc, "result")
    assert lines == ["child: sigint 1", "result -9 2 True"]
    assert time.monotonic() - started < 3


def test_a_second_signal_kills_at_once() -> None:
    proc = start("stubborn", 60)
    read_until(proc, "child: ready")
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    read_until(proc, "child: sigint 1")
    os.kill(proc.pid, signal.SIGTERM)
    assert read_until(proc, "result")[-1] == "result -9 2 True"
    assert time.monotonic() - started < 3


def test_exit_codes() -> None:
    assert Interrupted("x", signal.SIGINT).exit_code == 130
    assert Interrupted("x", signal.SIGTERM).exit_code == 143
    assert Interrupted("x", signal.SIGINT, resume="forkstage deploy --stage pr-1").message == (
        "x; resume with: forkstage deploy --stage pr-1"
    )
