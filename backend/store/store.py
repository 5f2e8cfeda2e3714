"""Durable, versioned object storage: SQLite rows, small bodies inline, large ones as files.

Every write is a new version whose sha256 is checked again on every read; a delete is a delete
marker. A small body (one that arrived in memory: Terraform's state and lock) is stored inline
in the row, one group-commit fsync in all; a spooled body becomes a durable file before the
commit that references it, in the request thread, so a big upload never holds up the single
writer that every stage's lock write goes through. See ``db``, ``objectfiles``, ``quota``,
``retention``, ``multipart``, ``deletes``, ``buckets`` and ``diskspace`` for each concern.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from backend.errors import (
    EntityTooLarge,
    InsufficientStorage,
    InternalError,
    MethodNotAllowed,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    S3Error,
)
from backend.limits import DEFAULT_LIMITS, Limits
from backend.store import buckets, deletes, diskspace, listing, quota, versions
from backend.store.db import DB_NAME, Database
from backend.store.multipart import Uploads, Wanted
from backend.store.objectfiles import ObjectFiles
from backend.store.quota import Quota
from backend.store.records import (
    NCOLS,
    Conditions,
    Listing,
    NewObject,
    ObjectMeta,
    PartInfo,
    UploadListing,
    VersionListing,
    check_conditions,
    meta_from_row,
)
from backend.store.records import validate_bucket_name as validate_bucket_name
from backend.store.redact import Views
from backend.store.retention import Janitor, SweepReport

T = TypeVar("T")
SPOOL_DIR = "tmp"


class Store:
    """The state server's storage; safe to use from many threads."""

    def __init__(
        self, data_dir: Path, *, limits: Limits = DEFAULT_LIMITS, janitor_interval: float = 3600.0
    ) -> None:
        limits.check()
        self.limits = limits
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_NAME
        self.spool_dir = self.data_dir / SPOOL_DIR
        shutil.rmtree(self.spool_dir, ignore_errors=True)  # bodies of requests cut by a crash
        self.spool_dir.mkdir()
        self.files = ObjectFiles(self.data_dir)
        self.reserve = diskspace.Reserve(
            self.data_dir, diskspace.emergency_size(limits.disk_reserve_bytes)
        )
        self.views = Views()
        self._db = Database(self.path, wal_limit=diskspace.wal_limit(limits.disk_reserve_bytes))
        with self._db.read() as conn:
            self._buckets = {r[0] for r in conn.execute("SELECT name FROM buckets")}
        self.uploads = Uploads(self._db, self.files, limits, self.spool_dir, self._room)
        self.janitor = Janitor(
            self._db, self.files, self.reserve, limits, interval=janitor_interval
        )
        self.janitor.sweep()  # before serving: orphans of a crash, expired uploads, the reserve
        self.janitor.start()

    def close(self) -> None:
        self.janitor.stop()
        self._db.close()

    # -- space -------------------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Free bytes on the data directory's filesystem (``backend status``, health checks)."""
        return diskspace.free_bytes(self.data_dir)

    def _room(self, incoming: int) -> None:
        diskspace.check(
            self.data_dir,
            incoming,
            self.limits.disk_reserve_bytes,
            inline_limit=self.limits.memory_body_bytes,
        )

    def _freeing(self, fn: Callable[[], T]) -> T:
        """Run a write that frees space; on a full disk, give back the reserve file and retry."""
        try:
            result = fn()
        except InsufficientStorage:
            if not self.reserve.release():
                raise
            result = fn()
        if not self.reserve.held:
            self.reserve.ensure()
        return result

    def usage(self, bucket: str, prefix: str) -> tuple[int, int]:
        """(live keys, bytes of every kept version and unfinished part) under ``prefix``."""
        with self._db.read() as conn:
            return quota.measure(conn, bucket, prefix)

    def sweep(self, now: float | None = None) -> SweepReport:
        """Retention, upload expiry and orphan removal now (the janitor does it periodically)."""
        return self.janitor.sweep(now)

    # -- buckets -------------------------------------------------------------------------------

    def _require_bucket(self, bucket: str) -> None:
        if bucket not in self._buckets:
            raise NoSuchBucket(BucketName=bucket)

    def bucket_exists(self, bucket: str) -> bool:
        return bucket in self._buckets

    def list_buckets(self) -> list[tuple[str, float]]:
        with self._db.read() as conn:
            return list(conn.execute("SELECT name, created FROM buckets ORDER BY name"))

    def create_bucket(self, bucket: str, *, exist_ok: bool = False) -> None:
        validate_bucket_name(bucket)
        if exist_ok and bucket in self._buckets:
            return
        self._room(0)

        self._db.write(lambda conn: buckets.create(conn, bucket, exist_ok=exist_ok))
        self._buckets.add(bucket)

    def delete_bucket(self, bucket: str) -> None:
        self._require_bucket(bucket)

        self.files.unlink(self._freeing(lambda: self._db.write(lambda c: buckets.drop(c, bucket))))
        self._buckets.discard(bucket)

    # -- reads ---------------------------------------------------------------------------------

    def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectMeta:
        """The newest live version (or the named one); delete markers raise NoSuchKey."""
        return self.fetch(bucket, key, version_id, with_data=False)[0]

    def get(self, bucket: str, key: str, version_id: str | None = None) -> tuple[ObjectMeta, bytes]:
        """The whole body in memory, verified (redaction, small objects)."""
        meta, data = self.fetch(bucket, key, version_id, with_data=True)
        return meta, self.whole(meta, data)

    def whole(self, meta: ObjectMeta, inline: bytes | None) -> bytes:
        if meta.file is not None:
            return self.files.read_all(meta.file, meta.sha256)
        data = inline if inline is not None else b""
        if hashlib.sha256(data).hexdigest() != meta.sha256:
            raise InternalError("stored object failed its integrity check")
        return data

    def body(
        self, meta: ObjectMeta, inline: bytes | None, first: int, last: int
    ) -> bytes | Iterable[bytes]:
        """Bytes ``first..last`` of a version: inline bytes, or chunks streamed from its file."""
        if meta.file is None:
            return self.whole(meta, inline)[first : last + 1]
        try:
            return self.files.stream(meta.file, meta.size, meta.sha256, first, last)
        except InternalError:
            with contextlib.suppress(NoSuchVersion, NoSuchKey, MethodNotAllowed):
                self.head(meta.bucket, meta.key, meta.version_id)
                raise  # the row is still there: its file is truly damaged
            raise NoSuchVersion(Key=meta.key, VersionId=meta.version_id) from None

    def fetch(
        self, bucket: str, key: str, version_id: str | None, *, with_data: bool
    ) -> tuple[ObjectMeta, bytes | None]:
        """A version's meta and, for an inline body, its bytes (one query, one snapshot)."""
        self._require_bucket(bucket)
        with self._db.read() as conn:
            row = versions.lookup(conn, bucket, key, version_id, with_data=with_data)
        meta = meta_from_row(row, bool(row[NCOLS]))
        return meta, (row[NCOLS + 1] if with_data else None)

    def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> Listing:
        self._require_bucket(bucket)
        with self._db.read() as conn:
            return listing.objects(
                conn, bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
            )

    def list_versions(
        self, bucket: str, *, prefix: str, key_marker: str, version_marker: str, max_keys: int
    ) -> VersionListing:
        self._require_bucket(bucket)
        with self._db.read() as conn:
            return listing.versions(
                conn,
                bucket,
                prefix=prefix,
                key_marker=key_marker,
                version_marker=version_marker,
                max_keys=max_keys,
            )

    # -- writes --------------------------------------------------------------------------------

    def put(
        self,
        bucket: str,
        key: str,
        obj: NewObject,
        cond: Conditions,
        *,
        limit: Quota | None = None,
    ) -> ObjectMeta:
        """Store a new version; conditions and quota decided inside the write's transaction."""
        self._require_bucket(bucket)
        payload = obj.payload
        if payload.size > self.limits.max_object_bytes:
            raise EntityTooLarge()
        self._room(payload.size)
        body = versions.Body(
            size=payload.size,
            etag=payload.md5,
            sha256=payload.sha256,
            content_type=obj.content_type,
            checksums=obj.checksums,
            metadata=obj.metadata,
            data=payload.read() if payload.in_memory else None,
        )

        def op(conn: sqlite3.Connection, body: versions.Body) -> tuple[ObjectMeta, list[str]]:
            if cond.if_none_match is not None or cond.if_match is not None:
                check_conditions(versions.current(conn, bucket, key), cond, key)
            before = quota.before(conn, bucket, limit)
            meta, files = versions.insert(conn, bucket, key, body, self.limits)
            quota.enforce(conn, bucket, limit, before)
            return meta, files

        if payload.in_memory:
            meta, doomed = self._db.write(lambda conn: op(conn, body))
        else:
            with self.files.placed(payload) as rel:
                filed = dataclasses.replace(body, file=rel, data=None)
                meta, doomed = self._db.write(lambda conn: op(conn, filed))
        self.files.unlink(doomed)
        return meta

    def delete(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        limit: Quota | None = None,
    ) -> ObjectMeta | None:
        """Add a delete marker, as S3 does each time (or, with a version id, erase that version
        for good). None only when a stage's bound on marker-only keys says no (``deletes``).

        Works on a full disk: the reserve file is given back if SQLite cannot commit.
        """
        self._require_bucket(bucket)

        def run() -> ObjectMeta | None:
            meta, doomed = self._db.write(
                lambda conn: deletes.one(conn, bucket, key, version_id, limit, self.limits)
            )
            self.files.unlink(doomed)
            return meta

        return self._freeing(run)

    def delete_many(
        self, bucket: str, items: list[tuple[str, str | None]], *, limit: Quota | None = None
    ) -> list[ObjectMeta | S3Error | None]:
        """DeleteObjects: every (key, version id) in one transaction; a refusal is per item."""
        self._require_bucket(bucket)

        def run() -> list[ObjectMeta | S3Error | None]:
            results, doomed = self._db.write(
                lambda conn: deletes.many(conn, bucket, items, limit, self.limits)
            )
            self.files.unlink(doomed)
            return results

        return self._freeing(run)

    # -- multipart -----------------------------------------------------------------------------

    def create_upload(
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
        self._require_bucket(bucket)
        return self.uploads.create(
            bucket,
            key,
            content_type=content_type,
            metadata=metadata,
            algo=algo,
            composite=composite,
            limit=limit,
        )

    def put_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        obj: NewObject,
        *,
        limit: Quota | None = None,
    ) -> None:
        self._require_bucket(bucket)
        self.uploads.put_part(
            bucket, key, upload_id, number, obj.payload, checksums=obj.checksums, limit=limit
        )

    def complete_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        wanted: Wanted,
        cond: Conditions,
        *,
        limit: Quota | None = None,
        expected: dict[str, str] | None = None,
        checksum_type: str | None = None,
    ) -> ObjectMeta:
        """Stitch the named parts into one new version (streamed; checks in the transaction).

        A retry of an upload completed lately answers what it became (see ``multipart``)."""
        self._require_bucket(bucket)
        return self.uploads.complete(
            bucket,
            key,
            upload_id,
            wanted,
            cond,
            limit,
            expected=expected,
            checksum_type=checksum_type,
        )

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self._require_bucket(bucket)
        self._freeing(lambda: self.uploads.abort(bucket, key, upload_id))

    def list_uploads(
        self,
        bucket: str,
        *,
        prefix: str,
        delimiter: str,
        key_marker: str,
        upload_marker: str,
        max_uploads: int,
    ) -> UploadListing:
        self._require_bucket(bucket)
        with self._db.read() as conn:
            return listing.uploads(
                conn,
                bucket,
                prefix=prefix,
                delimiter=delimiter,
                key_marker=key_marker,
                upload_marker=upload_marker,
                max_uploads=max_uploads,
            )

    def list_parts(
        self, bucket: str, key: str, upload_id: str, *, marker: int, max_parts: int
    ) -> tuple[list[PartInfo], bool]:
        self._require_bucket(bucket)
        return self.uploads.parts(bucket, key, upload_id, marker=marker, max_parts=max_parts)
