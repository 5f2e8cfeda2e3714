"""The HTTP side of the state server: parse, authenticate, authorize, read the body, dispatch.

A stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 keep-alive: no framework, so a request costs
little more than its SQLite transaction. Every refusal is an ``S3Error`` and is turned into S3's
XML error document in ``render_error`` — the only place errors become responses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import http.client
import os
import secrets
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from backend import chunked, credentials, policy, sigv4, xmlio
from backend.errors import (
    AccessDenied,
    ContentSHA256Mismatch,
    EntityTooLarge,
    HeaderTooLarge,
    IncompleteBody,
    InsufficientStorage,
    InternalError,
    InvalidArgument,
    InvalidRequest,
    KeyTooLongError,
    MethodNotAllowed,
    MissingContentLength,
    S3Error,
)
from backend.limits import DEFAULT_LIMITS, Limits
from backend.operations import OPERATIONS, PAYLOAD_OPS, route
from backend.s3types import EMPTY, Headers, PayloadSink, Quota, Response, S3Request
from backend.store import Store

DEFAULT_BUCKET = "forkstage-state"
MAX_HEADER_BYTES = 16 * 1024
MAX_OBJECT_BYTES = 512 * 1024 * 1024
MAX_SMALL_BODY = 2 * 1024 * 1024  # XML bodies (CompleteMultipartUpload, CreateBucket)
MAX_QUERY_PARAMS = 64
MAX_DRAIN = 8 * 1024 * 1024  # unread request bodies up to this size are drained, not reset
MAX_KEY_BYTES = 1024
_SMALL_BODY_OPS = {"CompleteMultipartUpload", "CreateBucket"}

Logger = Callable[[str], None]


def render_error(err: S3Error, *, resource: str, request_id: str) -> Response:
    """The one place an S3Error becomes an HTTP response."""
    extra = dict(err.extra)
    extra.setdefault("Resource", resource)
    extra["RequestId"] = request_id
    body = xmlio.error_document(err.code, err.message, extra)
    headers = {"Content-Type": "application/xml", **err.headers}
    return Response(err.status, headers, body)


def parse_query(qs: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    if not qs:
        return pairs
    for piece in qs.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        try:
            pairs.append((unquote(name, errors="strict"), unquote(value, errors="strict")))
        except UnicodeDecodeError:
            raise InvalidArgument("query string is not valid UTF-8") from None
        if len(pairs) > MAX_QUERY_PARAMS:
            raise InvalidArgument("too many query parameters")
    return pairs


def _check_key(key: str) -> str:
    if len(key.encode()) > MAX_KEY_BYTES:
        raise KeyTooLongError()
    if any(ord(c) < 0x20 or c == "\x7f" for c in key):
        raise InvalidArgument("object keys may not contain control characters")
    if any(seg in (".", "..") for seg in key.split("/")):
        raise InvalidArgument("object keys may not contain '.' or '..' path segments")
    return key


def split_path(path: str) -> tuple[str, str]:
    """Path-style addressing: ``/bucket/key``; both parts percent-decoded."""
    if not path.startswith("/"):
        raise InvalidRequest("request target must be an absolute path")
    bucket_raw, _, key_raw = path[1:].partition("/")
    try:
        bucket = unquote(bucket_raw, errors="strict")
        key = unquote(key_raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument("path is not valid UTF-8") from None
    if "/" in bucket or any(ord(c) < 0x21 for c in bucket) or len(bucket) > 255:
        raise InvalidArgument("invalid bucket name in path")
    return bucket, (_check_key(key) if key else "")


class StateServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

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
        request_timeout: float,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(address, _Handler)
        self.limits = limits
        self.store = store
        self.book = book
        self.data_dir = data_dir
        self.log = log
        self.request_timeout = request_timeout
        self._lock_fd = lock_fd
        self._closed = False
        self.tls = tls is not None
        if tls is not None:
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    @property
    def credentials_file(self) -> Path:
        return credentials.path_for(self.data_dir)

    def server_close(self) -> None:
        super().server_close()
        if not self._closed:
            self._closed = True
            self.store.close()
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Connection-level failures (TLS handshakes from port scanners, resets) are routine.
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError, EOFError)):
            return
        if self.log:
            self.log("internal error: " + "".join(traceback.format_exception(exc)).strip())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "forkstage-state"
    sys_version = ""
    disable_nagle_algorithm = True
    server: StateServer
    _expect = False

    def setup(self) -> None:
        self.request.settimeout(self.server.request_timeout)
        super().setup()

    # http.server hooks ------------------------------------------------------------------------

    def handle_expect_100(self) -> bool:
        # Answer 100 Continue only once the request is authenticated and its size accepted.
        self._expect = True
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Protocol-level rejections from http.server (bad request line, header limits,
        # unknown methods) still get an S3-shaped body and never a 5xx.
        err: S3Error
        if code in (501, 405):
            err = MethodNotAllowed()
        elif code == 431 or code == 414:
            err = HeaderTooLarge()
        else:
            err = InvalidRequest(message or "bad request")
        self.close_connection = True
        resp = render_error(err, resource="", request_id=secrets.token_hex(8))
        resp.headers["Connection"] = "close"
        with contextlib.suppress(OSError):
            self._write(resp, head_only=getattr(self, "command", "") == "HEAD")
        self._log_line(getattr(self, "command", "-") or "-", "-", resp.status, 0.0, "-", "-")

    def log_message(self, format: str, *args: Any) -> None:
        return  # our own one line per request is written in _log_line

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    # request handling --------------------------------------------------------------------

    def _serve(self) -> None:
        started = time.perf_counter()
        self._body_unread = True
        self._who = "-"
        self._op = "-"
        request_id = secrets.token_hex(8)
        path = self.path.partition("?")[0]
        try:
            resp = self._handle()
        except S3Error as err:
            resp = render_error(err, resource=path, request_id=request_id)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            self.close_connection = True
            self._log_line(self.command, path, 0, started, self._who, self._op)
            return
        except Exception:  # a bug: answer 500, keep serving, say where in the log
            if self.server.log:
                self.server.log("internal error: " + traceback.format_exc().strip())
            resp = render_error(InternalError(), resource=path, request_id=request_id)
        finally:
            self._expect = False
        resp.headers["x-amz-request-id"] = request_id
        if self._body_unread:
            self._discard_body()
        if self.close_connection:
            resp.headers["Connection"] = "close"
        with contextlib.suppress(OSError):
            self._write(resp, head_only=self.command == "HEAD")
        self._log_line(self.command, path, resp.status, started, self._who, self._op)

    def _declared_length(self) -> int:
        try:
            return int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return -1

    def _handle(self) -> Response:
        size = sum(len(k) + len(v) + 4 for k, v in self.headers.items())
        if size > MAX_HEADER_BYTES:
            raise HeaderTooLarge()
        path, _, qs = self.path.partition("?")
        query = parse_query(qs)
        params: dict[str, str] = {}
        for name, value in query:
            params.setdefault(name, value)
        bucket, key = split_path(path)
        headers = Headers(self.headers.items())
        unroutable: S3Error | None = None
        try:
            op = route(self.command, bucket, key, params, headers)
        except S3Error as exc:
            op, unroutable = "", exc  # still authenticate first: strangers only ever see 403
        self._op = op or "-"
        verified = sigv4.verify(
            method=self.command,
            raw_path=path,
            query=query,
            headers=self.headers,
            lookup=self.server.book.lookup,
        )
        cred = verified.credential
        self._who = cred.describe()
        if unroutable is not None:
            raise unroutable
        try:
            access = policy.decide(
                cred,
                op,
                key=key or None,
                prefix=params.get("prefix", ""),
                version_delete=op == "DeleteObject" and bool(params.get("versionId")),
            )
        except AccessDenied:
            # Keys are listable by every credential (workspace discovery), so saying that a key
            # does not exist leaks nothing; it lets `terraform init` probe the default workspace.
            if op in ("GetObject", "HeadObject") and not params.get("versionId"):
                self.server.store.head(bucket, key)
            raise
        body, trailers = self._read_body(op, verified.content_sha256)
        limits = self.server.limits
        payload = EMPTY
        if body or trailers:
            sink = PayloadSink(self.server.store.spool_dir, memory_limit=limits.memory_body_bytes)
            try:
                for start in range(0, len(body), 1 << 20):
                    sink.write(body[start : start + (1 << 20)])
            except OSError as exc:
                sink.abort()
                if exc.errno == errno.ENOSPC:
                    raise InsufficientStorage() from None
                raise
            payload = sink.finish(trailers)
        quota = None
        if cred.policy == "stage" and cred.stage:
            quota = Quota(
                policy.workspace_prefix(cred.stage), limits.stage_max_keys, limits.stage_max_bytes
            )
        request = S3Request(
            op=op,
            method=self.command,
            bucket=bucket,
            key=key,
            params=params,
            headers=headers,
            payload=payload,
            access=access,
            store=self.server.store,
            limits=limits,
            quota=quota,
            credential=self._who,
            cred=cred,
        )
        try:
            return OPERATIONS[op](request)
        finally:
            payload.discard()

    def _read_body(self, op: str, content_sha256: str) -> tuple[bytes, dict[str, str]]:
        if op in PAYLOAD_OPS:
            limit = self.server.limits.max_object_bytes + 64 * 1024  # aws-chunked framing
        else:
            limit = MAX_SMALL_BODY if op in _SMALL_BODY_OPS else 64 * 1024
        transfer = self.headers.get("Transfer-Encoding", "").strip().lower()
        declared = self.headers.get("Content-Length")
        if transfer:
            if transfer != "chunked" or declared is not None:
                raise InvalidRequest("unsupported Transfer-Encoding")
            self._continue()
            raw = self._read_chunked(limit)
        else:
            if declared is None:
                if op in PAYLOAD_OPS:
                    raise MissingContentLength()
                length = 0
            else:
                if not declared.strip().isdigit():
                    raise InvalidArgument("Content-Length must be a non-negative integer")
                length = int(declared)
            if length > limit:
                if op in PAYLOAD_OPS:
                    raise EntityTooLarge()
                raise InvalidRequest("request body too large for this operation")
            self._continue()
            raw = self.rfile.read(length) if length else b""
            if len(raw) != length:
                self.close_connection = True
                raise IncompleteBody()
        self._body_unread = False
        if op not in PAYLOAD_OPS and op not in _SMALL_BODY_OPS:
            return b"", {}
        encodings = [e.strip().lower() for e in self.headers.get("Content-Encoding", "").split(",")]
        if "aws-chunked" in encodings or content_sha256.startswith("STREAMING-"):
            if content_sha256 not in sigv4.PAYLOAD_MARKERS:
                raise InvalidRequest("only unsigned aws-chunked payloads are supported")
            decoded_text = self.headers.get("x-amz-decoded-content-length")
            decoded_len = int(decoded_text) if decoded_text and decoded_text.isdigit() else None
            return chunked.decode(raw, decoded_length=decoded_len)
        if content_sha256 not in sigv4.PAYLOAD_MARKERS and (
            hashlib.sha256(raw).hexdigest() != content_sha256
        ):
            raise ContentSHA256Mismatch()
        return raw, {}

    def _discard_body(self) -> None:
        """After an early refusal: drain a modest body to keep the connection, else close it.

        Clients that did not wait for 100 Continue are still sending; closing on unread data
        makes the kernel reset the connection, and the client may never see our answer.
        """
        length = self._declared_length()
        if length == 0 and "Transfer-Encoding" not in self.headers:
            return
        if self._expect or length < 0 or length > MAX_DRAIN or "Transfer-Encoding" in self.headers:
            self.close_connection = True
            return
        with contextlib.suppress(OSError):
            while length > 0:
                got = self.rfile.read(min(length, 1 << 20))
                if not got:
                    break
                length -= len(got)
        if length:
            self.close_connection = True

    def _continue(self) -> None:
        if self._expect:
            self._expect = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_chunked(self, limit: int) -> bytes:
        """HTTP/1.1 chunked transfer coding (botocore uses it for streamed uploads)."""
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                self.close_connection = True
                raise IncompleteBody("malformed chunked transfer coding")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise IncompleteBody("malformed chunked transfer coding") from None
            if size < 0 or len(out) + size > limit:
                self.close_connection = True
                raise EntityTooLarge()
            if size == 0:
                break
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.read(2) != b"\r\n":
                self.close_connection = True
                raise IncompleteBody()
            out += chunk
        for _ in range(32):  # trailer section, ends with an empty line
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n"):
                return bytes(out)
            if not line:
                break
        self.close_connection = True
        raise IncompleteBody("malformed chunked trailer")

    # output ------------------------------------------------------------------------------

    def _write(self, resp: Response, *, head_only: bool) -> None:
        reason = http.client.responses.get(resp.status, "")
        lines = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Date: {self.date_time_string()}",
            "Server: forkstage-state",
        ]
        headers = resp.headers
        if resp.status not in (204, 304) and "Content-Length" not in headers:
            headers["Content-Length"] = str(0 if head_only else len(resp.body))
        if head_only and resp.status >= 300:
            headers["Content-Length"] = "0"
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        if resp.stream is not None and not head_only:
            self.wfile.write(head)
            try:
                for chunk in resp.stream:
                    self.wfile.write(chunk)
            except S3Error:
                self.close_connection = True  # cut short: the client sees a truncated body
            return
        self.wfile.write(head if head_only else head + resp.body)

    def _log_line(
        self, method: str, path: str, status: int, started: float, who: str, op: str
    ) -> None:
        if not self.server.log:
            return
        ms = (time.perf_counter() - started) * 1000 if started else 0.0
        client = self.client_address[0] if self.client_address else "-"
        self.server.log(f"{client} {method} {unquote(path)} {status} {ms:.1f}ms {op} {who}")


def _tls_context(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise ValueError("TLS needs both a certificate and a key file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(certfile), str(keyfile))
    return ctx


class ServerBusy(RuntimeError):
    """Another state server already serves this data directory."""


def make_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    data_dir: Path,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    bucket: str = DEFAULT_BUCKET,
    limits: Limits = DEFAULT_LIMITS,
    retain: int | None = None,
    log: Logger | None = None,
    request_timeout: float = 60.0,
) -> StateServer:
    """A ready-to-serve state server (call ``serve_forever()``; ``shutdown()`` to stop)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(data_dir, 0o700)
    tls = _tls_context(certfile, keyfile)
    lock_fd = os.open(data_dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise ServerBusy(f"another state server is already using {data_dir}") from None
    try:
        credentials.ensure_admin(data_dir)
        if retain is not None:
            limits = dataclasses.replace(limits, retain_versions=retain)
        store = Store(data_dir, limits=limits)
        store.create_bucket(bucket, exist_ok=True)
        server = StateServer(
            (host, port),
            store=store,
            book=credentials.CredentialBook(data_dir),
            data_dir=data_dir,
            lock_fd=lock_fd,
            tls=tls,
            log=log,
            request_timeout=request_timeout,
            limits=limits,
        )
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(lock_fd)
        raise
    return server


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


__all__ = ["DEFAULT_BUCKET", "ServerBusy", "StateServer", "make_server", "render_error"]
