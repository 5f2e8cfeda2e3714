"""Bucket rows: made once, dropped only when no version is left (unfinished uploads go along)."""

from __future__ import annotations

import sqlite3
import time

from backend.errors import BucketAlreadyOwnedByYou, BucketNotEmpty
from backend.store import retention


def create(conn: sqlite3.Connection, bucket: str, *, exist_ok: bool) -> None:
    if conn.execute("SELECT 1 FROM buckets WHERE name=?", (bucket,)).fetchone():
        if exist_ok:
            return
        raise BucketAlreadyOwnedByYou(BucketName=bucket)
    conn.execute("INSERT INTO buckets VALUES (?, ?)", (bucket, time.time()))


def drop(conn: sqlite3.Connection, bucket: str) -> list[str]:
    """Delete the bucket's row; the files of its unfinished uploads are returned for unlinking."""
    if conn.execute("SELECT 1 FROM versions WHERE bucket=? LIMIT 1", (bucket,)).fetchone():
        raise BucketNotEmpty(BucketName=bucket)
    # as S3: unfinished multipart uploads do not keep a bucket alive; they go with it
    files: list[str] = []
    uploads = conn.execute("SELECT upload_id FROM uploads WHERE bucket=?", (bucket,))
    for (upload_id,) in uploads.fetchall():
        files += retention.drop_upload(conn, upload_id)
    conn.execute("DELETE FROM completed WHERE bucket=?", (bucket,))
    conn.execute("DELETE FROM buckets WHERE name=?", (bucket,))
    return files
