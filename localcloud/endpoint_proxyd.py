"""The endpoint proxy's process: every endpoint address of one local cloud, on asyncio.

See ``localcloud.endpoint_proxy`` (what it does, and the client that starts and instructs it).
Run as ``python -P -m localcloud.endpoint_proxyd <neon state folder>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.endpoint_proxy import ProxyError, control_path, suspend_after
from localcloud.net import LOOPBACK

GRACE = 60.0  # an endpoint announced by `serve` but not yet in the saved state is kept this long
IDLE_CHECK = 1.0
MAX_CONNECTIONS = 256  # per endpoint, through the proxy


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
        sys.exit("usage: python -m localcloud.endpoint_proxyd <neon state folder>")
    asyncio.run(Proxy(Path(argv[0])).run())


if __name__ == "__main__":
    main(sys.argv[1:])
