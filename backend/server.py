"""The state server: a data directory, a listening socket and an asyncio loop serving S3.

``make_server`` locks the data directory, opens the store and binds; ``serve_forever`` runs the
event loop in the calling thread until ``shutdown()`` (from any other thread), so callers keep
the ``socketserver``-style life cycle. The HTTP work is split by concern: ``listener`` (accept,
cap, eviction), ``connection`` (buffers, deadlines, keep-alive), ``wire`` (parsing and
serialization), ``bodies`` (streamed bodies), ``handler`` (auth, dispatch, errors, health).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import sqlite3
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.errors import InsufficientStorage
from backend.http.listener import Listener
from backend.limits import DEFAULT_LIMITS, Limits
from backend.s3 import credentials, sigv4
from backend.s3.handler import Handler
from backend.s3.respond import render_error
from backend.store import diskspace
from backend.store.db import disk_full
from backend.store.store import Store

DEFAULT_BUCKET = "forkstage-state"
LISTEN_BACKLOG = 1024
Logger = Callable[[str], None]


class ServerBusy(RuntimeError):
    """Another state server already serves this data directory."""


class DiskFull(RuntimeError):
    """The data directory's disk is below the reserve before the server could set up."""


class StateServer:
    def __init__(
        self,
        address: tuple[str, int],
        *,
        store: Store,
        book: credentials.CredentialBook,
        data_dir: Path,
        lock_fd: int,
        tls: ssl.SSLContext | None,
        log: Logger | None,
        limits: Limits,
        region: str | None = sigv4.DEFAULT_REGION,
    ) -> None:
        self.store = store
        self.book = book
        self.data_dir = data_dir
        self.log = log
        self.limits = limits
        self.tls = tls is not None
        self._tls = tls
        self._lock_fd = lock_fd
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.create_server(address, family=family, backlog=LISTEN_BACKLOG)
        self.server_address: tuple[Any, ...] = self.socket.getsockname()
        self.listener: Listener | None = None
        self.handler = Handler(
            store=store,
            book=book,
            limits=limits,
            log=log,
            connections=lambda: self.listener.count if self.listener else 0,
            region=region,
        )
        self._state = threading.RLock()  # re-entered by stop_soon in a signal handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopped = threading.Event()
        self._shutdown_requested = False
        self._closed = False

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        if ":" in str(host):
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    @property
    def credentials_file(self) -> Path:
        return credentials.path_for(self.data_dir)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until ``shutdown()``; ``poll_interval`` is accepted for compatibility (the
        loop wakes on shutdown at once)."""
        with self._state:
            if self._shutdown_requested or self._closed:
                return
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stopped.clear()
        try:
            loop.run_until_complete(self._serve())
        finally:
            try:
                loop.run_until_complete(self._wind_down())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                self.handler.dispatcher.close()
                loop.close()
                with self._state:
                    self._loop = None
                self._stopped.set()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        with self._state:
            if self._shutdown_requested:
                return
        self.listener = Listener(
            self.socket,
            loop=loop,
            limits=self.limits,
            tls=self._tls,
            handler=self.handler,
            log=self.log,
        )
        self.listener.start()
        await self._stop.wait()

    async def _wind_down(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for task in rest:
            task.cancel()
        if rest:
            await asyncio.gather(*rest, return_exceptions=True)

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and wait until it has returned (call from another thread)."""
        if self.stop_soon():
            self._stopped.wait()

    def stop_soon(self) -> bool:
        """Ask ``serve_forever`` to return, without waiting (safe in a signal handler)."""
        with self._state:
            self._shutdown_requested = True
            loop = self._loop
        if loop is None:
            return False
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._request_stop)
        return True

    def _request_stop(self) -> None:
        if self._stop is not None:  # else _serve has not begun, and will see the flag
            self._stop.set()

    def server_close(self) -> None:
        with self._state:
            if self._closed:
                return
            self._closed = True
        self.socket.close()
        self.handler.dispatcher.close()
        self.store.close()
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)


def _tls_context(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise ValueError("TLS needs both a certificate and a key file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(certfile), str(keyfile))
    return ctx


def make_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    data_dir: Path,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    bucket: str = DEFAULT_BUCKET,
    limits: Limits = DEFAULT_LIMITS,
    log: Logger | None = None,
    region: str | None = sigv4.DEFAULT_REGION,
) -> StateServer:
    """A ready-to-serve state server (call ``serve_forever()``; ``shutdown()`` to stop).

    ``region`` is the signing region requests must name (None accepts any). Raises
    ServerBusy, DiskFull, diskspace.ReserveTooLarge (a ValueError) or OSError (cannot bind).
    """
    limits.check()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(data_dir, 0o700)
    tls = _tls_context(certfile, keyfile)
    diskspace.check_fits(data_dir, limits.disk_reserve_bytes)
    lock_fd = os.open(data_dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise ServerBusy(f"another state server is already using {data_dir}") from None
    store: Store | None = None
    try:
        try:
            credentials.ensure_admin(data_dir)
            store = Store(data_dir, limits=limits)  # it empties its spool dir of a crash's bodies
            store.create_bucket(bucket, exist_ok=True)
        except (InsufficientStorage, OSError, sqlite3.Error) as exc:
            if not isinstance(exc, InsufficientStorage) and not disk_full(exc):
                raise
            free = diskspace.free_bytes(data_dir)
            raise DiskFull(
                f"the disk holding {data_dir} has {free} bytes free, too little to set up the"
                f" state server above its --disk-reserve of {limits.disk_reserve_bytes} bytes:"
                " free disk space or give a smaller reserve"
            ) from None
        return StateServer(
            (host, port),
            store=store,
            book=credentials.CredentialBook(data_dir),
            data_dir=data_dir,
            lock_fd=lock_fd,
            tls=tls,
            log=log,
            limits=limits,
            region=region,
        )
    except BaseException:
        if store is not None:
            store.close()
        with contextlib.suppress(OSError):
            os.close(lock_fd)
        raise


def serve_in_thread(server: StateServer) -> threading.Thread:
    """Run ``serve_forever`` on a daemon thread (tests and the embedded default backend)."""
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="state-server",
        daemon=True,
    )
    thread.start()
    return thread


__all__ = [
    "DEFAULT_BUCKET",
    "DiskFull",
    "ServerBusy",
    "StateServer",
    "make_server",
    "render_error",
    "serve_in_thread",
]
