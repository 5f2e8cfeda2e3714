"""Start, find and stop the embedded state server for this project's FORKSTAGE_HOME.

Commands call ``ensure_running`` before touching state: a CI job or a laptop needs no separate
step to bring the backend up, and parallel jobs with their own FORKSTAGE_HOME never share one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from cdk.settings import BackendSettings
from forkstage.errors import Failed

READY_TIMEOUT = 15.0


def data_dir(home: Path) -> Path:
    return home / "state"


def pid_file(home: Path) -> Path:
    return home / "backend.pid"


def log_file(home: Path) -> Path:
    return home / "logs" / "backend.log"


@contextlib.contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    """Two commands starting at once must not both spawn a server."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "backend.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _responds(endpoint: str) -> bool:
    """Any HTTP answer (even 403 for an unsigned request) means the server is up."""
    try:
        with urllib.request.urlopen(endpoint + "/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def running_pid(home: Path) -> int | None:
    """The pid in the pid file if that process is alive."""
    try:
        pid = int(pid_file(home).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def ensure_running(backend: BackendSettings, home: Path) -> None:
    """Start the embedded server in the background unless it already answers."""
    if not backend.embedded:
        return
    if _responds(backend.endpoint):
        return
    with _start_lock(home):
        if _responds(backend.endpoint):
            return
        parts = urlsplit(backend.endpoint)
        log = log_file(home)
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "backend",
            "serve",
            "--host",
            parts.hostname or "127.0.0.1",
            "--port",
            str(parts.port or 4599),
            "--data",
            str(data_dir(home)),
            "--bucket",
            backend.bucket,
        ]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "FORKSTAGE_HOME": str(home)},
            )
        pid_file(home).write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise Failed(
                    f"the embedded state server exited (code {proc.returncode}); see {log}"
                )
            if _responds(backend.endpoint):
                return
            time.sleep(0.05)
        proc.terminate()
        raise Failed(
            f"the embedded state server did not answer within {READY_TIMEOUT:.0f}s; see {log}"
        )


def stop(home: Path, timeout: float = 10.0) -> bool:
    """Stop the server started for this home; False when none was running."""
    pid = running_pid(home)
    if pid is None:
        pid_file(home).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file(home).unlink(missing_ok=True)
    return True
