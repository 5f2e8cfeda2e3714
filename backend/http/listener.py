"""The accept loop: at most ``max_connections`` open, the oldest idle one makes room, and no
exhausted descriptor table can make it spin.

Connections that have not shown a valid signature yet (strangers: new ones, and those whose
requests were refused) have a budget of their own, ``max_unauthenticated``: a stranger over it
closes the oldest stranger that was already answered with a refusal (draining or lingering), or
else one that has had ``STRANGER_GRACE`` to show a signature and has not; when none can go,
accepting pauses (``HOLD_PAUSE``) and newcomers wait their turn in the kernel's listen queue,
first come first served. So a flood of unsigned or refused requests churns within its budget at
the pace the server sets, a new client gets its turn and its moment to sign, and a signed
client's slot is never taken.
When the cap itself is reached, connections go in this order: refused ones, strangers past
their grace, then any other idle connection.

Accepting is ours rather than ``loop.create_server``'s so that the cap is applied before a
connection costs anything, and so that EMFILE/ENFILE pause accepting for 100 ms (asyncio's own
loop pauses a full second and logs an error each time). A connection over the cap first evicts
the oldest connection that is not in the middle of a request (idle keep-alive, still sending
its head, lingering, or still in its TLS handshake); when every connection is mid-request the
newcomer gets ``503 SlowDown`` and is closed - the listener itself never waits.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from backend.http.connection import (
    DRAIN_GRACE,
    EVICTABLE,
    LINGER_SECONDS,
    REFUSED,
    STRANGER_GRACE,
    WRITE,
    Connection,
)

if TYPE_CHECKING:
    from backend.http.connection import Handler
    from backend.limits import Limits


ACCEPT_BATCH = 64  # connections accepted per readiness event
ACCEPT_PAUSE = 0.1  # seconds without accepting after EMFILE/ENFILE
EVICT_ON_EMFILE = 8  # idle connections closed each time the descriptor table is full
MAX_REFUSING = 32  # connections being told 503 at once; beyond, they are just closed
HOLD_PAUSE = 0.02  # seconds without accepting while the strangers' budget has no room
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>The server is at its connection limit: retry shortly.</Message></Error>"
)
_SLOW_DOWN = (
    b"HTTP/1.1 503 Service Unavailable\r\nServer: forkstage-state\r\n"
    b"Content-Type: application/xml\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_SLOW_DOWN_BODY), _SLOW_DOWN_BODY)
)


class Listener:
    def __init__(
        self,
        sock: socket.socket,
        *,
        loop: asyncio.AbstractEventLoop,
        limits: Limits,
        tls: ssl.SSLContext | None,
        handler: Handler,
        log: Callable[[str], None] | None,
    ) -> None:
        self.sock = sock
        self.loop = loop
        self.limits = limits
        self.tls = tls
        self.handler = handler
        self.log = log
        self._slots: dict[Connection, None] = {}  # insertion order = age
        self._strangers: dict[Connection, None] = {}  # not yet shown a valid signature
        self.stranger_cap = min(limits.max_unauthenticated, limits.max_connections)
        self._refusing = 0
        self._accepting = False
        self._held = False  # accepting paused for the strangers' budget
        self._closing = False
        self._waiting: socket.socket | None = None  # accepted, waiting for a stranger's slot
        self._resume: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._last_warning = 0.0
        timeouts = [limits.header_timeout, limits.idle_timeout, DRAIN_GRACE]
        if limits.body_grace > 0:
            timeouts.append(limits.body_grace)
        self.tick = max(0.05, min(1.0, min(timeouts) / 4))

    @property
    def count(self) -> int:
        return len(self._slots)

    def start(self) -> None:
        self.sock.setblocking(False)
        self._start_accepting()
        self._sweeper = self.loop.call_later(self.tick, self._sweep)

    # -- registry ----------------------------------------------------------------------------

    @property
    def strangers(self) -> int:
        return len(self._strangers)

    def forget(self, conn: Connection) -> None:
        self._slots.pop(conn, None)
        if self._strangers.pop(conn, 0) is None:
            self._stranger_left()

    def trust(self, conn: Connection) -> None:
        if self._strangers.pop(conn, 0) is None:
            self._stranger_left()

    def _stranger_left(self) -> None:
        if self._held:  # accepting waits for the strangers' budget, which has room now
            self._held = False
            self.loop.call_soon(self._resume_held)

    def _evict_one(self) -> bool:
        """Make room for one connection; False if every connection is mid-request."""
        victim = (
            _oldest(self._slots, REFUSED)
            or self._stale_stranger()
            or _oldest(self._slots, EVICTABLE)
        )
        if victim is None:
            return False
        victim.abort()
        return True

    def _evict_stranger(self) -> bool:
        """Make room within the strangers' budget; False if none can go."""
        victim = _oldest(self._strangers, REFUSED) or self._stale_stranger()
        if victim is None:
            return False
        victim.abort()
        return True

    def _stale_stranger(self) -> Connection | None:
        """The oldest stranger that had its grace to sign a request and is not mid-request."""
        born_before = self.loop.time() - STRANGER_GRACE
        for conn in self._strangers:
            if conn.born > born_before:
                return None  # insertion order: every later one is younger still
            if conn.phase in _STRANGER_EVICTABLE:
                return conn
        return None

    # -- accepting -----------------------------------------------------------------------------

    def _start_accepting(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
        self._resume = None
        self._held = False
        if not self._accepting and self.sock.fileno() >= 0:
            self._accepting = True
            self.loop.add_reader(self.sock.fileno(), self._accept_ready)

    def _stop_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            self.loop.remove_reader(self.sock.fileno())

    def _accept_ready(self) -> None:
        for _ in range(ACCEPT_BATCH):
            csock, self._waiting = self._waiting, None
            if csock is None:
                try:
                    csock, _addr = self.sock.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno in _OUT_OF_RESOURCES:
                        self._out_of_descriptors(exc)
                        return
                    self._warn(f"accept failed: {exc}")
                    return
                csock.setblocking(False)
            if len(self._strangers) >= self.stranger_cap and not self._evict_stranger():
                # no stranger can go yet: this one waits, the next ones in the listen queue
                self._waiting = csock
                self._stop_accepting()
                self._resume = self.loop.call_later(HOLD_PAUSE, self._resume_held)
                self._held = True
                return
            self._admit(csock)

    def _resume_held(self) -> None:
        if self._closing:
            return
        self._start_accepting()
        if self._waiting is not None:
            self._accept_ready()

    def _out_of_descriptors(self, exc: OSError) -> None:
        # Linux keeps reporting the listening socket readable: stop watching it for a moment
        # (no spinning), and free descriptors from the oldest idle connections meanwhile.
        self._stop_accepting()
        for _ in range(EVICT_ON_EMFILE):
            if not self._evict_one():
                break
        self._resume = self.loop.call_later(ACCEPT_PAUSE, self._start_accepting)
        self._warn(f"accept paused {ACCEPT_PAUSE * 1000:.0f} ms: {exc.strerror or exc}")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if self.log is not None and now - self._last_warning > 10:
            self._last_warning = now
            self.log(message)

    def _admit(self, csock: socket.socket) -> None:
        if len(self._slots) >= self.limits.max_connections and not self._evict_one():
            self._refuse(csock)
            return
        conn = Connection(self, csock)
        self._slots[conn] = None
        self._strangers[conn] = None
        conn.opening = self.loop.create_task(self._open(conn))

    async def _open(self, conn: Connection) -> None:
        """Hand the socket to asyncio (for TLS: the handshake, bounded by header_timeout)."""
        try:
            await self.loop.connect_accepted_socket(
                conn.adopt,
                conn.sock,
                ssl=self.tls,
                ssl_handshake_timeout=self.limits.header_timeout if self.tls else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, EOFError):
            conn.opening = None
            conn.abort()
        finally:
            conn.opening = None

    def _refuse(self, csock: socket.socket) -> None:
        if self._refusing >= MAX_REFUSING:
            csock.close()
            return
        self._refusing += 1
        self.loop.create_task(self._refuse_one(csock))

    async def _refuse_one(self, csock: socket.socket) -> None:
        try:
            _, refusal = await self.loop.connect_accepted_socket(
                _Refusal,
                csock,
                ssl=self.tls,
                ssl_handshake_timeout=min(2.0, self.limits.header_timeout) if self.tls else None,
            )
            await refusal.closed
        except (OSError, ssl.SSLError, TimeoutError, EOFError):
            pass
        finally:
            self._refusing -= 1

    # -- deadlines and shutdown ----------------------------------------------------------------

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self._slots):
            conn.check(now)
        self._sweeper = self.loop.call_later(self.tick, self._sweep)

    async def close(self) -> None:
        """Stop accepting, cut every connection and wait for their tasks to end."""
        self._closing = True
        self._stop_accepting()
        for handle in (self._resume, self._sweeper):
            if handle is not None:
                handle.cancel()
        tasks = []
        for conn in list(self._slots):
            conn.abort()
            if conn.task is not None:
                conn.task.cancel()
                tasks.append(conn.task)
        self._slots.clear()
        self._strangers.clear()
        if self._waiting is not None:
            self._waiting.close()
            self._waiting = None
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


# A stranger writing a response is writing a small error document: it holds nothing of value.
_STRANGER_EVICTABLE = (*EVICTABLE, WRITE)


def _oldest(conns: dict[Connection, None], phases: tuple[int, ...]) -> Connection | None:
    for conn in conns:
        if conn.phase in phases:
            return conn
    return None


class _Refusal(asyncio.Protocol):
    """Says 503 SlowDown, half-closes, and drops input briefly so the client reads it."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(_SLOW_DOWN)
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_SECONDS / 2, transport.abort)
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        return

    def eof_received(self) -> bool:
        if self._transport is not None:
            self._transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


__all__ = ["Listener"]
