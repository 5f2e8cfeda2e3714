"""Versions kept by count and by age, expiring uploads, orphan files: the janitor's sweep."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import BUCKET, _start

from backend import history
from backend.limits import KIB, Limits

KEY = "env:/staging/forkstage/terraform.tfstate"
DAY = 86400


def _files(data_dir: Path) -> set[Path]:
    return {p for p in (data_dir / "objects").rglob("*") if p.is_file()}


def test_count_and_age_retention_keep_the_newest(tmp_path: Path) -> None:
    limits = Limits(retain_versions=3, retain_days=10, memory_body_bytes=1 * KIB)
    for running in _start(tmp_path / "d", limits=limits):
        s3, store = running.client(), running.server.store
        ids = [
            s3.put_object(Bucket=BUCKET, Key=KEY, Body=f"{i}".encode() * 2000)["VersionId"]
            for i in range(5)
        ]
        listed = s3.list_object_versions(Bucket=BUCKET, Prefix=KEY)["Versions"]
        assert [v["VersionId"] for v in listed] == ids[:1:-1]  # count: the newest 3
        assert len(_files(running.data_dir)) == 3  # the trimmed versions' files are gone
        marker = s3.delete_object(Bucket=BUCKET, Key=KEY)["VersionId"]
        s3.put_object(Bucket=BUCKET, Key="other", Body=b"only version")

        # history shows what is kept and until when
        found = history.list_versions(s3, BUCKET, KEY, with_serial=False)
        assert [v.version_id for v in found] == [marker, ids[4], ids[3]]
        assert found[0].expires is None and found[0].writes_left is None
        assert [v.writes_left for v in found[1:]] == [2, 1]
        replaced_at = found[0].last_modified
        assert found[1].expires == replaced_at + dt.timedelta(days=10)

        # age: 9 days on nothing changes; 11 days on only the newest (a delete marker) stays
        assert store.sweep(now=time.time() + 9 * DAY).versions_dropped == 0
        report = store.sweep(now=time.time() + 11 * DAY)
        assert report.versions_dropped == 2
        left = s3.list_object_versions(Bucket=BUCKET, Prefix=KEY)
        assert "Versions" not in left
        assert [m["VersionId"] for m in left["DeleteMarkers"]] == [marker]
        assert s3.get_object(Bucket=BUCKET, Key="other")["Body"].read() == b"only version"
        assert _files(running.data_dir) == set()


def test_age_counts_from_replacement_not_creation(tmp_path: Path) -> None:
    for running in _start(tmp_path / "d", limits=Limits(retain_days=1)):
        s3, store = running.client(), running.server.store
        old = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"old")["VersionId"]
        db = running.data_dir / "state.sqlite3"
        import sqlite3

        conn = sqlite3.connect(db)
        conn.execute("UPDATE versions SET created = created - 30 * 86400")  # written long ago
        conn.commit()
        conn.close()
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"new")  # replaced just now: kept a day
        assert store.sweep().versions_dropped == 0
        assert s3.get_object(Bucket=BUCKET, Key=KEY, VersionId=old)["Body"].read() == b"old"
        assert store.sweep(now=time.time() + 2 * DAY).versions_dropped == 1


def test_expired_uploads_and_orphan_files_are_swept(tmp_path: Path) -> None:
    limits = Limits(upload_expiry_hours=24)
    for running in _start(tmp_path / "d", limits=limits):
        s3, store = running.client(), running.server.store
        uid = s3.create_multipart_upload(Bucket=BUCKET, Key="big")["UploadId"]
        s3.upload_part(Bucket=BUCKET, Key="big", UploadId=uid, PartNumber=1, Body=b"p" * 1000)
        assert len(_files(running.data_dir)) == 1
        orphan = running.data_dir / "objects" / "ab" / "left-by-a-crash"
        orphan.write_bytes(b"x")
        report = store.sweep(now=time.time() + 23 * 3600)
        assert (report.uploads_aborted, report.orphans_removed) == (0, 1)
        assert not orphan.exists() and len(_files(running.data_dir)) == 1
        assert store.sweep(now=time.time() + 25 * 3600).uploads_aborted == 1
        assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
        assert _files(running.data_dir) == set()
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket=BUCKET, Key="big", UploadId=uid, PartNumber=2, Body=b"p")
        assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    # orphans left while the server was down are removed when it starts
    orphan.write_bytes(b"x")
    for _running in _start(tmp_path / "d", limits=limits):
        assert not orphan.exists()
