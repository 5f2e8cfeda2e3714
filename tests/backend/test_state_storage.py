"""File-backed objects, old state files, exact Range parsing, one redacted view everywhere."""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import BUCKET, Running, _start, raw_request

from backend.limits import KIB, MIB, Limits
from backend.store import quota

DATA = Path(__file__).parent / "data"
STAGING = "env:/staging/forkstage/terraform.tfstate"


def test_file_backed_objects_stream_and_survive_restart(tmp_path: Path) -> None:
    limits = Limits(memory_body_bytes=64 * KIB)
    big = os.urandom(3 * MIB + 5)
    for running in _start(tmp_path / "d", limits=limits):
        s3 = running.client()
        s3.put_object(Bucket=BUCKET, Key="big", Body=big)
        s3.put_object(Bucket=BUCKET, Key="small", Body=b"inline")
    files = [p for p in (tmp_path / "d" / "objects").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].read_bytes() == big  # the large one only
    for running in _start(tmp_path / "d", limits=limits):
        s3 = running.client()
        got = s3.get_object(Bucket=BUCKET, Key="big", ChecksumMode="ENABLED")
        assert got["ContentLength"] == len(big) and got["Body"].read() == big
        part = s3.get_object(Bucket=BUCKET, Key="big", Range="bytes=1048570-2097160")
        assert part["Body"].read() == big[1048570:2097161]
        assert part["ContentRange"] == f"bytes 1048570-2097160/{len(big)}"
        tail = s3.get_object(Bucket=BUCKET, Key="big", Range="bytes=-7")["Body"].read()
        assert tail == big[-7:]
        assert s3.get_object(Bucket=BUCKET, Key="small")["Body"].read() == b"inline"
        # bit rot in a file: a whole read never completes (the last chunk is held back)
        with files[0].open("r+b") as fh:
            fh.seek(len(big) - 1)
            fh.write(bytes([big[-1] ^ 1]))
        with pytest.raises(http.client.IncompleteRead):
            raw_request(running.endpoint, "GET", f"/{BUCKET}/big", running.admin)


def test_state_file_of_the_previous_release_opens_and_serves(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    old = sqlite3.connect(data / "state.sqlite3")
    old.executescript((DATA / "state-beea2f4.sql").read_text())
    upload_id = old.execute("SELECT upload_id FROM uploads").fetchone()[0]
    old.close()
    keep = Limits(retain_days=100 * 365, upload_expiry_hours=100 * 365 * 24)
    for running in _start(data, limits=keep):
        s3 = running.client()
        state = json.loads(s3.get_object(Bucket=BUCKET, Key=STAGING)["Body"].read())
        assert state["serial"] == 3
        versions = s3.list_object_versions(Bucket=BUCKET, Prefix=STAGING + ".")
        assert len(versions["Versions"]) == 1  # the lock
        history = s3.list_object_versions(Bucket=BUCKET, Prefix=STAGING)["Versions"]
        assert len([v for v in history if v["Key"] == STAGING]) == 3
        markers = s3.list_object_versions(Bucket=BUCKET, Prefix="gone.txt")["DeleteMarkers"]
        assert markers[0]["IsLatest"] is True
        uploads = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
        assert [u["UploadId"] for u in uploads] == [upload_id]
        part = s3.list_parts(Bucket=BUCKET, Key="env:/staging/big.bin", UploadId=upload_id)
        etag = part["Parts"][0]["ETag"]
        s3.complete_multipart_upload(  # its part was stored inline by the old server
            Bucket=BUCKET,
            Key="env:/staging/big.bin",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
        got = s3.get_object(Bucket=BUCKET, Key="env:/staging/big.bin")["Body"].read()
        assert got == b"old part data"
        s3.put_object(Bucket=BUCKET, Key=STAGING, Body=b'{"version": 4, "serial": 4}')
        assert running.server.store.usage(BUCKET, "env:/staging/")[0] == 3
    db = sqlite3.connect(data / "state.sqlite3")
    assert quota.consistent(db)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_range_is_parsed_exactly_as_s3_does(state_server: Running) -> None:
    body = bytes(range(100))
    state_server.client().put_object(Bucket=BUCKET, Key="r", Body=body)

    def get(value: str | bytes) -> tuple[int, bytes, str]:
        resp = raw_request(
            state_server.endpoint,
            "GET",
            f"/{BUCKET}/r",
            state_server.admin,
            send_headers={"Range": value},  # type: ignore[dict-item]
        )
        return resp.status, resp.body, resp.headers.get("content-range", "")

    assert get("bytes=10-19") == (206, body[10:20], "bytes 10-19/100")
    assert get("bytes=90-") == (206, body[90:], "bytes 90-99/100")
    assert get("bytes=-3") == (206, body[-3:], "bytes 97-99/100")
    assert get("bytes=95-1000") == (206, body[95:], "bytes 95-99/100")
    ignored = [
        "bytes=1_0-2_0",
        "bytes=+1-2",
        "bytes= 1-2",
        "bytes=1 -2",
        "bytes=0-1,3-4",
        "bytes=5-1",
        "bytes=-",
        "items=0-1",
        "bytes=--1",
        "bytes=0x1-2",
        "bytes=\uff11-\uff12".encode(),  # full-width digits
    ]
    for value in ignored:
        assert get(value) == (200, body, ""), value
    for value in ("bytes=100-", "bytes=-0", "bytes=99999999999999999999999-"):
        resp = raw_request(
            state_server.endpoint,
            "GET",
            f"/{BUCKET}/r",
            state_server.admin,
            send_headers={"Range": value},
        )
        assert (resp.status, resp.code) == (416, "InvalidRange"), value
        assert resp.headers["content-range"] == "bytes */100"
    for query in ("max-keys=%EF%BC%91", "max-keys=1_0", "max-keys=%2B1", "max-keys=%201"):
        resp = raw_request(
            state_server.endpoint, "GET", f"/{BUCKET}?list-type=2&{query}", state_server.admin
        )
        assert (resp.status, resp.code) == (400, "InvalidArgument"), query


def test_outputs_only_listing_and_head_match_the_redacted_get(state_server: Running) -> None:
    admin = state_server.client()
    state = {
        "version": 4,
        "serial": 9,
        "lineage": "l",
        "terraform_version": "1.9.0",
        "outputs": {"url": {"value": "u", "type": "string"}, "pw": {"value": "x", "sensitive": 1}},
        "resources": [{"type": "neon_project", "instances": [{"attributes": {"pw": "x" * 500}}]}],
    }
    admin.put_object(Bucket=BUCKET, Key=STAGING, Body=json.dumps(state).encode())
    admin.put_object(Bucket=BUCKET, Key="env:/staging/notes.txt", Body=b"not a state")
    pr = state_server.client(
        state_server.issue(policy="stage", stage="pr-1", read_outputs=["staging"])
    )
    for _ in range(2):  # the second round is served from the cache of redacted views
        got = pr.get_object(Bucket=BUCKET, Key=STAGING)
        body = got["Body"].read()
        assert b"neon_project" not in body and got["ContentLength"] == len(body)
        head = pr.head_object(Bucket=BUCKET, Key=STAGING)
        assert (head["ContentLength"], head["ETag"]) == (len(body), got["ETag"])
        for listing in (
            pr.list_objects_v2(Bucket=BUCKET, Prefix="env:/staging/")["Contents"],
            pr.list_objects(Bucket=BUCKET, Prefix="env:/staging/")["Contents"],
        ):
            shown = {o["Key"]: (o["Size"], o["ETag"]) for o in listing}
            assert shown[STAGING] == (len(body), got["ETag"])
            assert shown["env:/staging/notes.txt"][0] == len(b"not a state")
    full = admin.list_objects_v2(Bucket=BUCKET, Prefix=STAGING)["Contents"][0]
    assert full["Size"] > len(body)
