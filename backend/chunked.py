"""Decoding of ``Content-Encoding: aws-chunked`` bodies (what SDKs send over HTTPS).

The body is ``<hex-size>\\r\\n<data>\\r\\n`` repeated, a zero-size chunk, then trailing headers
such as ``x-amz-checksum-sha256:<b64>`` and a blank line. Only the unsigned variants are accepted:
signed chunks would need a chain of per-chunk HMACs, which no client we serve sends.
"""

from __future__ import annotations

from backend.errors import IncompleteBody, InvalidRequest

MAX_TRAILERS = 8


def decode(raw: bytes, *, decoded_length: int | None) -> tuple[bytes, dict[str, str]]:
    """Return the payload and the trailing headers (lower-case names)."""
    out = bytearray()
    pos = 0
    end = len(raw)
    while True:
        nl = raw.find(b"\r\n", pos, min(end, pos + 256))
        if nl < 0:
            raise IncompleteBody("aws-chunked body: missing chunk header")
        header = raw[pos:nl]
        size_text = header.split(b";", 1)[0].strip()
        if b"chunk-signature" in header:
            raise InvalidRequest("signed aws-chunked payloads are not supported; send unsigned")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise IncompleteBody("aws-chunked body: bad chunk size") from None
        if size < 0:
            raise IncompleteBody("aws-chunked body: bad chunk size")
        pos = nl + 2
        if size == 0:
            break
        if pos + size + 2 > end or raw[pos + size : pos + size + 2] != b"\r\n":
            raise IncompleteBody("aws-chunked body: chunk shorter than announced")
        out += raw[pos : pos + size]
        pos += size + 2
    trailers: dict[str, str] = {}
    while pos < end:
        nl = raw.find(b"\r\n", pos)
        if nl < 0:
            nl = end
        line = raw[pos:nl]
        pos = nl + 2
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or len(trailers) >= MAX_TRAILERS:
            raise IncompleteBody("aws-chunked body: malformed trailer")
        try:
            trailers[name.decode("ascii").strip().lower()] = value.decode("ascii").strip()
        except UnicodeDecodeError:
            raise IncompleteBody("aws-chunked body: malformed trailer") from None
    if decoded_length is not None and decoded_length != len(out):
        raise IncompleteBody("aws-chunked body: x-amz-decoded-content-length does not match")
    return bytes(out), trailers
