"""Start, find and stop the embedded state server for this project's FORKSTAGE_HOME.

Commands call ``ensure_running`` before touching state: a CI job or a laptop needs no separate
step to bring the backend up, and parallel jobs with their own FORKSTAGE_HOME never share one.
A server already answering on the port must be this home's: one started for another
FORKSTAGE_HOME would refuse our keys (``InvalidAccessKeyId``) halfway through a command, so it is
named up front instead.
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
DEFAULT_PORT = 4599
# (endpoint, home) pairs already found to be this home's server in this process
_OURS: set[tuple[str, Path]] = set()


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


def _listening_pid(port: int, first: int | None) -> int | None:
    """The process listening on ``port`` on this machine, found through /proc (None where that
    cannot be read: another user's process, or no /proc)."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                sockets.add(f"socket:[{fields[9]}]")
    if not sockets:
        return None
    candidates = [first] if first else []
    candidates += [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    for pid in candidates:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                    return pid
            except OSError:
                continue
    return None


def _served_data_dir(pid: int) -> Path | None:
    """The data folder a state server process serves: its ``--data``, else the
    ``$FORKSTAGE_HOME/state`` it defaults to."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    for i, arg in enumerate(argv):
        if arg == "--data" and i + 1 < len(argv):
            return cwd / argv[i + 1]
        if arg.startswith("--data="):
            return cwd / arg.removeprefix("--data=")
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    homes = [e.removeprefix("FORKSTAGE_HOME=") for e in environ if e.startswith("FORKSTAGE_HOME=")]
    return cwd / homes[0] / "state" if homes and homes[0] else None


def _rejects_our_key(backend: BackendSettings, home: Path) -> bool:
    """Ask the server with this home's admin key: a server of another home does not know it."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from backend.s3.credentials import ensure_admin

    cred = ensure_admin(data_dir(home))
    request = AWSRequest(
        method="GET", url=f"{backend.endpoint.rstrip('/')}/{backend.bucket}?list-type=2&max-keys=1"
    )
    keys = Credentials(cred.access_key_id, cred.secret_access_key)
    S3SigV4Auth(keys, "s3", backend.region or "us-east-1").add_auth(request)
    prepared = urllib.request.Request(request.url, headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(prepared, timeout=5):
            return False
    except urllib.error.HTTPError as exc:
        body = exc.read(4096)
        return exc.code == 403 and (
            b"InvalidAccessKeyId" in body or b"SignatureDoesNotMatch" in body
        )
    except OSError:
        return False


def check_ours(backend: BackendSettings, home: Path) -> None:
    """Fail with one line when the server answering on the endpoint belongs to another home."""
    key = (backend.endpoint, home)
    if key in _OURS:
        return
    port = urlsplit(backend.endpoint).port or DEFAULT_PORT
    pid = _listening_pid(port, running_pid(home))
    served = _served_data_dir(pid) if pid is not None else None
    if served is not None:
        ours = served.resolve() == data_dir(home).resolve()
    else:
        ours = not _rejects_our_key(backend, home)
    if ours:
        _OURS.add(key)
        return
    from localcloud.net import LOOPBACK, free_port

    if served is None:
        owner = "another FORKSTAGE_HOME"
    elif served.name == "state":
        owner = f"another FORKSTAGE_HOME ({served.parent})"
    else:
        owner = f"another state server (data {served})"
    raise Failed(
        f"the state server on port {port} belongs to {owner}, not {home}: give this home a "
        f"port of its own, e.g. export FORKSTAGE_BACKEND_ENDPOINT=http://{LOOPBACK}:{free_port()}"
    )


def ensure_running(backend: BackendSettings, home: Path) -> None:
    """Start the embedded server in the background unless this home's already answers."""
    if not backend.embedded:
        return
    if _responds(backend.endpoint):
        check_ours(backend, home)
        return
    with _start_lock(home):
        if _responds(backend.endpoint):
            check_ours(backend, home)
            return
        parts = urlsplit(backend.endpoint)
        log = log_file(home)
        log.parent.mkdir(parents=True, exist_ok=True)
        # -P and its own working folder: a project's own backend/ package (a web app's) must
        # never shadow forkstage's state server
        argv = [
            sys.executable,
            "-P",
            "-m",
            "backend",
            "serve",
            "--host",
            parts.hostname or "127.0.0.1",
            "--port",
            str(parts.port or DEFAULT_PORT),
            "--data",
            str(data_dir(home)),
            "--bucket",
            backend.bucket,
            "--region",  # the region Terraform and forkstage sign with; the server checks it
            backend.region or "us-east-1",
        ]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=home,
                env={**isolated_env(), "FORKSTAGE_HOME": str(home)},
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                # the pid file still names the server that is running, if one is (e.g. this
                # home's, on the port it had before FORKSTAGE_BACKEND_ENDPOINT changed)
                said = _last_line(log)
                raise Failed(
                    f"the embedded state server exited (code {proc.returncode})"
                    + (f": {said}" if said else "")
                    + f"; see {log}"
                )
            if _responds(backend.endpoint):
                pid_file(home).write_text(f"{proc.pid}\n")
                _OURS.add((backend.endpoint, home))
                return
            time.sleep(0.05)
        proc.terminate()
        raise Failed(
            f"the embedded state server did not answer within {READY_TIMEOUT:.0f}s; see {log}"
        )


def _last_line(log: Path) -> str:
    """The server's last log line (its reason for exiting), without the ``error:`` prefix."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(handle.seek(0, os.SEEK_END) - 4096, 0))
            lines = handle.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].removeprefix("error: ").strip()[:300] if lines else ""


def isolated_env() -> dict[str, str]:
    """The environment for forkstage's own Python processes: no PYTHONPATH of the project's."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}


def stop(home: Path, timeout: float = 10.0) -> bool:
    """Stop the server started for this home; False when none was running."""
    _OURS.difference_update({k for k in _OURS if k[1] == home})
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
