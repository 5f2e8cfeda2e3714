"""Unfinished multipart uploads: listed, listed by part, aborted, bounded, owned per stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import BUCKET, Running, _start, raw_request

from backend.limits import MIB, Limits


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_list_uploads_and_parts_with_paging(state_server: Running) -> None:
    s3 = state_server.client()
    made = sorted(
        (key, s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"])
        for key in ["env:/a/x", "env:/a/x", "env:/a/y", "env:/b/z", "top"]
    )
    everything = s3.list_multipart_uploads(Bucket=BUCKET)
    assert [(u["Key"], u["UploadId"]) for u in everything["Uploads"]] == made
    assert everything["IsTruncated"] is False
    seen: list[tuple[str, str]] = []
    page = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="env:/", MaxUploads=2)
    while True:
        seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        page = s3.list_multipart_uploads(
            Bucket=BUCKET,
            Prefix="env:/",
            MaxUploads=2,
            KeyMarker=page["NextKeyMarker"],
            UploadIdMarker=page["NextUploadIdMarker"],
        )
    assert seen == made[:4]
    grouped = s3.list_multipart_uploads(Bucket=BUCKET, Delimiter="/", Prefix="env:/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["env:/a/", "env:/b/"]
    # one entry a page: a page that ends on a common prefix resumes after the whole group
    rolled: list[str] = []
    marker = ""
    while True:
        page = s3.list_multipart_uploads(
            Bucket=BUCKET, Delimiter="/", Prefix="env:/", MaxUploads=1, KeyMarker=marker
        )
        rolled += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        marker = page["NextKeyMarker"]
    assert rolled == ["env:/a/", "env:/b/"]

    key, uid = made[0]
    for number in (3, 1, 2):
        s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=number, Body=b"p" * number)
    parts = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid, MaxParts=2)
    assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == [(1, 1), (2, 2)]
    assert parts["IsTruncated"] is True
    rest = s3.list_parts(
        Bucket=BUCKET, Key=key, UploadId=uid, PartNumberMarker=parts["NextPartNumberMarker"]
    )
    assert [p["PartNumber"] for p in rest["Parts"]] == [3] and rest["IsTruncated"] is False
    s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid)
    assert _code(exc) == "NoSuchUpload"
    left = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in left] == made[1:]
    for bad in ("max-uploads=%EF%BC%92", "max-uploads=-1", "max-uploads=1_0"):
        resp = raw_request(state_server.endpoint, "GET", f"/{BUCKET}?uploads&{bad}", None)
        assert resp.status == 403  # unsigned: authentication first
        resp = raw_request(
            state_server.endpoint, "GET", f"/{BUCKET}?uploads&{bad}", state_server.admin
        )
        assert (resp.status, resp.code) == (400, "InvalidArgument")


def test_stage_lists_and_aborts_only_its_own_uploads(state_server: Running) -> None:
    admin = state_server.client()
    pr = state_server.client(state_server.issue(policy="stage", stage="pr-1"))
    theirs = admin.create_multipart_upload(Bucket=BUCKET, Key="env:/staging/s")["UploadId"]
    mine = pr.create_multipart_upload(Bucket=BUCKET, Key="env:/pr-1/s")["UploadId"]
    listed = pr.list_multipart_uploads(Bucket=BUCKET, Prefix="env:/pr-1/")["Uploads"]
    assert [u["UploadId"] for u in listed] == [mine]
    for kwargs in ({}, {"Prefix": "env:/"}, {"Prefix": "env:/staging/"}):
        with pytest.raises(ClientError) as exc:
            pr.list_multipart_uploads(Bucket=BUCKET, **kwargs)
        assert _code(exc) == "AccessDenied"
    for call in (pr.abort_multipart_upload, pr.list_parts):
        with pytest.raises(ClientError) as exc:
            call(Bucket=BUCKET, Key="env:/staging/s", UploadId=theirs)
        assert _code(exc) == "AccessDenied"
    pr.list_parts(Bucket=BUCKET, Key="env:/pr-1/s", UploadId=mine)
    pr.abort_multipart_upload(Bucket=BUCKET, Key="env:/pr-1/s", UploadId=mine)
    assert [u["UploadId"] for u in admin.list_multipart_uploads(Bucket=BUCKET)["Uploads"]] == [
        theirs
    ]


def test_assembled_object_is_bounded_by_max_object_size(tmp_path: Path) -> None:
    limits = Limits(max_object_bytes=6 * MIB)
    for running in _start(tmp_path / "d", limits=limits):
        s3 = running.client()
        uid = s3.create_multipart_upload(Bucket=BUCKET, Key="big")["UploadId"]
        first = b"a" * (5 * MIB)
        s3.upload_part(Bucket=BUCKET, Key="big", UploadId=uid, PartNumber=1, Body=first)
        over = b"b" * (MIB + 1)
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket=BUCKET, Key="big", UploadId=uid, PartNumber=2, Body=over)
        assert _code(exc) == "EntityTooLarge"
        e2 = s3.upload_part(Bucket=BUCKET, Key="big", UploadId=uid, PartNumber=2, Body=b"tail")
        e1 = s3.list_parts(Bucket=BUCKET, Key="big", UploadId=uid)["Parts"][0]["ETag"]
        done = s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="big",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2["ETag"]}]
            },
        )
        got = s3.get_object(Bucket=BUCKET, Key="big", VersionId=done["VersionId"])
        assert got["Body"].read() == first + b"tail"
        # the parts' files were replaced by the one assembled file
        files = [p for p in (running.data_dir / "objects").rglob("*") if p.is_file()]
        assert len(files) == 1 and files[0].stat().st_size == 5 * MIB + 4
