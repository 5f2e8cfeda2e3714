"""One Miniflare for every Worker of a local cloud: the host process and how to talk to it.

A Miniflare launcher per Worker cost about 90 MiB (a Node process and a workerd each); one host
(``miniflare_host.mjs``: one Node process, one workerd) serves them all, each Worker on its own
loopback port with its own bindings. The host is a detached process of its own session found
through files under ``$FORKSTAGE_HOME/workers/`` (``host.pid``, ``host.ready``); requests go
over a Unix socket in a private (0700) folder, since they carry Hyperdrive connection strings
(passwords): never argv or environment. Changes are made under a file lock, one at a time; the
host stops when its last Worker is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcloud.workers import WorkerError, WorkerProcess, _group_members, _tail

HOST_SCRIPT = Path(__file__).with_name("miniflare_host.mjs")
START_TIMEOUT = 15.0
REQUEST_TIMEOUT = 90.0  # a put restarts workerd with every Worker: seconds with many


def _host_cmdline(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat[stat.rfind(")") + 2 :].split()[0]
    return state != "Z" and HOST_SCRIPT.name.encode() in cmdline


@dataclass
class HostedWorker(WorkerProcess):
    """A Worker the shared host serves: ``pid`` is the host's, ``generation`` changes each time
    the Worker is (re)configured; ``stop()`` removes this Worker only."""

    fingerprint: str = ""
    home: Path | None = None

    def is_running(self) -> bool:
        if self.home is None:
            return False
        current = WorkersHost(self.home).workers().get(self.name)
        return current is not None and current.url == self.url

    def processes(self) -> list[int]:
        """The host's processes (Node and workerd), which serve other Workers too."""
        return _group_members(self.pid) if _host_cmdline(self.pid) else []

    def stop(self, timeout: float = 10.0) -> None:
        if self.home is not None:
            WorkersHost(self.home).remove(self.name)


class WorkersHost:
    """The shared Miniflare host of one FORKSTAGE_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.folder = self.home / "workers"
        self.pid_path = self.folder / "host.pid"
        self.ready_path = self.folder / "host.ready"
        self.log_path = self.home / "logs" / "workers.log"
        digest = hashlib.sha256(str(self.home.absolute()).encode()).hexdigest()[:16]
        # sun_path is 108 bytes: a short folder of our own, whatever the home's path
        self.control = Path(tempfile.gettempdir()) / f"forkstage-workers-{digest}" / "control"

    # -- the process -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One change of the host's Workers at a time, across processes."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "host.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def pid(self) -> int | None:
        """The host's pid while it runs."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _host_cmdline(pid) else None

    def processes(self) -> list[int]:
        pid = self.pid()
        return _group_members(pid) if pid else []

    def start(self, node_modules: Path, node: str | None = None) -> int:
        """The host's pid, started if it does not run (call under ``locked()``)."""
        running = self.pid()
        if running is not None and self._answers():
            return running
        self.stop()  # leftovers of a killed host
        node_binary = node or shutil.which("node")
        if node_binary is None:
            raise WorkerError("node is not on PATH: the local Workers runtime needs Node.js 20+")
        if not (node_modules / "miniflare" / "package.json").is_file():
            raise WorkerError(
                f"Miniflare is not installed in {node_modules}: run `npm install` (or `npm ci`) "
                "in the project"
            )
        self.control.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.control.parent.chmod(0o700)
        self.ready_path.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "control": str(self.control),
            "ready_file": str(self.ready_path.absolute()),
            "node_modules": str(node_modules.resolve()),
        }
        env = {
            **os.environ,
            "WRANGLER_SEND_METRICS": "false",
            "CLOUDFLARE_CF_FETCH_ENABLED": "false",
            "NO_COLOR": "1",
        }
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            proc = subprocess.Popen(
                [node_binary, str(HOST_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.folder,
                env=env,
            )
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(json.dumps(config).encode())
            proc.stdin.close()
        self.pid_path.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready_path.is_file():
            if proc.poll() is not None:
                raise WorkerError(
                    f"the Workers host failed to start (exit {proc.returncode}): "
                    f"{_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise WorkerError(f"the Workers host did not start in time; see {self.log_path}")
            time.sleep(0.02)
        return proc.pid

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the host and workerd with it; False when none ran."""
        pid = self.pid()
        stopped = False
        if pid is not None:
            stopped = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _group_members(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _group_members(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                while _group_members(pid) and time.monotonic() < deadline + 5:
                    time.sleep(0.02)
        self.pid_path.unlink(missing_ok=True)
        self.ready_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.control.unlink()
        with contextlib.suppress(OSError):
            self.control.parent.rmdir()  # our private folder, when nothing else is in it
        return stopped

    # -- requests ----------------------------------------------------------------------------------
    def _answers(self) -> bool:
        try:
            self._request({"op": "list"}, timeout=5)
        except (OSError, WorkerError):
            return False
        return True

    def _request(self, doc: Mapping[str, Any], *, timeout: float = REQUEST_TIMEOUT) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.control))
            sock.sendall(json.dumps(doc).encode())
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        try:
            answer = json.loads(b"".join(chunks))
        except ValueError:
            raise WorkerError("the Workers host gave no answer; see its log") from None
        if not answer.get("ok"):
            raise WorkerError(f"{answer.get('error', 'the Workers host refused')}")
        return answer

    def workers(self) -> dict[str, HostedWorker]:
        """The Workers the host serves now ({} when it does not run)."""
        pid = self.pid()
        if pid is None:
            return {}
        try:
            answer = self._request({"op": "list"}, timeout=10)
        except (OSError, WorkerError):
            return {}
        return {
            name: HostedWorker(
                name=name,
                pid=pid,
                url=str(item["url"]),
                pid_path=self.pid_path,
                log_path=self.log_path,
                generation=int(item.get("generation", 0)),
                fingerprint=str(item.get("fingerprint", "")),
                home=self.home,
            )
            for name, item in answer.get("workers", {}).items()
        }

    def put(self, spec: Mapping[str, Any]) -> HostedWorker:
        """Add or replace one Worker (call under ``locked()`` with the host started)."""
        started = time.monotonic()
        try:
            self._request({"op": "put", "worker": dict(spec)})
        except OSError as exc:
            raise WorkerError(f"the Workers host is not reachable: {exc.strerror}") from None
        except WorkerError as exc:
            raise WorkerError(f"Worker {spec['name']} did not start: {exc}") from None
        worker = self.workers().get(str(spec["name"]))
        if worker is None:
            raise WorkerError(f"Worker {spec['name']} did not start; see {self.log_path}")
        worker.ready_seconds = time.monotonic() - started
        return worker

    def delete(self, name: str) -> bool:
        """Remove one Worker (call under ``locked()``); the host stops with its last one.
        False if it served no such Worker."""
        if self.pid() is None:
            return False
        try:
            removed = bool(self._request({"op": "delete", "name": name}).get("removed"))
        except (OSError, WorkerError):
            return False
        if not self.workers():
            self.stop()
        return removed

    def remove(self, name: str) -> bool:
        """``delete`` under the lock."""
        with self.locked():
            return self.delete(name)
