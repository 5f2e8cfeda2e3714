"""Endpoints that suspend when idle and resume on the next connection, as Neon computes do.

Every endpoint's address (``127.0.0.1:<endpoint port>``, what its host resolves to) is served by
one small proxy process per local cloud; the branch's PostgreSQL listens on a private port of
its own behind it. A connection to a suspended endpoint starts its server first (well under a
second for a preview branch) and is then passed through byte for byte: TLS-less, password
checked by PostgreSQL itself. An endpoint with no connection through the proxy for
``suspend_after`` seconds (``FORKSTAGE_LOCAL_SUSPEND_AFTER``, ``[local] suspend_after``; 0 never)
has its server stopped. Starting and stopping happen under the control plane's state lock, so
they never race a fork or a delete.

The process (``localcloud.endpoint_proxyd``) runs detached, found through
``<root>/proxy.pid``; ``Computes`` starts it, tells it which endpoints to serve and to drop
(over a Unix socket in a private folder), and stops it with the rest of the local cloud.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SUSPEND_ENV = "FORKSTAGE_LOCAL_SUSPEND_AFTER"
DEFAULT_SUSPEND_AFTER = 300.0
START_TIMEOUT = 10.0


class ProxyError(RuntimeError):
    """The endpoint proxy could not be started or did not do what it was asked."""


def suspend_after(environ: dict[str, str] | None = None) -> float:
    """Seconds of idleness before an endpoint is suspended (``0``: never)."""
    raw = (os.environ if environ is None else environ).get(SUSPEND_ENV, "").strip()
    if not raw:
        return DEFAULT_SUSPEND_AFTER
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if raw[-1] in units:
            return max(0.0, float(raw[:-1]) * units[raw[-1]])
        return max(0.0, float(raw))
    except ValueError:
        return DEFAULT_SUSPEND_AFTER


def control_path(root: Path) -> Path:
    digest = hashlib.sha256(str(Path(root).absolute()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"forkstage-endpoints-{digest}" / "control"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX" and b"localcloud.endpoint_proxy" in cmdline


# -- the client side (Computes) ------------------------------------------------------------------
class ProxyClient:
    """Start, instruct and stop the proxy of one control plane (``root``: its state folder)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pid_path = self.root / "proxy.pid"
        self.control = control_path(self.root)
        self.log_path = self.root / "proxy.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def request(self, doc: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.control))
            sock.sendall(json.dumps(doc).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        answer: dict[str, Any] = json.loads(data or b"{}")
        if not answer.get("ok"):
            raise ProxyError(str(answer.get("error", "the endpoint proxy gave no answer")))
        return answer

    def ensure(self) -> None:
        """The proxy runs (started if need be)."""
        if self.pid() is not None:
            try:
                self.request({"op": "ping"}, timeout=5)
                return
            except (OSError, ValueError, ProxyError):
                self.stop()
        self.control.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.control.parent.chmod(0o700)
        with contextlib.suppress(OSError):
            self.control.unlink()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # the packages this module came from, however the caller found them
        repo = str(Path(__file__).resolve().parent.parent)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
        }
        with os.fdopen(fd, "ab") as log:
            proc = subprocess.Popen(
                # -P: nothing in its working folder can stand in for a module
                [sys.executable, "-P", "-m", "localcloud.endpoint_proxyd", str(self.root)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.root,
                env=env,
            )
        self.pid_path.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.request({"op": "ping"}, timeout=2)
                return
            except (OSError, ValueError, ProxyError):
                pass
            if proc.poll() is not None:
                raise ProxyError(
                    f"the endpoint proxy exited (code {proc.returncode}); see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise ProxyError(f"the endpoint proxy did not start; see {self.log_path}")
            time.sleep(0.02)

    def serve(self, endpoint_id: str, port: int, branch_id: str) -> None:
        """Accept connections for the endpoint on ``127.0.0.1:port`` (returns once it does)."""
        self.ensure()
        self.request({"op": "serve", "id": endpoint_id, "port": port, "branch": branch_id})

    def drop(self, endpoint_id: str) -> None:
        """Stop serving the endpoint (its port is free when this returns)."""
        if self.pid() is None:
            return
        with contextlib.suppress(OSError, ValueError, ProxyError):
            self.request({"op": "drop", "id": endpoint_id})

    def serves(self) -> dict[str, int]:
        """Endpoint id -> port of what the proxy serves now."""
        if self.pid() is None:
            return {}
        try:
            return {k: int(v) for k, v in self.request({"op": "list"})["endpoints"].items()}
        except (OSError, ValueError, ProxyError):
            return {}

    def stop(self, timeout: float = 10.0) -> bool:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.control.unlink()
        with contextlib.suppress(OSError):
            self.control.parent.rmdir()  # our private folder, when nothing else is in it
        return pid is not None
