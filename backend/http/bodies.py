"""Request bodies, streamed: Content-Length or HTTP chunked framing, optionally aws-chunked
content inside, decoded on the fly into a ``PayloadSink``.

Nothing here holds a body whole: bytes go from the connection's buffer through the decoders into
the sink (memory up to its limit, then a spool file). A decoded body growing past its limit is
cut at once. aws-chunked and HTTP chunked share one framing (``<hex>[;ext]\\r\\n<data>\\r\\n``,
a zero chunk, trailer lines, a blank line); only unsigned aws-chunked is accepted, since signed
chunks would need a chain of per-chunk HMACs that no client we serve sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from backend.errors import EntityTooLarge, IncompleteBody, InvalidRequest

MAX_CHUNK_LINE = 4096
MAX_TRAILERS = 8
MAX_HTTP_TRAILERS = 32
_HEX = frozenset(b"0123456789abcdefABCDEF")

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class BodySource(Protocol):
    """What the body reader needs from a connection."""

    async def take(self, limit: int) -> bytes:
        """Up to ``limit`` buffered bytes (waits for some); raises if the peer is gone."""
        ...

    def unread(self, data: bytes) -> None:
        """Give back bytes that belong to the next request."""
        ...


class ChunkDecoder:
    """Chunked framing decoder; ``aws`` selects aws-chunked trailers and refusals."""

    def __init__(self, out: Callable[[bytes], None], *, limit: int, aws: bool) -> None:
        self._out = out
        self._limit = limit
        self._aws = aws
        self._state = _SIZE
        self._line = bytearray()
        self._left = 0
        self.size = 0  # decoded bytes so far
        self.trailers: dict[str, str] = {}
        self._trailer_lines = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def _fail(self, what: str) -> IncompleteBody:
        kind = "aws-chunked body" if self._aws else "chunked transfer coding"
        return IncompleteBody(f"malformed {kind}: {what}")

    def feed(self, data: bytes) -> int:
        """Decode what can be; return how many bytes of ``data`` belong to this body."""
        pos, end = 0, len(data)
        while pos < end and self._state != _DONE:
            if self._state == _DATA:
                n = min(self._left, end - pos)
                self._out(data if n == end and not pos else data[pos : pos + n])
                self._left -= n
                pos += n
                if not self._left:
                    self._state = _DATA_END
                continue
            nl = data.find(b"\n", pos)
            stop = end if nl < 0 else nl + 1
            self._line += data[pos:stop]
            pos = stop
            if len(self._line) > MAX_CHUNK_LINE:
                raise self._fail("line too long")
            if nl < 0:
                break
            line = bytes(self._line)
            self._line.clear()
            if not line.endswith(b"\r\n"):
                raise self._fail("line without CRLF")
            self._line_done(line[:-2])
        return pos

    def _line_done(self, line: bytes) -> None:
        if self._state == _DATA_END:
            if line:
                raise self._fail("chunk longer than announced")
            self._state = _SIZE
        elif self._state == _SIZE:
            self._size_line(line)
        else:
            self._trailer(line)

    def _size_line(self, line: bytes) -> None:
        size_text, _, ext = line.partition(b";")  # hex digits only: no sign, space or "0x"
        if self._aws and b"chunk-signature" in ext:
            raise InvalidRequest("signed aws-chunked payloads are not supported; send unsigned")
        if not size_text or len(size_text) > 16 or not _HEX.issuperset(size_text):
            raise self._fail("bad chunk size")
        size = int(size_text, 16)
        if self.size + size > self._limit:
            raise EntityTooLarge()
        if size == 0:
            self._state = _TRAILER
            return
        self.size += size
        self._left = size
        self._state = _DATA

    def _trailer(self, line: bytes) -> None:
        if not line:
            self._state = _DONE
            return
        self._trailer_lines += 1
        if not self._aws:  # HTTP trailers carry nothing we use
            if self._trailer_lines > MAX_HTTP_TRAILERS:
                raise self._fail("too many trailers")
            return
        name, sep, value = line.partition(b":")
        if not sep or not name.strip() or len(self.trailers) >= MAX_TRAILERS:
            raise self._fail("malformed trailer")
        try:
            self.trailers[name.decode("ascii").strip().lower()] = value.decode("ascii").strip()
        except UnicodeDecodeError:
            raise self._fail("malformed trailer") from None

    def end_of_input(self) -> None:
        """The enclosing framing ended here: the body must be complete (a final blank line
        after the trailers may be missing, as some clients send it)."""
        if self._state == _TRAILER and self._line:
            line = bytes(self._line)
            self._line.clear()
            self._trailer(line[:-2] if line.endswith(b"\r\n") else line.rstrip(b"\r"))
        if self._state not in (_TRAILER, _DONE):
            raise self._fail("body ends inside a chunk")
        self._state = _DONE


async def receive(
    source: BodySource,
    *,
    content_length: int | None,
    http_chunked: bool,
    aws_chunked: bool,
    write: Callable[[bytes], None],
    limit: int,
) -> dict[str, str]:
    """Read one body into ``write``; return aws-chunked trailers (lower-case names).

    ``limit`` bounds the decoded size; raw framing is bounded by the caller's Content-Length
    check, or here by the decoded size for chunked framing.
    """
    aws = ChunkDecoder(write, limit=limit, aws=True) if aws_chunked else None
    sink = _feeder(aws) if aws is not None else write
    if http_chunked:
        raw_limit = limit + aws_framing_allowance(limit) if aws is not None else limit
        outer = ChunkDecoder(sink, limit=raw_limit, aws=False)
        while not outer.done:
            data = await source.take(1 << 20)
            used = outer.feed(data)
            if used < len(data):
                source.unread(data[used:])
    else:
        left = content_length or 0
        while left:
            data = await source.take(min(left, 1 << 20))
            left -= len(data)
            sink(data)
    if aws is not None:
        aws.end_of_input()
        return aws.trailers
    return {}


def _feeder(decoder: ChunkDecoder) -> Callable[[bytes], None]:
    """aws-chunked content inside other framing: every byte must belong to the body."""

    def feed(data: bytes) -> None:
        if decoder.feed(data) != len(data):
            raise IncompleteBody("malformed aws-chunked body: data after the final chunk")

    return feed


def aws_framing_allowance(limit: int) -> int:
    """Room for aws-chunked framing on top of a decoded limit (chunk lines and trailers)."""
    return limit // 64 + 64 * 1024
