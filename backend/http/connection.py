"""One client connection: its receive buffer, its phase, and the deadline that phase carries.

An ``asyncio.Protocol`` rather than streams, so a request that arrives whole costs no wake-up
at all. Each connection runs one task that reads a head, lets the handler serve it and loops
(keep-alive). Deadlines are not timers: the listener sweeps every connection a few times per
timeout and calls ``check``, which reads the phase and when it began:

- IDLE: waiting for a request's first byte (a new connection gets ``header_timeout``, a
  keep-alive one ``idle_timeout``);
- HEAD: the head must be complete ``header_timeout`` after its first byte;
- BODY: after ``body_grace`` seconds the average rate must stay >= ``body_min_rate``;
- BUSY: the server's own time (the operation runs) - no deadline;
- WRITE: the response must drain at the same minimum rate after the same grace;
- DRAIN: a refused request's body, read and dropped after the answer went out: only while it
  arrives at the minimum rate from its first second (``DRAIN_GRACE``), and evictable meanwhile;
- LINGER: closing after a refusal, reading and dropping what the client still sends.

A connection is a stranger until one of its requests shows a valid signature (``trusted``);
the listener keeps strangers within their own, smaller budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Protocol

from backend.errors import HeaderTooLarge, IncompleteBody, RequestTimeout, S3Error
from backend.http.wire import MAX_HEAD_BYTES

if TYPE_CHECKING:
    from backend.limits import Limits

    class Handler(Protocol):
        async def handle(self, conn: Connection, raw: bytes) -> bool: ...
        async def refuse(self, conn: Connection, err: Exception) -> None: ...

    class Listener(Protocol):
        """What a connection needs of the listener that accepted it (``listener.Listener``)."""

        loop: asyncio.AbstractEventLoop
        limits: Limits
        handler: Handler

        def forget(self, conn: Connection) -> None: ...
        def trust(self, conn: Connection) -> None: ...


IDLE, HEAD, BODY, BUSY, WRITE, LINGER, DRAIN = range(7)
EVICTABLE = (IDLE, HEAD, LINGER, DRAIN)  # not in the middle of a request
REFUSED = (LINGER, DRAIN)  # answered already: the first to go when room is needed
MAX_BUFFER = 1 << 20  # stop reading from the socket beyond this much unconsumed input
LINGER_SECONDS = 2.0
DRAIN_GRACE = 1.0  # seconds a refused body may take before it must arrive at the minimum rate
STRANGER_GRACE = 1.0  # seconds a new connection has to show a signature before it is evictable


class ConnectionCut(Exception):
    """The peer is gone or a deadline cut it: no response can be written."""


class Connection(asyncio.Protocol):
    def __init__(self, listener: Listener, sock: socket.socket) -> None:
        self.listener = listener
        self.sock = sock  # asyncio's once adopted; ours to close until then
        self.opening: asyncio.Task[None] | None = None  # handing the socket to asyncio
        self._adopted = False
        self._dead = False
        self.loop = listener.loop
        self.limits = listener.limits
        self.transport: asyncio.Transport | None = None
        self.peer = "-"
        self.phase = IDLE
        self.since = self.born = self.loop.time()
        self.idle_limit = self.limits.header_timeout  # a new connection must start promptly
        self.received = 0  # bytes received in all
        self.written = 0  # bytes handed to the transport in all
        self._mark = 0  # received or written when the current BODY/WRITE phase began
        self._buf = bytearray()
        self._eof = False
        self._lost = False
        self._reading_paused = False
        self._write_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._cut: S3Error | None = None
        self.task: asyncio.Task[None] | None = None
        self.linger = False  # set by the handler when a request's body was left unread
        self.trusted = False  # a request on it showed a valid signature
        self.holds: str | None = None  # the credential whose in-flight count this request holds

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def adopt(self) -> Connection:
        """The protocol factory handed to asyncio: from here the socket is the transport's."""
        self._adopted = True
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._dead:  # evicted while asyncio was still setting it up
            transport.abort()
            return
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else "-"
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.since = self.loop.time()
        self.task = self.loop.create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self.phase == LINGER:
            return
        self.received += len(data)
        self._buf += data
        if self.phase == IDLE:
            self.phase, self.since = HEAD, self.loop.time()
        if len(self._buf) > MAX_BUFFER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        if self.phase == LINGER and self.transport:
            self.transport.close()
        return True  # keep the write side open: the answer may still be on its way

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionCut())
        self.listener.forget(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- the request loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        handler = self.listener.handler
        try:
            while True:
                try:
                    head = await self.read_head()
                except HeaderTooLarge as err:
                    self.linger = True
                    await handler.refuse(self, err)
                    break
                if head is None:
                    break
                self.phase = BUSY
                if not await handler.handle(self, head):
                    break
                self.phase = HEAD if self._buf else IDLE
                self.since = self.loop.time()
                self.idle_limit = self.limits.idle_timeout
        except ConnectionCut:
            pass
        finally:
            self.close(linger=self.linger)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _consumed(self) -> None:
        if self._reading_paused and len(self._buf) <= MAX_BUFFER // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()

    async def read_head(self) -> bytes | None:
        """The next request head without its blank line; None when the client is done."""
        searched = 0
        while True:
            end = self._buf.find(b"\r\n\r\n", max(0, searched - 3))
            if end >= 0:
                head = bytes(self._buf[:end])
                del self._buf[: end + 4]
                self._consumed()
                return head
            if len(self._buf) > MAX_HEAD_BYTES:
                raise HeaderTooLarge()
            if self._eof or self._lost:
                return None
            searched = len(self._buf)
            await self._wait()

    async def take(self, limit: int) -> bytes:
        """Up to ``limit`` body bytes; raises the deadline's error or IncompleteBody."""
        while not self._buf:
            if self._cut is not None:
                raise self._cut
            if self._eof or self._lost:
                raise IncompleteBody()
            await self._wait()
        if self._cut is not None:
            raise self._cut
        if len(self._buf) <= limit:
            data = bytes(self._buf)
            self._buf.clear()
        else:
            data = bytes(self._buf[:limit])
            del self._buf[:limit]
        self._consumed()
        return data

    def unread(self, data: bytes) -> None:
        self._buf[:0] = data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def begin_body(self) -> None:
        self.phase, self.since, self._mark = BODY, self.loop.time(), self.received

    def begin_response(self) -> None:
        self.phase, self.since, self._mark = BUSY, self.loop.time(), self.written

    def begin_drain(self) -> None:
        self.phase, self.since, self._mark = DRAIN, self.loop.time(), self.received

    def trust(self) -> None:
        """A request on this connection showed a valid signature: no longer a stranger."""
        if not self.trusted:
            self.trusted = True
            self.listener.trust(self)

    # -- output ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._lost or self.transport is None:
            raise ConnectionCut()
        self.transport.write(data)
        self.written += len(data)

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionCut()
        if not self._write_paused:
            return
        phase, self.phase = self.phase, WRITE
        self._drain = self.loop.create_future()
        try:
            await self._drain
        finally:
            self._drain = None
            self.phase = phase

    def close(self, *, linger: bool = False) -> None:
        """Close; with ``linger``, half-close first and drop input for a while, so a client
        still sending a body reads our answer instead of a reset."""
        transport = self.transport
        if transport is None or self._lost or transport.is_closing() or self.phase == LINGER:
            return
        if linger and not self._eof and transport.can_write_eof():
            self.phase, self.since = LINGER, self.loop.time()
            self._buf.clear()
            if self._reading_paused:
                self._reading_paused = False
                transport.resume_reading()
            transport.write_eof()
            return
        transport.close()

    def abort(self) -> None:
        """Close at once (eviction, deadline, shutdown), at whatever stage the connection is."""
        self._dead = True
        self.listener.forget(self)
        if self.transport is not None:
            if not self._lost:
                self.transport.abort()
        elif self.opening is not None:
            self.opening.cancel()
        if not self._adopted:
            self.sock.close()

    # -- deadlines -------------------------------------------------------------------------

    def check(self, now: float) -> None:
        """Called by the listener's sweep: cut this connection if its phase ran out of time."""
        phase, elapsed, limits = self.phase, now - self.since, self.limits
        if phase == IDLE:
            if elapsed > self.idle_limit:
                self.abort()
        elif phase == HEAD:
            if elapsed > limits.header_timeout:
                self.abort()
        elif phase == BODY:
            got = self.received - self._mark
            if elapsed > limits.body_grace and got < limits.body_min_rate * elapsed:
                self._cut = RequestTimeout()
                self._wake()
        elif phase == WRITE:
            size = self.transport.get_write_buffer_size() if self.transport else 0
            sent = self.written - size - self._mark
            if elapsed > limits.body_grace and sent < limits.body_min_rate * elapsed:
                self.abort()
        elif phase == DRAIN:
            got = self.received - self._mark
            if elapsed > DRAIN_GRACE and got < limits.body_min_rate * elapsed:
                self._cut = RequestTimeout()
                self._wake()
        elif phase == LINGER and elapsed > LINGER_SECONDS:
            self.abort()
