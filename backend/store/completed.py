"""Completed multipart uploads remembered for a while, so a retried Complete (its answer lost on
the way) gets what the upload became, as S3 answers it, instead of NoSuchUpload."""

from __future__ import annotations

import json
import sqlite3

from backend.errors import NoSuchUpload
from backend.limits import Limits
from backend.store.records import ObjectMeta

KEPT = 10_000  # completed uploads remembered at most (each for upload_expiry_hours)


def recall(conn: sqlite3.Connection, upload_id: str, bucket: str, key: str) -> ObjectMeta:
    """What an upload completed earlier became (S3 answers a retried Complete with it)."""
    row = conn.execute(
        "SELECT version_id, etag, checksums, created FROM completed"
        " WHERE upload_id=? AND bucket=? AND key=?",
        (upload_id, bucket, key),
    ).fetchone()
    if row is None:
        raise NoSuchUpload(UploadId=upload_id)
    return ObjectMeta(
        bucket=bucket,
        key=key,
        version_id=row[0],
        seq=0,
        deleted=False,
        size=0,
        etag=row[1],
        sha256="",
        content_type="",
        checksums=json.loads(row[2]),
        metadata={},
        created=row[3],
        parts=0,
    )


def remember(conn: sqlite3.Connection, upload_id: str, meta: ObjectMeta, limits: Limits) -> None:
    """Keep what the upload became for a while (bounded by age and by count)."""
    cur = conn.execute(
        "INSERT OR REPLACE INTO completed VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            upload_id,
            meta.bucket,
            meta.key,
            meta.version_id,
            meta.etag,
            json.dumps(meta.checksums),
            meta.created,
        ),
    )
    conn.execute(
        "DELETE FROM completed WHERE rowid <= ? OR created < ?",
        (
            (cur.lastrowid or 0) - KEPT,
            meta.created - limits.upload_expiry_hours * 3600,
        ),
    )
