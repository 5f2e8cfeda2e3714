"""Endpoints that suspend when idle and resume on the next connection, as Neon computes do.

Every endpoint's address (``127.0.0.1:<endpoint port>``, what its host resolves to) is served by
one small proxy process per local cloud; the branch's PostgreSQL listens on a private port of
its own behind it. A connection to a suspended endpoint starts its server first (well under a
second for a preview branch) and is then passed through byte for byte: TLS-less, password
checked by PostgreSQL itself. An endpoint with no connection through the proxy for
``suspend_after`` seconds (``FORKSTAGE_LOCAL_SUSPEND_AFTER``, ``[local] suspend_after``; 0 never)
has its server stopped. Starting and stopping happen under the control plane's state lock, so
they never race a fork or a delete.

Run as ``python -m localcloud.endpoint_proxy <neon root>``, detached, found through
``<root>/proxy.pid``; ``Computes`` starts it, tells it which endpoints to serve and to drop
(over a Unix socket in a private folder), and stops it with the rest of the local cloud.
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.net import LOOPBACK

SUSPEND_ENV = "FORKSTAGE_LOCAL_SUSPEND_AFTER"
DEFAULT_SUSPEND_AFTER = 300.0
START_TIMEOUT = 10.0
GRACE = 60.0  # an endpoint announced by `serve` but not yet in the saved state is kept this long
IDLE_CHECK = 1.0
MAX_CONNECTIONS = 256  # per endpoint, through the proxy


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
                [sys.executable, "-P", "-m", "localcloud.endpoint_proxy", str(self.root)],
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
        return pid is not None


# -- the proxy process ---------------------------------------------------------------------------
@dataclass
class Served:
    endpoint_id: str
    port: int
    branch_id: str
    server: asyncio.Server
    announced: float = field(default_factory=time.monotonic)
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


class Proxy:
    def __init__(self, root: Path) -> None:
        from localcloud.neon_compute import Computes
        from localcloud.neon_state import state_store

        self.root = root
        self.store = state_store(root)
        self.computes = Computes(root, proxy=False)
        self.idle = suspend_after()
        self.served: dict[str, Served] = {}
        self.dropped: set[str] = set()
        self.stopping = asyncio.Event()

    def log(self, line: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} endpoint-proxy: {line}", flush=True)

    # -- PostgreSQL behind an endpoint -------------------------------------------------------------
    def _backend_port(self, served: Served) -> int:
        """The private port of the endpoint's server, started (resumed) if it is not running."""
        port = self.computes.running_port(served.branch_id)
        if port is not None:
            return port
        with self.store.change() as state:  # no fork or delete meanwhile
            endpoint = state.endpoints.get(served.endpoint_id)
            if endpoint is None:
                raise ProxyError(f"endpoint {served.endpoint_id} no longer exists")
            served.branch_id = endpoint.branch_id
            started = time.monotonic()
            self.computes.start_server(state, endpoint)
            self.log(f"{endpoint.id} resumed in {time.monotonic() - started:.2f} s")
        port = self.computes.running_port(served.branch_id)
        if port is None:
            raise ProxyError(f"the server of endpoint {served.endpoint_id} did not start")
        return port

    def _suspend(self, served: Served) -> None:
        with self.store.change() as state:
            if served.active or served.endpoint_id not in self.served:
                return
            endpoint = state.endpoints.get(served.endpoint_id)
            if endpoint is None or self.computes.running_port(endpoint.branch_id) is None:
                return
            self.computes.stop_server(state, endpoint.branch_id)
            self.log(f"{endpoint.id} suspended after {self.idle:.0f} s idle")

    # -- connections -----------------------------------------------------------------------------
    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _client(
        self, served: Served, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if served.active >= MAX_CONNECTIONS:
            writer.close()
            return
        served.active += 1
        served.writers.add(writer)
        try:
            try:
                port = await asyncio.to_thread(self._backend_port, served)
                up_reader, up_writer = await asyncio.open_connection(LOOPBACK, port)
            except Exception as exc:  # refused, gone: the client sees the connection close
                self.log(f"{served.endpoint_id}: cannot reach its server: {exc}")
                return
            served.writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            served.writers.discard(up_writer)
        finally:
            served.active -= 1
            served.last_used = time.monotonic()
            served.writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    # -- what is served --------------------------------------------------------------------------
    async def serve(self, endpoint_id: str, port: int, branch_id: str) -> None:
        current = self.served.get(endpoint_id)
        self.dropped.discard(endpoint_id)
        if current is not None and current.port == port:
            current.branch_id = branch_id
            current.announced = time.monotonic()
            return
        if current is not None:
            await self.drop(endpoint_id)
        holder: dict[str, Served] = {}

        async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._client(holder["served"], r, w)

        server = await asyncio.start_server(accept, LOOPBACK, port, reuse_address=True)
        holder["served"] = self.served[endpoint_id] = Served(endpoint_id, port, branch_id, server)
        self.log(f"{endpoint_id} served on {LOOPBACK}:{port}")

    async def drop(self, endpoint_id: str) -> None:
        served = self.served.pop(endpoint_id, None)
        self.dropped.add(endpoint_id)
        if served is None:
            return
        served.server.close()
        for writer in list(served.writers):
            with contextlib.suppress(Exception):
                writer.close()
        await served.server.wait_closed()
        self.log(f"{endpoint_id} dropped")

    async def reconcile(self) -> None:
        """Serve what the saved state lists; forget what it no longer does."""
        state = await asyncio.to_thread(self.store.load)
        for endpoint in state.endpoints.values():
            if endpoint.id in self.dropped:
                continue
            served = self.served.get(endpoint.id)
            if served is None or served.port != endpoint.port:
                with contextlib.suppress(OSError):
                    await self.serve(endpoint.id, endpoint.port, endpoint.branch_id)
            else:
                served.branch_id = endpoint.branch_id
        now = time.monotonic()
        for endpoint_id, served in list(self.served.items()):
            if endpoint_id not in state.endpoints and now - served.announced > GRACE:
                await self.drop(endpoint_id)

    async def housekeeping(self) -> None:
        seen = 0.0
        while not self.stopping.is_set():
            with contextlib.suppress(OSError):
                mtime = self.store.path.stat().st_mtime
                if mtime != seen:
                    seen = mtime
                    await self.reconcile()
            if self.idle > 0:
                now = time.monotonic()
                for served in list(self.served.values()):
                    if not served.active and now - served.last_used > self.idle:
                        served.last_used = now  # once per idle period, even if it fails
                        try:
                            await asyncio.to_thread(self._suspend, served)
                        except Exception as exc:
                            self.log(f"{served.endpoint_id}: suspend failed: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), IDLE_CHECK)

    # -- control ---------------------------------------------------------------------------------
    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = json.loads(line)
            op = request.get("op")
            answer: dict[str, Any] = {"ok": True}
            if op == "serve":
                await self.serve(str(request["id"]), int(request["port"]), str(request["branch"]))
            elif op == "drop":
                await self.drop(str(request["id"]))
            elif op == "list":
                answer["endpoints"] = {k: s.port for k, s in self.served.items()}
            elif op != "ping":
                answer = {"ok": False, "error": f"unknown request {op!r}"}
        except (OSError, ValueError, KeyError, TimeoutError) as exc:
            answer = {"ok": False, "error": str(exc) or type(exc).__name__}
        with contextlib.suppress(Exception):
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
            writer.close()

    async def run(self) -> None:
        path = control_path(self.root)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            path.unlink()
        server = await asyncio.start_unix_server(self.control, str(path))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.log(f"ready (pid {os.getpid()}, suspend after {self.idle:.0f} s)")
        try:
            await self.housekeeping()
        finally:
            server.close()
            for endpoint_id in list(self.served):
                await self.drop(endpoint_id)
            with contextlib.suppress(OSError):
                path.unlink()
            self.log("stopped")


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m localcloud.endpoint_proxy <neon state folder>")
    asyncio.run(Proxy(Path(argv[0])).run())


if __name__ == "__main__":
    main(sys.argv[1:])
