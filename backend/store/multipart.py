"""Multipart uploads: parts as durable files, assembled by streaming, listable and abortable.

CompleteMultipartUpload streams the named parts (each checked against its sha256) into a spool
file while computing the object's digests, makes it durable, and only then commits the new
version — re-checking inside that transaction that the upload and its parts are still the ones
that were read, so memory stays bounded and a concurrent abort or re-upload cannot slip in.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backend import checksums
from backend.errors import (
    BadDigest,
    EntityTooLarge,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    NoSuchUpload,
)
from backend.limits import Limits
from backend.payload import CHUNK, Payload, PayloadSink
from backend.store import completed, quota, retention, versions
from backend.store.db import Database
from backend.store.objectfiles import ObjectFiles
from backend.store.quota import Quota
from backend.store.records import (
    MAX_PARTS,
    MIN_PART_BYTES,
    Conditions,
    ObjectMeta,
    PartInfo,
    check_conditions,
)

Wanted = list[tuple[int, str, dict[str, str]]]
COMPOSITE = " composite"  # suffix of ``uploads.algorithm`` for a COMPOSITE checksum type


def split_algorithm(column: str | None) -> tuple[str | None, str | None]:
    """(algorithm, checksum type) from ``uploads.algorithm``: ``sha256 composite`` or ``crc32``."""
    if not column:
        return None, None
    if column.endswith(COMPOSITE):
        return column[: -len(COMPOSITE)], "COMPOSITE"
    return column, "FULL_OBJECT"


def _upload(
    conn: sqlite3.Connection, upload_id: str, bucket: str, key: str
) -> tuple[str, dict[str, str], str | None]:
    row = conn.execute(
        "SELECT content_type, metadata, algorithm FROM uploads"
        " WHERE upload_id=? AND bucket=? AND key=?",
        (upload_id, bucket, key),
    ).fetchone()
    if row is None:
        raise NoSuchUpload(UploadId=upload_id)
    return row[0], json.loads(row[1]), row[2]


class Uploads:
    def __init__(
        self,
        db: Database,
        files: ObjectFiles,
        limits: Limits,
        spool_dir: Path,
        room: Callable[[int], None],
    ) -> None:
        self._db, self._files, self._limits, self._spool = db, files, limits, spool_dir
        self._room = room  # raises InsufficientStorage when the disk cannot take n more bytes

    def create(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str,
        metadata: dict[str, str],
        algo: str | None,
        composite: bool = False,
        limit: Quota | None = None,
    ) -> str:
        self._room(0)
        upload_id = secrets.token_urlsafe(24)
        column = f"{algo}{COMPOSITE}" if algo and composite else algo

        def op(conn: sqlite3.Connection) -> None:
            if limit is not None:
                quota.enforce_uploads(conn, bucket, limit)
            conn.execute(
                "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?)",
                (upload_id, bucket, key, content_type, json.dumps(metadata), column, time.time()),
            )

        self._db.write(op)
        return upload_id

    def put_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        payload: Payload,
        *,
        checksums: dict[str, str],
        limit: Quota | None,
    ) -> None:
        if payload.size > self._limits.max_object_bytes:
            raise EntityTooLarge()
        self._room(payload.size)
        with self._files.placed(payload) as rel:

            def op(conn: sqlite3.Connection) -> list[str]:
                _upload(conn, upload_id, bucket, key)
                before = quota.before(conn, bucket, limit)
                old = conn.execute(
                    "SELECT file FROM parts WHERE upload_id=? AND part_number=?",
                    (upload_id, number),
                ).fetchone()
                conn.execute(
                    "DELETE FROM parts WHERE upload_id=? AND part_number=?", (upload_id, number)
                )
                total = conn.execute(
                    "SELECT coalesce(sum(size), 0) FROM parts WHERE upload_id=?", (upload_id,)
                ).fetchone()[0]
                if total + payload.size > self._limits.max_object_bytes:
                    raise EntityTooLarge("the upload's parts exceed the maximum object size")
                conn.execute(
                    "INSERT INTO parts (upload_id, part_number, etag, size, sha256, checksums,"
                    " data, file, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        upload_id,
                        number,
                        payload.md5,
                        payload.size,
                        payload.sha256,
                        json.dumps(checksums),
                        b"",
                        rel,
                        time.time(),
                    ),
                )
                quota.enforce(conn, bucket, limit, before)
                return [old[0]] if old and old[0] else []

            replaced = self._db.write(op)
        self._files.unlink(replaced)

    def complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        wanted: Wanted,
        cond: Conditions,
        limit: Quota | None,
        *,
        expected: dict[str, str] | None = None,
        checksum_type: str | None = None,
    ) -> ObjectMeta:
        """Assemble and commit; ``expected`` are the object checksums the client sent with
        Complete (each verified: BadDigest), ``checksum_type`` the type it says it chose."""
        numbers = [n for n, _, _ in wanted]
        if numbers != sorted(set(numbers)):
            raise InvalidPartOrder()
        if len(numbers) > MAX_PARTS:
            raise InvalidArgument("too many parts")
        with self._db.read() as conn:
            conn.execute("BEGIN")
            try:
                content_type, metadata, column = _upload(conn, upload_id, bucket, key)
            except NoSuchUpload:
                return completed.recall(conn, upload_id, bucket, key)
            algo, kind = split_algorithm(column)
            if checksum_type is not None and checksum_type != (kind or "FULL_OBJECT"):
                raise InvalidRequest(
                    f"x-amz-checksum-type {checksum_type} differs from the upload's"
                    f" {kind or 'FULL_OBJECT'}"
                )
            stored = {
                r[0]: r
                for r in conn.execute(
                    "SELECT part_number, etag, size, checksums, sha256, file FROM parts"
                    " WHERE upload_id=?",
                    (upload_id,),
                )
            }
        chosen = self._check_parts(wanted, stored)
        total = sum(row[2] for row in chosen)
        if total > self._limits.max_object_bytes:
            raise EntityTooLarge()
        self._room(total)
        payload, sums = self._assemble(upload_id, chosen, algo, composite=kind == "COMPOSITE")
        try:
            _verify_expected(payload, sums, expected or {})
        except BaseException:
            payload.discard()
            raise
        digest = hashlib.md5(b"".join(bytes.fromhex(r[1]) for r in chosen), usedforsecurity=False)
        body = versions.Body(
            size=payload.size,
            etag=f"{digest.hexdigest()}-{len(chosen)}",
            sha256=payload.sha256,
            content_type=content_type,
            checksums=sums,
            metadata=metadata,
            data=payload.read() if payload.in_memory else None,
        )
        used = [(r[0], r[1], r[5]) for r in chosen]

        def op(conn: sqlite3.Connection, body: versions.Body) -> tuple[ObjectMeta, list[str]]:
            _upload(conn, upload_id, bucket, key)
            now = conn.execute(
                "SELECT part_number, etag, file FROM parts WHERE upload_id=?", (upload_id,)
            ).fetchall()
            if not set(used) <= set(now):
                raise InvalidPart("the upload's parts changed while it was being completed")
            check_conditions(versions.current(conn, bucket, key), cond, key)
            before = quota.before(conn, bucket, limit)
            meta, files = versions.insert(conn, bucket, key, body, self._limits, parts=len(chosen))
            files += retention.drop_upload(conn, upload_id)
            quota.enforce(conn, bucket, limit, before)
            completed.remember(conn, upload_id, meta, self._limits)
            return meta, files

        try:
            if payload.in_memory:
                meta, doomed = self._db.write(lambda conn: op(conn, body))
            else:
                with self._files.placed(payload) as rel:
                    filed = dataclasses.replace(body, file=rel, data=None)
                    meta, doomed = self._db.write(lambda conn: op(conn, filed))
        finally:
            payload.discard()
        self._files.unlink(doomed)
        return meta

    @staticmethod
    def _check_parts(wanted: Wanted, stored: dict[int, Any]) -> list[Any]:
        chosen = []
        for i, (number, etag, sums) in enumerate(wanted):
            row = stored.get(number)
            if row is None or (etag and etag != row[1]):
                raise InvalidPart(PartNumber=str(number))
            part_sums: dict[str, str] = json.loads(row[3])
            for name, value in sums.items():
                if name in part_sums and part_sums[name] != value:
                    raise InvalidPart(PartNumber=str(number))
            if i < len(wanted) - 1 and row[2] < MIN_PART_BYTES:
                raise EntityTooSmall(PartNumber=str(number))
            chosen.append(row)
        return chosen

    def _assemble(
        self, upload_id: str, chosen: list[Any], algo: str | None, *, composite: bool = False
    ) -> tuple[Payload, dict[str, str]]:
        """Stream the parts into one spooled body, checking each part's sha256 on the way, and
        compute the object's checksum: of the whole body, or (COMPOSITE) of the parts'
        checksums, suffixed ``-<parts>`` as S3 shows it."""
        sink = PayloadSink(self._spool, memory_limit=self._limits.memory_body_bytes)
        whole = algo is not None and not composite
        running = checksums.start(algo) if whole and algo and algo != "sha256" else None
        of_parts = checksums.start(algo) if composite and algo else None
        try:
            for number, _etag, _size, _sums, sha256, rel in chosen:
                part_digest = hashlib.sha256()
                part_sum = checksums.start(algo) if of_parts is not None and algo else None
                for block in self._part_chunks(upload_id, number, rel):
                    part_digest.update(block)
                    sink.write(block)
                    if running is not None:
                        running.update(block)
                    if part_sum is not None:
                        part_sum.update(block)
                if part_digest.hexdigest() != sha256:
                    raise InvalidPart(f"part {number} failed its integrity check")
                if of_parts is not None and part_sum is not None:
                    of_parts.update(part_sum.digest())
            payload = sink.finish()
        except BaseException:
            sink.abort()
            raise
        if of_parts is not None and algo:
            return payload, {algo: f"{of_parts.b64()}-{len(chosen)}"}
        return payload, ({algo: running.b64()} if running is not None and algo else {})

    def _part_chunks(self, upload_id: str, number: int, rel: str | None) -> Iterator[bytes]:
        if rel is None:  # a part stored inline by an earlier version of the server
            with self._db.read() as conn:
                row = conn.execute(
                    "SELECT data FROM parts WHERE upload_id=? AND part_number=?",
                    (upload_id, number),
                ).fetchone()
            if row is None:
                raise NoSuchUpload(UploadId=upload_id)
            yield bytes(row[0])
            return
        try:
            fh = self._files.path(rel).open("rb")
        except FileNotFoundError:
            raise NoSuchUpload(UploadId=upload_id) from None
        with fh:
            while block := fh.read(CHUNK):
                yield block

    def abort(self, bucket: str, key: str, upload_id: str) -> None:
        def op(conn: sqlite3.Connection) -> list[str]:
            _upload(conn, upload_id, bucket, key)
            return retention.drop_upload(conn, upload_id)

        self._files.unlink(self._db.write(op))

    def parts(
        self, bucket: str, key: str, upload_id: str, *, marker: int, max_parts: int
    ) -> tuple[list[PartInfo], bool]:
        with self._db.read() as conn:
            conn.execute("BEGIN")
            _upload(conn, upload_id, bucket, key)
            rows = conn.execute(
                "SELECT part_number, etag, size, checksums, created FROM parts"
                " WHERE upload_id=? AND part_number > ? ORDER BY part_number LIMIT ?",
                (upload_id, marker, max_parts + 1),
            ).fetchall()
        found = [PartInfo(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows[:max_parts]]
        return found, len(rows) > max_parts


def _verify_expected(payload: Payload, sums: dict[str, str], expected: dict[str, str]) -> None:
    """The object checksums sent with Complete must match: the upload's own (full-object, or
    composite with or without its ``-N``), else one computed from the assembled body."""
    for algo, value in expected.items():
        if algo in sums:
            actual = sums[algo]
            ok = value in (actual, actual.partition("-")[0])
        elif algo == "sha256":
            ok = value == base64.b64encode(bytes.fromhex(payload.sha256)).decode("ascii")
        else:
            ok = value == payload.checksum(algo)
        if not ok:
            raise BadDigest(f"the x-amz-checksum-{algo} you specified did not match the object")
