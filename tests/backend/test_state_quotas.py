"""Per-stage quotas: live keys and bytes under the stage's workspace, decided in the write."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import BUCKET, Running, _start

from backend.limits import KIB, MIB, Limits
from backend.store import quota

WS = "env:/pr-1/"


@pytest.fixture
def small_quota(tmp_path: Path) -> Iterator[Running]:
    limits = Limits(stage_max_keys=4, stage_max_bytes=64 * KIB, memory_body_bytes=8 * KIB)
    yield from _start(tmp_path / "state", limits=limits)


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    err = exc.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["Error"]["Message"]


def _consistent(running: Running) -> bool:
    db = sqlite3.connect(running.data_dir / "state.sqlite3")
    try:
        return quota.consistent(db)
    finally:
        db.close()


def test_key_quota_refuses_new_keys_only_and_deletes_always_work(small_quota: Running) -> None:
    s3 = small_quota.client(small_quota.issue(policy="stage", stage="pr-1"))
    for i in range(4):
        s3.put_object(Bucket=BUCKET, Key=f"{WS}k{i}", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key=f"{WS}k4", Body=b"x")
    status, code, message = _error(exc)
    assert (status, code) == (403, "QuotaExceeded")
    assert "at most 4 live keys" in message and "4 in use" in message
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=f"{WS}mp")["UploadId"]
    part = s3.upload_part(Bucket=BUCKET, Key=f"{WS}mp", UploadId=uid, PartNumber=1, Body=b"p")
    with pytest.raises(ClientError) as exc:  # a multipart upload cannot sneak a key in either
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=f"{WS}mp",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
    assert _error(exc)[1] == "QuotaExceeded"
    s3.abort_multipart_upload(Bucket=BUCKET, Key=f"{WS}mp", UploadId=uid)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=WS)["Contents"]
    assert [o["Key"] for o in listed] == [f"{WS}k{i}" for i in range(4)]
    s3.put_object(Bucket=BUCKET, Key=f"{WS}k0", Body=b"overwrite is fine")
    s3.delete_object(Bucket=BUCKET, Key=f"{WS}k1")  # at quota: deletes still work
    s3.put_object(Bucket=BUCKET, Key=f"{WS}k4", Body=b"room again")
    # other stages and admin have their own accounting
    small_quota.client().put_object(Bucket=BUCKET, Key=f"{WS}admin-key", Body=b"x")
    other = small_quota.client(small_quota.issue(policy="stage", stage="pr-2"))
    other.put_object(Bucket=BUCKET, Key="env:/pr-2/k", Body=b"x")
    assert _consistent(small_quota)


def test_byte_quota_counts_versions_and_parts(small_quota: Running) -> None:
    s3 = small_quota.client(small_quota.issue(policy="stage", stage="pr-1"))
    key = f"{WS}state"
    body = b"s" * (20 * KIB)  # spooled to a file (memory_body_bytes is 8 KiB)
    ids = [s3.put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"] for _ in range(3)]
    with pytest.raises(ClientError) as exc:  # a fourth version would make 80 KiB
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    status, code, message = _error(exc)
    assert (status, code) == (403, "QuotaExceeded") and "65536 bytes" in message
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=f"{WS}mp")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=BUCKET, Key=f"{WS}mp", UploadId=uid, PartNumber=1, Body=body)
    assert _error(exc)[1] == "QuotaExceeded"
    assert s3.list_parts(Bucket=BUCKET, Key=f"{WS}mp", UploadId=uid).get("Parts", []) == []
    # refusals left nothing: three versions, no stray file, no spool file
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=WS)["Versions"]
    assert [v["VersionId"] for v in versions] == ids[::-1]
    files = [p for p in (small_quota.data_dir / "objects").rglob("*") if p.is_file()]
    assert len(files) == 3
    assert not list((small_quota.data_dir / "tmp").iterdir())
    s3.delete_object(Bucket=BUCKET, Key=key)  # a delete marker is free: still refused after
    with pytest.raises(ClientError):
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    # only erasing versions (admin) frees bytes
    small_quota.client().delete_object(Bucket=BUCKET, Key=key, VersionId=ids[0])
    s3.upload_part(Bucket=BUCKET, Key=f"{WS}mp", UploadId=uid, PartNumber=1, Body=body)
    assert _consistent(small_quota)


def test_unfinished_uploads_are_capped_per_stage(small_quota: Running) -> None:
    """Empty uploads hold no bytes; the key limit also caps how many a stage keeps open."""
    s3 = small_quota.client(small_quota.issue(policy="stage", stage="pr-1"))
    ids = [s3.create_multipart_upload(Bucket=BUCKET, Key=f"{WS}u{i}")["UploadId"] for i in range(4)]
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=BUCKET, Key=f"{WS}u4")
    status, code, message = _error(exc)
    assert (status, code) == (403, "QuotaExceeded") and "4 unfinished multipart uploads" in message
    listed = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=WS)["Uploads"]
    assert sorted(u["UploadId"] for u in listed) == sorted(ids)  # the refusal added nothing
    # another stage and admin are not held back; aborting one makes room again
    other = small_quota.client(small_quota.issue(policy="stage", stage="pr-2"))
    other.create_multipart_upload(Bucket=BUCKET, Key="env:/pr-2/u")
    admin = small_quota.client()
    extra = admin.create_multipart_upload(Bucket=BUCKET, Key=f"{WS}by-admin")["UploadId"]
    admin.abort_multipart_upload(Bucket=BUCKET, Key=f"{WS}by-admin", UploadId=extra)
    s3.abort_multipart_upload(Bucket=BUCKET, Key=f"{WS}u0", UploadId=ids[0])
    s3.create_multipart_upload(Bucket=BUCKET, Key=f"{WS}u4")


def test_concurrent_writes_cannot_both_take_the_last_key(small_quota: Running) -> None:
    cred = small_quota.issue(policy="stage", stage="pr-1")
    s3 = small_quota.client(cred)
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"{WS}k{i}", Body=b"x")
    clients = [small_quota.client(cred) for _ in range(8)]
    barrier = threading.Barrier(8)
    results: list[str] = [""] * 8

    def racer(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            clients[i].put_object(Bucket=BUCKET, Key=f"{WS}race{i}", Body=b"x")
            results[i] = "ok"
        except ClientError as exc:
            results[i] = exc.response["Error"]["Code"]

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["QuotaExceeded"] * 7 + ["ok"]
    assert len(s3.list_objects_v2(Bucket=BUCKET, Prefix=WS)["Contents"]) == 4


def test_usage_counters_survive_every_path(tmp_path: Path) -> None:
    limits = Limits(retain_versions=2, memory_body_bytes=1 * KIB, max_object_bytes=8 * MIB)
    for running in _start(tmp_path / "d", limits=limits):
        s3 = running.client()
        for i in range(5):  # trimmed by retention as it goes: inline and file-backed bodies
            s3.put_object(Bucket=BUCKET, Key=f"{WS}a", Body=b"v" * (i * 700))
        s3.delete_object(Bucket=BUCKET, Key=f"{WS}a")
        vid = s3.put_object(Bucket=BUCKET, Key=f"{WS}b", Body=b"b")["VersionId"]
        s3.delete_object(Bucket=BUCKET, Key=f"{WS}b", VersionId=vid)
        uid = s3.create_multipart_upload(Bucket=BUCKET, Key=f"{WS}m")["UploadId"]
        s3.upload_part(Bucket=BUCKET, Key=f"{WS}m", UploadId=uid, PartNumber=1, Body=b"1" * 9)
        s3.upload_part(Bucket=BUCKET, Key=f"{WS}m", UploadId=uid, PartNumber=1, Body=b"2" * 5)
        uid2 = s3.create_multipart_upload(Bucket=BUCKET, Key=f"{WS}n")["UploadId"]
        e = s3.upload_part(Bucket=BUCKET, Key=f"{WS}n", UploadId=uid2, PartNumber=1, Body=b"n")
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=f"{WS}n",
            UploadId=uid2,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e["ETag"]}]},
        )
        assert _consistent(running)
        assert running.server.store.usage(BUCKET, WS) == (1, 5 + 1 + 0 + 4 * 700)
