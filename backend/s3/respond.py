"""Answers going out: S3 error documents (rendered here and nowhere else), responses written
with backpressure, and the access-log line of each request.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from backend.errors import S3Error
from backend.http import accesslog, wire
from backend.http.connection import Connection, ConnectionCut
from backend.http.message import Response
from backend.s3 import xmlio

if TYPE_CHECKING:
    from backend.s3.dispatch import Dispatcher

Logger = Callable[[str], None]
SMALL_WRITE = 64 * 1024  # bodies up to this size go out in one send with their head


def render_error(err: S3Error, *, resource: str, request_id: str) -> Response:
    """The one place an S3Error becomes an HTTP response."""
    extra = dict(err.extra)
    extra.setdefault("Resource", resource)
    extra["RequestId"] = request_id
    body = xmlio.error_document(err.code, err.message, extra)
    return Response(err.status, {"Content-Type": "application/xml", **err.headers}, body)


class Exchange:
    """What the log line needs to know about one request, filled in as it goes."""

    __slots__ = ("agent", "body", "method", "op", "started", "target", "who")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.method = "-"
        self.target = ""
        self.op = "-"
        self.who = "-"
        self.agent = "-"
        self.body = 0  # the handler's body state


class Responder:
    def __init__(self, dispatcher: Dispatcher, log: Logger | None) -> None:
        self.dispatcher = dispatcher
        self.log = log

    async def answer(
        self, conn: Connection, ex: Exchange, resp: Response, *, keep: bool, head_only: bool
    ) -> None:
        if not keep:
            resp.headers["Connection"] = "close"
        conn.begin_response()
        try:
            await self._write(conn, resp, head_only=head_only)
        finally:
            self.log_line(conn, ex, resp.status)

    async def _write(self, conn: Connection, resp: Response, *, head_only: bool) -> None:
        status, headers = resp.status, resp.headers
        if status not in (204, 304) and "Content-Length" not in headers:
            headers["Content-Length"] = str(0 if head_only else len(resp.body))
        if head_only and status >= 300:
            headers["Content-Length"] = "0"
        head = wire.response_head(status, headers)
        if head_only or status in (204, 304):
            conn.write(head)
        elif resp.stream is None:
            body = resp.body
            if len(body) <= SMALL_WRITE:
                conn.write(head + body)
            else:
                conn.write(head)
                conn.write(body)
        else:
            conn.write(head)
            await self._stream(conn, iter(resp.stream))
        await conn.drain()

    async def _stream(self, conn: Connection, chunks: Iterator[bytes]) -> None:
        """Chunk by chunk, read on the pool, written with backpressure. A failure mid-way cuts
        the connection: the client sees a short body, never a wrong one."""
        call = self.dispatcher.call
        try:
            while (chunk := await call(next, chunks, None)) is not None:
                conn.write(chunk)
                await conn.drain()
        except ConnectionCut:
            raise
        except Exception:
            if self.log:
                self.log("response stream failed: " + traceback.format_exc().strip())
            conn.abort()
            raise ConnectionCut() from None
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                await call(close)

    def log_line(self, conn: Connection, ex: Exchange, status: int) -> None:
        if self.log is None:
            return
        ms = (time.perf_counter() - ex.started) * 1000
        self.log(
            accesslog.line(
                client=conn.peer,
                method=ex.method,
                target=ex.target,
                status=status,
                ms=ms,
                op=ex.op,
                who=ex.who,
                user_agent=ex.agent,
            )
        )
