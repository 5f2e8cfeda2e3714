"""HTTP/1.1 on the wire: the request head parsed strictly, the request target checked, and
response heads serialized.

Strict on purpose: whatever the router reads must be exactly what the signature covers, so a
request target is plain RFC 3986 (no ``#``, no raw bytes outside pchar/query, no broken ``%``
escapes), header framing is unambiguous (one Content-Length of ASCII digits, never with
Transfer-Encoding) and the head has no obs-fold, NUL or bare CR/LF. Every refusal is an S3Error.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import unquote

from backend.errors import (
    HeaderTooLarge,
    InvalidArgument,
    InvalidRequest,
    KeyTooLongError,
    MethodNotAllowed,
)
from backend.http.message import Headers

MAX_HEAD_BYTES = 16 * 1024  # request line and headers together
MAX_HEADERS = 100
MAX_QUERY_PARAMS = 64
MAX_KEY_BYTES = 1024
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})
_OTHER_METHODS = frozenset({"PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "MKCOL"})

_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_PATH_CHARS = _ALNUM + b"-._~!$&'()*+,;=:@/%"  # pchar and "/" (RFC 3986 section 3.3)
_QUERY_CHARS = _PATH_CHARS + b"?"  # query (section 3.4)
_TOKEN_CHARS = _ALNUM + b"!#$%&'*+-.^_`|~"  # RFC 9110 tchar
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# Control characters other than HTAB (CR and LF are checked separately, as line ends).
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(slots=True)
class RequestHead:
    """One parsed request head; the body, if any, is still on the connection."""

    method: str
    target: str  # raw, as sent (ASCII)
    path: str  # raw path part of the target
    query: str  # raw query part (without "?")
    headers: Headers
    content_length: int | None
    chunked: bool
    keep_alive: bool
    expect_continue: bool


def parse_head(raw: bytes) -> RequestHead:
    """Parse a request head (without its final blank line); raise an S3Error if malformed.

    A malformed head leaves the body's framing unknown, so the caller must close afterwards.
    """
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:
        raise InvalidRequest("bare CR or LF in the request head")
    if _CONTROL.search(raw):
        raise InvalidRequest("control characters in the request head")
    lines = raw.split(b"\r\n")
    if len(lines) > MAX_HEADERS + 1:
        raise HeaderTooLarge()
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise InvalidRequest("malformed request line")
    method_b, target_b, version = parts
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        raise InvalidRequest("only HTTP/1.1 and HTTP/1.0 are served")
    method = method_b.decode("latin-1")
    if method not in METHODS:
        if method in _OTHER_METHODS:
            raise MethodNotAllowed()
        raise InvalidRequest("unknown method")
    headers = Headers()
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name.translate(None, _TOKEN_CHARS):
            # also catches obs-fold (a line starting with a space) and names with spaces
            raise InvalidRequest("malformed header line")
        headers.add(name.decode("latin-1"), value.strip(b" \t").decode("latin-1"))
    if headers.count("host") > 1:
        raise InvalidRequest("more than one Host header")
    content_length = _content_length(headers)
    chunked = False
    if "transfer-encoding" in headers:
        if content_length is not None:
            raise InvalidRequest("Content-Length and Transfer-Encoding together")
        values = headers.get_all("transfer-encoding") or []
        if len(values) != 1 or values[0].lower() != "chunked":
            raise InvalidRequest("unsupported Transfer-Encoding (only chunked)")
        chunked = True
    decoded = headers.get_all("x-amz-decoded-content-length")
    if decoded is not None and (len(decoded) != 1 or not _is_digits(decoded[0])):
        raise InvalidArgument("x-amz-decoded-content-length must be one non-negative integer")
    connection = (headers.get("connection") or "").lower()
    keep_alive = version == b"HTTP/1.1" and "close" not in connection
    expect = headers.get("expect")
    target = target_b.decode("latin-1")
    path, _, query = target.partition("?")
    return RequestHead(
        method=method,
        target=target,
        path=path,
        query=query,
        headers=headers,
        content_length=content_length,
        chunked=chunked,
        keep_alive=keep_alive,
        expect_continue=expect is not None and expect.lower() == "100-continue",
    )


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 20


def _content_length(headers: Headers) -> int | None:
    values = headers.get_all("content-length")
    if values is None:
        return None
    if len(values) != 1:
        raise InvalidRequest("more than one Content-Length header")
    if not _is_digits(values[0]):
        raise InvalidArgument("Content-Length must be a non-negative integer")
    return int(values[0])


# -- the request target ---------------------------------------------------------------------------


def check_target(head: RequestHead) -> None:
    """Refuse any target the signature and the router could read differently."""
    target = head.target
    if not target.startswith("/"):
        raise InvalidRequest("the request target must be an absolute path")
    raw = target.encode("latin-1")
    path, _, query = raw.partition(b"?")
    if b"#" in raw:
        raise InvalidRequest("'#' is not allowed in a request target: percent-encode it")
    if path.translate(None, _PATH_CHARS) or query.translate(None, _QUERY_CHARS):
        raise InvalidRequest("the request target has characters RFC 3986 does not allow")
    if b"%" in raw and _BAD_ESCAPE.search(raw):
        raise InvalidRequest("malformed percent-escape in the request target")


def parse_query(qs: str) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs; a name given twice is refused (the router takes one)."""
    pairs: list[tuple[str, str]] = []
    if not qs:
        return pairs
    seen: set[str] = set()
    for piece in qs.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        try:
            name = unquote(name, errors="strict")
            value = unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise InvalidArgument("query string is not valid UTF-8") from None
        if name in seen:
            raise InvalidArgument(f"query parameter {name!r} is given more than once")
        seen.add(name)
        pairs.append((name, value))
        if len(pairs) > MAX_QUERY_PARAMS:
            raise InvalidArgument("too many query parameters")
    return pairs


_KEY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_BUCKET = re.compile(r"[\x00-\x20/]")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:/|$)")


def check_key(key: str) -> str:
    if len(key) > MAX_KEY_BYTES // 4 and len(key.encode()) > MAX_KEY_BYTES:
        raise KeyTooLongError()
    if _KEY_CONTROL.search(key):
        raise InvalidArgument("object keys may not contain control characters")
    if "." in key and _DOT_SEGMENT.search(key):
        raise InvalidArgument("object keys may not contain '.' or '..' path segments")
    return key


def split_path(path: str) -> tuple[str, str]:
    """Path-style addressing: ``/bucket/key``; both parts percent-decoded exactly once."""
    if not path.startswith("/"):
        raise InvalidRequest("request target must be an absolute path")
    bucket_raw, _, key_raw = path[1:].partition("/")
    try:
        bucket = unquote(bucket_raw, errors="strict")
        key = unquote(key_raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument("path is not valid UTF-8") from None
    if len(bucket) > 255 or _BAD_BUCKET.search(bucket):
        raise InvalidArgument("invalid bucket name in path")
    if not bucket and key:
        raise InvalidArgument("an object key needs a bucket name")
    return bucket, (check_key(key) if key else "")


def display_path(path: str) -> str:
    """The decoded path for log lines (the raw one if it does not decode)."""
    if "%" not in path:
        return path
    try:
        return unquote(path, errors="strict")
    except UnicodeDecodeError:
        return path


# -- responses -------------------------------------------------------------------------------------

REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """RFC 9110 IMF-fixdate of now, formatted once per second (locale-independent)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        t = time.gmtime(now)
        text = (
            f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
        )
        _date_cache = (now, text)
    return _date_cache[1]


def response_head(status: int, headers: dict[str, str]) -> bytes:
    """Status line and headers, ready to send; values never carry CR or LF."""
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        f"Date: {http_date()}\r\nServer: forkstage-state\r\n"
    ]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            value = value.replace("\r", " ").replace("\n", " ")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1", "replace")


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
