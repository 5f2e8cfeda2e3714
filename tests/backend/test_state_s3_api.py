"""The S3 API subset, driven by boto3 (and raw signed requests where boto3 will not go)."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import zlib
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import BUCKET, Running, _start, raw_request

from backend import checksums
from backend.limits import Limits


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_checksum_algorithms_match_published_vectors() -> None:
    data = b"123456789"
    assert base64.b64decode(checksums.compute("crc32c", data)).hex() == "e3069283"
    assert base64.b64decode(checksums.compute("crc64nvme", data)).hex() == "ae8b14860a799888"
    assert int.from_bytes(base64.b64decode(checksums.compute("crc32", data))) == zlib.crc32(data)


def test_buckets(state_server: Running) -> None:
    s3 = state_server.client()
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
    s3.create_bucket(Bucket="other-bucket")
    s3.head_bucket(Bucket="other-bucket")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="other-bucket")
    assert code_of(exc) == "BucketAlreadyOwnedByYou"
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="Bad_Name")
    assert code_of(exc) == "InvalidBucketName"
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="nope-bucket")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="nope-bucket")
    assert code_of(exc) == "NoSuchBucket"
    assert sorted(b["Name"] for b in s3.list_buckets()["Buckets"]) == [BUCKET, "other-bucket"]


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA1", "SHA256"])
def test_put_get_with_checksums(state_server: Running, algorithm: str) -> None:
    s3 = state_server.client()
    body = b'{"version": 4}' * 100
    put = s3.put_object(Bucket=BUCKET, Key="k.json", Body=body, ChecksumAlgorithm=algorithm)
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=BUCKET, Key="k.json", ChecksumMode="ENABLED")
    assert got["Body"].read() == body  # boto3 validates the returned checksum
    assert got[f"Checksum{algorithm}"] == checksums.compute(algorithm.lower(), body)
    assert got["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()


def test_wrong_checksum_is_rejected_and_changes_nothing(state_server: Running) -> None:
    bad = checksums.compute("crc32c", b"something else")
    for header, value in [
        ("x-amz-checksum-crc32c", bad),
        ("x-amz-checksum-sha256", checksums.compute("sha256", b"x")),
        ("Content-MD5", base64.b64encode(hashlib.md5(b"x").digest()).decode()),
    ]:
        resp = raw_request(
            state_server.endpoint,
            "PUT",
            f"/{BUCKET}/k",
            state_server.admin,
            headers={header: value},
            body=b"payload",
        )
        assert (resp.status, resp.code) == (400, "BadDigest")
    good = raw_request(
        state_server.endpoint,
        "PUT",
        f"/{BUCKET}/k",
        state_server.admin,
        headers={"x-amz-checksum-crc32c": checksums.compute("crc32c", b"payload")},
        body=b"payload",
    )
    assert good.status == 200
    assert good.headers["x-amz-checksum-crc32c"] == checksums.compute("crc32c", b"payload")
    versions = state_server.client().list_object_versions(Bucket=BUCKET)["Versions"]
    assert len(versions) == 1


def test_ranges(state_server: Running) -> None:
    s3 = state_server.client()
    body = bytes(range(256)) * 4
    s3.put_object(Bucket=BUCKET, Key="r", Body=body)
    got = s3.get_object(Bucket=BUCKET, Key="r", Range="bytes=10-19")
    assert got["Body"].read() == body[10:20]
    assert got["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket=BUCKET, Key="r", Range="bytes=-5")["Body"].read() == body[-5:]
    assert s3.get_object(Bucket=BUCKET, Key="r", Range="bytes=1000-")["Body"].read() == body[1000:]
    whole = s3.get_object(Bucket=BUCKET, Key="r", Range="bytes=0-5242879", ChecksumMode="ENABLED")
    assert whole["Body"].read() == body and whole["ContentLength"] == len(body)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="r", Range=f"bytes={len(body)}-")
    assert code_of(exc) == "InvalidRange"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    # a range that does not parse is ignored, like S3 does
    assert s3.get_object(Bucket=BUCKET, Key="r", Range="bytes=x-y")["Body"].read() == body


def test_conditional_writes(state_server: Running) -> None:
    s3 = state_server.client()
    key = "env:/staging/forkstage/terraform.tfstate.tflock"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"lock-1", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"lock-2", IfNoneMatch="*")
    assert code_of(exc) == "PreconditionFailed"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"lock-1"
    s3.delete_object(Bucket=BUCKET, Key=key)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"lock-3", IfNoneMatch="*")  # over a delete marker
    etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", IfMatch='"0000"')
    assert code_of(exc) == "PreconditionFailed"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"lock-4", IfMatch=etag)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key="missing", Body=b"x", IfMatch=etag)
    assert code_of(exc) == "NoSuchKey"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"lock-4"


def test_percent_encoded_workspace_keys(state_server: Running) -> None:
    s3 = state_server.client()
    key = "env:/staging/dir with space/a+b%c.tfstate"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"v")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"v"
    raw = raw_request(
        state_server.endpoint,
        "GET",
        f"/{BUCKET}/env%3A/staging/dir%20with%20space/a%2Bb%25c.tfstate",
        state_server.admin,
    )
    assert raw.status == 200 and raw.body == b"v"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="env:/")["Contents"]
    assert [o["Key"] for o in listed] == [key]


def test_list_paging_and_delimiter(state_server: Running) -> None:
    s3 = state_server.client()
    keys = sorted(
        [f"env:/ws{i:02d}/forkstage/terraform.tfstate" for i in range(23)] + ["top.txt", "z/a"]
    )
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key="z/a")
    seen: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, PaginationConfig={"PageSize": 10}
    )
    sizes = []
    for page in pages:
        sizes.append(page["KeyCount"])
        seen += [o["Key"] for o in page.get("Contents", [])]
    assert seen == [k for k in keys if k != "z/a"]
    assert sizes == [10, 10, 4]
    top = s3.list_objects_v2(Bucket=BUCKET, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["env:/"]
    assert [o["Key"] for o in top["Contents"]] == ["top.txt"]
    ws = s3.list_objects_v2(Bucket=BUCKET, Prefix="env:/", Delimiter="/", MaxKeys=5)
    assert [p["Prefix"] for p in ws["CommonPrefixes"]] == [f"env:/ws{i:02d}/" for i in range(5)]
    rest = s3.list_objects_v2(
        Bucket=BUCKET,
        Prefix="env:/",
        Delimiter="/",
        ContinuationToken=ws["NextContinuationToken"],
    )
    assert [p["Prefix"] for p in rest["CommonPrefixes"]] == [
        f"env:/ws{i:02d}/" for i in range(5, 23)
    ]
    assert rest["IsTruncated"] is False
    v1 = s3.list_objects(Bucket=BUCKET, Prefix="env:/ws0", MaxKeys=3)
    assert len(v1["Contents"]) == 3 and v1["IsTruncated"] is True


def test_multipart_out_of_order(state_server: Running) -> None:
    s3 = state_server.client()
    mib5 = 5 * 1024 * 1024
    parts = [b"a" * mib5, b"b" * mib5, b"tail"]
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="big", ChecksumAlgorithm="SHA256")
    uid = up["UploadId"]
    etags = {}
    for number in (3, 1, 2):
        resp = s3.upload_part(
            Bucket=BUCKET,
            Key="big",
            UploadId=uid,
            PartNumber=number,
            Body=parts[number - 1],
            ChecksumAlgorithm="SHA256",
        )
        etags[number] = (resp["ETag"], resp["ChecksumSHA256"])
    listing = [
        {"PartNumber": n, "ETag": etags[n][0], "ChecksumSHA256": etags[n][1]} for n in (1, 2, 3)
    ]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="big",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"ffff"'}]},
        )
    assert code_of(exc) == "InvalidPart"
    done = s3.complete_multipart_upload(
        Bucket=BUCKET, Key="big", UploadId=uid, MultipartUpload={"Parts": listing}
    )
    assert done["ETag"].endswith('-3"')
    got = s3.get_object(Bucket=BUCKET, Key="big", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=BUCKET, Key="big", UploadId=uid, PartNumber=1, Body=b"x")
    assert code_of(exc) == "NoSuchUpload"


def test_multipart_small_part_and_abort(state_server: Running) -> None:
    s3 = state_server.client()
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key="m")["UploadId"]
    e1 = s3.upload_part(Bucket=BUCKET, Key="m", UploadId=uid, PartNumber=1, Body=b"1")["ETag"]
    e2 = s3.upload_part(Bucket=BUCKET, Key="m", UploadId=uid, PartNumber=2, Body=b"2")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="m",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]
            },
        )
    assert code_of(exc) == "EntityTooSmall"
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="m",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]
            },
        )
    assert code_of(exc) == "InvalidPartOrder"
    s3.abort_multipart_upload(Bucket=BUCKET, Key="m", UploadId=uid)
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=BUCKET, Key="m", UploadId=uid)
    assert code_of(exc) == "NoSuchUpload"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="m")


def test_versions_and_delete_markers(state_server: Running) -> None:
    s3 = state_server.client()
    ids = [
        s3.put_object(Bucket=BUCKET, Key="s", Body=f"v{i}".encode())["VersionId"] for i in range(3)
    ]
    marker = s3.delete_object(Bucket=BUCKET, Key="s")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="s")
    assert code_of(exc) == "NoSuchKey"
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix="s")
    assert [v["VersionId"] for v in listed["Versions"]] == ids[::-1]
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [marker["VersionId"]]
    assert listed["DeleteMarkers"][0]["IsLatest"] is True
    old = s3.get_object(Bucket=BUCKET, Key="s", VersionId=ids[0])
    assert old["Body"].read() == b"v0" and old["VersionId"] == ids[0]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="s", VersionId="nope")
    assert code_of(exc) == "NoSuchVersion"
    paged = s3.list_object_versions(Bucket=BUCKET, Prefix="s", MaxKeys=2)
    assert paged["IsTruncated"] is True
    rest = s3.list_object_versions(
        Bucket=BUCKET,
        Prefix="s",
        KeyMarker=paged["NextKeyMarker"],
        VersionIdMarker=paged["NextVersionIdMarker"],
    )
    assert len(rest["Versions"]) + len(rest.get("DeleteMarkers", [])) == 2
    # an admin may erase one version for good; the newest version becomes current again
    s3.delete_object(Bucket=BUCKET, Key="s", VersionId=marker["VersionId"])
    assert s3.get_object(Bucket=BUCKET, Key="s")["Body"].read() == b"v2"


def test_retention_keeps_last_n_versions(tmp_path: Path) -> None:
    for running in _start(tmp_path / "d", limits=Limits(retain_versions=3)):
        s3 = running.client()
        for i in range(6):
            s3.put_object(Bucket=BUCKET, Key="k", Body=f"{i}".encode())
        versions = s3.list_object_versions(Bucket=BUCKET)["Versions"]
        assert len(versions) == 3
        bodies = [
            s3.get_object(Bucket=BUCKET, Key="k", VersionId=v["VersionId"])["Body"].read()
            for v in versions
        ]
        assert bodies == [b"5", b"4", b"3"]


def test_bit_rot_is_detected_on_read(state_server: Running) -> None:
    s3 = state_server.client()
    s3.put_object(Bucket=BUCKET, Key="rot", Body=b"precious state")
    db = sqlite3.connect(state_server.data_dir / "state.sqlite3")
    db.execute("UPDATE blobs SET data = ?", (b"precious stat3",))
    db.commit()
    db.close()
    resp = raw_request(state_server.endpoint, "GET", f"/{BUCKET}/rot", state_server.admin)
    assert (resp.status, resp.code) == (500, "InternalError")
    assert b"precious" not in resp.body


def test_expect_100_continue(state_server: Running) -> None:
    body = b"x" * (3 * 1024 * 1024)
    resp = raw_request(
        state_server.endpoint,
        "PUT",
        f"/{BUCKET}/big-expect",
        state_server.admin,
        headers={"Expect": "100-continue"},
        body=body,
    )
    assert resp.status == 200
    got = state_server.client().get_object(Bucket=BUCKET, Key="big-expect")["Body"].read()
    assert got == body


def test_https_aws_chunked_with_trailing_checksum(tls_server: Running) -> None:
    s3 = tls_server.client()
    body = b"state over tls" * 1000
    s3.put_object(Bucket=BUCKET, Key="tls", Body=body, ChecksumAlgorithm="SHA256")
    got = s3.get_object(Bucket=BUCKET, Key="tls", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ChecksumSHA256"] == checksums.compute("sha256", body)


def test_aws_chunked_body_decoding_and_bad_trailer(state_server: Running) -> None:
    payload = b"0123456789" * 50
    good_sum = checksums.compute("sha256", payload)

    def chunked(trailer_value: str) -> bytes:
        return (
            f"{len(payload):x}\r\n".encode()
            + payload
            + f"\r\n0\r\nx-amz-checksum-sha256:{trailer_value}\r\n\r\n".encode()
        )

    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(payload)),
        "x-amz-trailer": "x-amz-checksum-sha256",
    }
    marker = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    ok = raw_request(
        state_server.endpoint,
        "PUT",
        f"/{BUCKET}/chunked",
        state_server.admin,
        headers=headers,
        body=chunked(good_sum),
        payload_hash=marker,
    )
    assert ok.status == 200
    bad = raw_request(
        state_server.endpoint,
        "PUT",
        f"/{BUCKET}/chunked",
        state_server.admin,
        headers=headers,
        body=chunked(checksums.compute("sha256", b"other")),
        payload_hash=marker,
    )
    assert (bad.status, bad.code) == (400, "BadDigest")
    got = state_server.client().get_object(Bucket=BUCKET, Key="chunked")["Body"].read()
    assert got == payload
