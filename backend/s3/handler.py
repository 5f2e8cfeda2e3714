"""One request, start to finish: parse, authenticate, authorize, read the body, dispatch, answer.

Every refusal is an ``S3Error`` and becomes S3's XML error document in ``render_error`` - the
only place errors become responses. Refusals come before the body is read (a client that sent
``Expect: 100-continue`` is told to go on only once it is authenticated, authorized and its size
accepted). A refused request is answered at once, without waiting for its body; the body is
then drained (keep-alive) only while it arrives at the minimum rate, in a phase the listener may
evict, and the connection is closed otherwise. A stage credential has at most
``max_requests_per_credential`` requests in flight (503 SlowDown beyond); admin has no cap.

Where operations run (inline or on the pool) is ``backend.s3.dispatch``'s decision; signature
checks run inline on the loop (CPU only). Answers go out through ``backend.s3.respond``.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import traceback
from collections.abc import Callable

from backend.errors import (
    AccessDenied,
    ContentSHA256Mismatch,
    EntityTooLarge,
    IncompleteBody,
    InsufficientStorage,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    MissingContentLength,
    NoSuchKey,
    S3Error,
    SlowDown,
)
from backend.http import accesslog, bodies, wire
from backend.http.connection import BUSY, Connection, ConnectionCut
from backend.http.message import Response
from backend.limits import Limits
from backend.payload import EMPTY, Payload, PayloadSink
from backend.s3 import policy, sigv4
from backend.s3.credentials import Credential, CredentialBook
from backend.s3.dispatch import DEFAULT_WORKERS, Dispatcher
from backend.s3.operations import PAYLOAD_OPS, route
from backend.s3.request import S3Request
from backend.s3.respond import Exchange, Responder, render_error
from backend.store import diskspace
from backend.store.quota import Quota
from backend.store.store import Store

Logger = Callable[[str], None]

HEALTH_PATH = "/-/health"  # bucket names cannot start with "-"
MAX_SMALL_BODY = 2 * 1024 * 1024  # XML bodies (CompleteMultipartUpload, CreateBucket)
MAX_OTHER_BODY = 64 * 1024  # bodies of other operations are read and dropped
MAX_DRAIN = 8 * 1024 * 1024  # unread bodies up to this size are drained, not cut
SMALL_BODY_OPS = frozenset(
    {"CompleteMultipartUpload", "CreateBucket", "DeleteObjects", "PutBucketVersioning"}
)
UNSIGNED = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
_NO_BODY, _UNREAD, _PARTIAL, _READ = range(4)


class Handler:
    def __init__(
        self,
        *,
        store: Store,
        book: CredentialBook,
        limits: Limits,
        log: Logger | None,
        connections: Callable[[], int],
        workers: int = DEFAULT_WORKERS,
        region: str | None = sigv4.DEFAULT_REGION,
    ) -> None:
        self.store = store
        self.book = book
        self.limits = limits
        self.log = log
        self.connections = connections
        self.region = region  # the signing region requests must name (None: any)
        self.dispatcher = Dispatcher(workers)
        self.responder = Responder(self.dispatcher, log)
        self._ids = itertools.count(1)
        self._in_flight = 0  # requests between their head and their answer
        self._per_credential: dict[str, int] = {}  # stage requests from signature to answer
        self._id_prefix = os.urandom(4).hex().upper()

    # -- entry points (called by the connection) ---------------------------------------------

    async def refuse(self, conn: Connection, err: Exception) -> None:
        """A head too large to parse: answer and let the connection close."""
        ex = Exchange()
        assert isinstance(err, S3Error)
        resp = render_error(err, resource="", request_id=self._request_id())
        await self.responder.answer(conn, ex, resp, keep=False, head_only=False)

    async def handle(self, conn: Connection, raw: bytes) -> bool:
        """Serve one request; True if the connection stays open for the next one."""
        try:
            return await self._handle(conn, raw)
        finally:
            self._release(conn)

    async def _handle(self, conn: Connection, raw: bytes) -> bool:
        ex = Exchange()
        request_id = self._request_id()
        try:
            head = wire.parse_head(raw)
        except S3Error as err:  # the body's framing is unknown: answer, then close
            ex.method, target = _request_line(raw)
            ex.target = accesslog.without_values(target)
            conn.linger = True
            resp = render_error(err, resource="", request_id=request_id)
            await self.responder.answer(conn, ex, resp, keep=False, head_only=False)
            return False
        ex.method, ex.target = head.method, accesslog.without_values(head.target)
        if self.log is not None:
            ex.agent = head.headers.get("user-agent", "-")
        if head.content_length or head.chunked:
            ex.body = _UNREAD
        keep = head.keep_alive
        self._in_flight += 1
        try:
            resp = await self._serve(conn, head, ex)
        except S3Error as err:
            resp = render_error(err, resource=head.path, request_id=request_id)
        except ConnectionCut:
            self.responder.log_line(conn, ex, 0)
            raise
        except Exception:  # a bug: answer 500, keep serving, say where in the log
            if self.log:
                self.log("internal error: " + traceback.format_exc().strip())
            resp = render_error(InternalError(), resource=head.path, request_id=request_id)
        finally:
            self._in_flight -= 1
        drain = ex.body == _UNREAD and keep and _drainable(head)
        if ex.body == _PARTIAL or (ex.body == _UNREAD and not drain):
            keep = False
            conn.linger = True
        resp.headers["x-amz-request-id"] = request_id
        await self.responder.answer(conn, ex, resp, keep=keep, head_only=head.method == "HEAD")
        self._release(conn)
        if drain and not await self._drain(conn, head.content_length or 0):
            conn.linger = True
            return False
        return keep

    def _request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):08X}"

    # -- the pipeline --------------------------------------------------------------------------

    async def _serve(self, conn: Connection, head: wire.RequestHead, ex: Exchange) -> Response:
        if head.path == HEALTH_PATH:
            return self._health(head.method)
        wire.check_target(head)
        if self.log is not None:
            ex.target = accesslog.without_values(
                wire.display_path(head.path) + ("?" + head.query if head.query else "")
            )
        query = wire.parse_query(head.query)
        params = dict(query)
        bucket, key = wire.split_path(head.path)
        headers = head.headers
        unroutable: S3Error | None = None
        try:
            op = route(head.method, bucket, key, params, headers)
        except S3Error as exc:
            op, unroutable = "", exc  # still authenticate first: strangers only ever see 403
        ex.op = op or "-"
        verified = sigv4.verify(
            method=head.method,
            raw_path=head.path,
            query=query,
            headers=headers,
            lookup=self.book.lookup,
            region=self.region,
        )
        cred = verified.credential
        ex.who = cred.describe()
        conn.trust()
        if unroutable is not None:
            raise unroutable
        self._hold(conn, cred)
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
                try:
                    self.store.head(bucket, key)  # metadata only: inline
                except NoSuchKey:  # without a delete marker's version id: not this caller's
                    raise NoSuchKey(Key=key) from None
            raise
        payload = await self._body(conn, head, ex, op, verified.content_sha256)
        request = S3Request(
            op=op,
            method=head.method,
            bucket=bucket,
            key=key,
            params=params,
            headers=headers,
            payload=payload,
            access=access,
            store=self.store,
            limits=self.limits,
            quota=self._quota(cred),
            cred=cred,
        )
        try:
            return await self.dispatcher.run(request, alone=self._in_flight == 1)
        finally:
            payload.discard()

    def _hold(self, conn: Connection, cred: Credential) -> None:
        """Count a stage credential's request in flight; SlowDown over its cap (admin: none)."""
        if cred.policy == "admin":
            return
        key = cred.access_key_id
        count = self._per_credential.get(key, 0)
        if count >= self.limits.max_requests_per_credential:
            raise SlowDown(
                f"this credential has {count} requests in flight, the most it may: retry shortly",
                headers={"Retry-After": "1"},
            )
        self._per_credential[key] = count + 1
        conn.holds = key

    def _release(self, conn: Connection) -> None:
        key, conn.holds = conn.holds, None
        if key is not None:
            left = self._per_credential.pop(key) - 1
            if left:
                self._per_credential[key] = left

    def _quota(self, cred: Credential) -> Quota | None:
        if cred.policy != "stage" or not cred.stage:
            return None
        return Quota(
            prefix=policy.workspace_prefix(cred.stage),
            max_keys=self.limits.stage_max_keys,
            max_bytes=self.limits.stage_max_bytes,
        )

    async def _body(
        self, conn: Connection, head: wire.RequestHead, ex: Exchange, op: str, sha256: str
    ) -> Payload:
        """Check the body's size, say 100 Continue, stream it into a sink, check its digest."""
        declared, headers = head.content_length, head.headers
        encodings = headers.get("content-encoding", "").lower()
        aws = "aws-chunked" in encodings or sha256.startswith("STREAMING-")
        keeps = op in PAYLOAD_OPS or op in SMALL_BODY_OPS
        decoded_len: int | None = None
        if op in PAYLOAD_OPS:
            limit = self.limits.max_object_bytes
            if declared is None and not head.chunked:
                raise MissingContentLength()
        else:
            limit = MAX_SMALL_BODY if keeps else MAX_OTHER_BODY
        raw_limit = limit
        if aws and keeps:
            if sha256 not in UNSIGNED:
                raise InvalidRequest("only unsigned aws-chunked payloads are supported")
            decoded_text = headers.get("x-amz-decoded-content-length")
            decoded_len = int(decoded_text) if decoded_text is not None else None
            if decoded_len is not None and decoded_len > limit:
                raise EntityTooLarge()
            raw_limit += bodies.aws_framing_allowance(limit)
        if declared is not None and declared > raw_limit:
            if op in PAYLOAD_OPS:
                raise EntityTooLarge()
            raise InvalidRequest("request body too large for this operation")
        if op in PAYLOAD_OPS and declared is not None and declared > self.limits.memory_body_bytes:
            # a body that will be spooled: refuse it before a byte lands on a disk without room
            diskspace.check(self.store.data_dir, declared, self.limits.disk_reserve_bytes)
        if ex.body == _NO_BODY:
            return self._checked(Payload.from_bytes(b""), sha256) if keeps else EMPTY
        if head.expect_continue:
            conn.write(wire.CONTINUE)
        memory = self.limits.memory_body_bytes if op in PAYLOAD_OPS else MAX_SMALL_BODY
        sink = PayloadSink(self.store.spool_dir, memory_limit=memory) if keeps else None
        ex.body = _PARTIAL
        conn.begin_body()
        try:
            trailers = await bodies.receive(
                conn,
                content_length=declared,
                http_chunked=head.chunked,
                aws_chunked=aws and keeps,
                write=sink.write if sink is not None else _drop,
                limit=limit if keeps else raw_limit,
            )
        except OSError as exc:
            if sink is not None:
                sink.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage() from None
            raise
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        ex.body = _READ
        conn.phase = BUSY
        if sink is None:
            return EMPTY
        payload = sink.finish(trailers)
        if aws and decoded_len is not None and payload.size != decoded_len:
            payload.discard()
            raise IncompleteBody("aws-chunked body: x-amz-decoded-content-length does not match")
        return payload if aws else self._checked(payload, sha256)

    @staticmethod
    def _checked(payload: Payload, sha256: str) -> Payload:
        if sha256 not in UNSIGNED and payload.sha256 != sha256:
            payload.discard()
            raise ContentSHA256Mismatch()
        return payload

    @staticmethod
    async def _drain(conn: Connection, length: int) -> bool:
        """Read and drop a refused request's body (already answered) while it arrives fast;
        False if the connection must close (too slow, cut short, or evicted meanwhile)."""
        conn.begin_drain()
        try:
            while length > 0:
                length -= len(await conn.take(min(length, 1 << 20)))
        except S3Error:
            return False
        finally:
            conn.phase = BUSY
        return True

    def _health(self, method: str) -> Response:
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed()
        free = self.store.free_bytes()
        body = json.dumps(
            {
                "status": "ok",
                "free_bytes": free,
                "reserve_bytes": self.limits.disk_reserve_bytes,
                "connections": self.connections(),
                "max_connections": self.limits.max_connections,
            }
        ).encode()
        return Response(
            200, {"Content-Type": "application/json", "Cache-Control": "no-store"}, body
        )


def _drop(data: bytes) -> None:
    return


def _drainable(head: wire.RequestHead) -> bool:
    """A body that can be skipped to keep the connection: a known length within MAX_DRAIN (a
    client that asked for 100-continue and was refused may never send its body)."""
    length = head.content_length
    return (
        not head.chunked
        and not head.expect_continue
        and length is not None
        and (length <= MAX_DRAIN)
    )


def _request_line(raw: bytes) -> tuple[str, str]:
    """Method and target of a head that did not parse, for the log line."""
    first = raw.split(b"\r\n", 1)[0].decode("latin-1")
    method, _, rest = first.partition(" ")
    return method[:16] or "-", rest.rpartition(" ")[0] or rest
