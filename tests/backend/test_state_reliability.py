"""Races, crashes and hostile input: bounded in count and time, loopback only."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from conftest import BUCKET, Running, free_port, raw_request, s3_client, start_cli_server

from backend import checksums
from backend.s3 import credentials
from backend.s3.credentials import Credential

STAGING = "env:/staging/forkstage/terraform.tfstate"


def test_if_none_match_race_has_exactly_one_winner(state_server: Running) -> None:
    threads_n, rounds = 8, 100
    clients = [state_server.client() for _ in range(threads_n)]
    barrier = threading.Barrier(threads_n)
    outcomes: list[list[int]] = [[0] * threads_n for _ in range(rounds)]
    key = STAGING + ".tflock"

    def worker(i: int) -> None:
        s3 = clients[i]
        for r in range(rounds):
            barrier.wait(timeout=30)
            try:
                s3.put_object(Bucket=BUCKET, Key=key, Body=f"{r}:{i}".encode(), IfNoneMatch="*")
                outcomes[r][i] = 200
            except ClientError as exc:
                outcomes[r][i] = exc.response["ResponseMetadata"]["HTTPStatusCode"]
            barrier.wait(timeout=30)
            if outcomes[r][i] == 200:  # the winner unlocks, like Terraform after an apply
                got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                assert got == f"{r}:{i}".encode()
                s3.delete_object(Bucket=BUCKET, Key=key)
            barrier.wait(timeout=30)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert time.monotonic() - started < 120
    for r, row in enumerate(outcomes):
        assert sorted(row) == [200] + [412] * (threads_n - 1), f"round {r}: {row}"


@pytest.mark.slow
def test_kill_9_during_write_storm_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data = tmp_path / "state"
    port = free_port()
    proc = start_cli_server(data, port, "--retain", "100000")
    endpoint = f"http://127.0.0.1:{port}"
    admin = next(c for c in credentials.load(data) if c.policy == "admin")
    acked: list[tuple[str, str, bytes]] = []
    acked_lock = threading.Lock()
    stop = threading.Event()

    def writer(i: int) -> None:
        rng = random.Random(i)
        s3 = s3_client(endpoint, admin)
        n = 0
        while not stop.is_set():
            key = f"env:/w{i}/forkstage/terraform.tfstate" if n % 3 else f"k/{i}/{n}"
            body = os.urandom(rng.choice([10, 1000, 50_000, 300_000]))
            try:
                put = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            except (ClientError, BotoCoreError, OSError):
                return  # the server died under us: this write was never acknowledged
            with acked_lock:
                acked.append((key, put["VersionId"], body))
            n += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.05, 0.3))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 100

    proc = start_cli_server(data, port, "--retain", "100000")
    try:
        s3 = s3_client(endpoint, admin)
        for key, version_id, body in acked:
            got = s3.get_object(Bucket=BUCKET, Key=key, VersionId=version_id)["Body"].read()
            assert got == body, key
        # nothing torn: every stored version reads back and passes its sha256 check
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET)
        versions = [v for page in pages for v in page.get("Versions", [])]
        assert len(versions) >= len(acked)
        for v in versions:
            got = s3.get_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])
            assert len(got["Body"].read()) == v["Size"]
        db = sqlite3.connect(data / "state.sqlite3")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- hostile input -------------------------------------------------------------------------------


def _socket_exchange(endpoint: str, payload: bytes, *, half_close: bool = False) -> int:
    """Send raw bytes, return the HTTP status of the answer (0 if the server just closed)."""
    port = int(endpoint.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(payload)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    if not data.startswith(b"HTTP/1."):
        return 0
    return int(data.split(b" ", 2)[1])


def _snapshot(running: Running) -> Any:
    s3 = running.client()
    versions = s3.list_object_versions(Bucket=BUCKET)
    return (
        sorted(b["Name"] for b in s3.list_buckets()["Buckets"]),
        [(v["Key"], v["VersionId"], v["ETag"]) for v in versions.get("Versions", [])],
        [(m["Key"], m["VersionId"]) for m in versions.get("DeleteMarkers", [])],
    )


XML_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<CompleteMultipartUpload><Part><PartNumber>&lol3;</PartNumber></Part></CompleteMultipartUpload>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&e;</ETag></Part>
</CompleteMultipartUpload>"""


def test_hostile_requests_get_4xx_and_change_nothing(state_server: Running) -> None:
    running = state_server
    ep, admin = running.endpoint, running.admin
    s3 = running.client()
    s3.put_object(Bucket=BUCKET, Key=STAGING, Body=b'{"version": 4, "serial": 1}')
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
    pr = running.issue(policy="stage", stage="pr-147", read_outputs=["staging"])
    before = _snapshot(running)
    statuses: list[tuple[str, int]] = []

    def record(label: str, status: int) -> None:
        statuses.append((label, status))

    # A. authentication: unsigned, wrong secret, unknown key, expired, garbage header
    wrong = Credential(admin.access_key_id, "wrong-secret", "admin")
    unknown = Credential("FSAUNKNOWN0000000000", admin.secret_access_key, "admin")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    targets = [
        f"/{BUCKET}/env%3A/staging/forkstage/terraform.tfstate",
        f"/{BUCKET}/env%3A/staging/forkstage/terraform.tfstate.tflock",
        f"/{BUCKET}/new-key",
        f"/{BUCKET}/mp?uploadId={upload}",
        f"/{BUCKET}/mp?uploads",
        f"/{BUCKET}?list-type=2&prefix=env%3A%2F",
        f"/{BUCKET}?versions",
        "/newbucket",
    ]
    for path in targets:
        for method in ("GET", "PUT", "POST", "DELETE", "HEAD"):
            for label, cred, extra in [
                ("unsigned", None, {}),
                ("wrong", wrong, {}),
                ("unknown", unknown, {}),
                ("expired", admin, {"when": old}),
            ]:
                resp = raw_request(ep, method, path, cred, body=b"<x/>", **extra)
                record(f"A {label} {method} {path}", resp.status)
                assert resp.status in (403, 405), (label, method, path, resp.status)
            tampered = raw_request(
                ep, method, path, admin, body=b"<x/>", send_headers={"x-amz-meta-evil": "1"}
            )
            record(f"A tampered {method} {path}", tampered.status)
            assert tampered.status in (403, 405)
            garbage = raw_request(
                ep, method, path, None, send_headers={"Authorization": "AWS4-HMAC-SHA256 junk"}
            )
            record(f"A garbage {method} {path}", garbage.status)
            assert garbage.status in (403, 405)

    # B. hostile XML into CompleteMultipartUpload
    bodies = [
        b"<notxml",
        XML_BOMB,
        XXE,
        b"<Other/>",
        b"",
        b"\xff\xfe<x/>",
        b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part>"
        b"</CompleteMultipartUpload>",
        b"<CompleteMultipartUpload></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload>" + b"<a>" * 5000 + b"</CompleteMultipartUpload>",
        b"<CompleteMultipartUpload>" + b"x" * (3 * 1024 * 1024) + b"</CompleteMultipartUpload>",
    ]
    for body in bodies:
        for _ in range(3):
            resp = raw_request(ep, "POST", f"/{BUCKET}/mp?uploadId={upload}", admin, body=body)
            record("B xml", resp.status)
            assert resp.status == 400, (body[:40], resp.body)

    # C. keys: traversal, NUL, control characters, invalid UTF-8, too long
    keys = [
        "a/../b",
        "..",
        "a/./b",
        "%2e%2e/x",
        "a%00b",
        "a%01b",
        "%ff%fe",
        "x" * 1100,
        "env%3A/staging/..%2F..%2Fetc",
        "a%0Ab",
    ]
    for key in keys:
        for method in ("PUT", "GET", "DELETE", "HEAD", "POST"):
            path = f"/{BUCKET}/{key}" + ("?uploads" if method == "POST" else "")
            resp = raw_request(ep, method, path, admin, body=b"v" if method == "PUT" else b"")
            record(f"C key {key[:20]} {method}", resp.status)
            assert resp.status == 400, (key, method, resp.status)

    # D. protocol-level junk
    host = ep.split("//")[1]
    junk = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 1\r\n" * 150 + b"\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Mid: " + b"m" * 20000 + b"\r\n\r\n",
        b"PATCH /" + BUCKET.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /" + BUCKET.encode() + b"/k HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"PUT /" + BUCKET.encode() + b"/k HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
        b"GET http://evil.example/ HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n",
    ]
    for payload in junk:
        for _ in range(3):
            status = _socket_exchange(ep, payload, half_close=True)
            record(f"D {payload[:20]!r}", status)
            assert status == 0 or 400 <= status < 500, (payload[:40], status)

    # E. sizes and framing on signed requests
    big = {"Content-Length": str(50 * 1024**3)}
    resp = raw_request(ep, "PUT", f"/{BUCKET}/huge", admin, send_headers=big, timeout=5)
    record("E huge content-length", resp.status)
    assert (resp.status, resp.code) == (400, "EntityTooLarge")
    for _ in range(5):
        resp = raw_request(ep, "DELETE", f"/{BUCKET}/k", admin, body=b"z" * 100_000)
        record("E big body on delete", resp.status)
        assert resp.status == 400
        resp = raw_request(ep, "PUT", "/newbucket2", admin, body=b"<a/>" * 600_000)
        record("E big create bucket body", resp.status)
        assert resp.status == 400
        resp = raw_request(
            ep, "PUT", f"/{BUCKET}/k", admin, send_headers={"Transfer-Encoding": "gzip"}
        )
        record("E bad transfer-encoding", resp.status)
        assert resp.status in (400, 411)
        short = (
            f"PUT /{BUCKET}/short HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n0123"
        ).encode()
        status = _socket_exchange(ep, short, half_close=True)
        record("E short body", status)
        assert status in (0, 400, 403)

    # F. digests, payload hashes and aws-chunked framing
    marker = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    chunk_headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "5"}
    bad_framings = [
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhel",
        b"9\r\nhello\r\n0\r\n\r\n",
        b"5;chunk-signature=abc\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nnot a trailer\r\n\r\n",
        b"5\r\nhellohello\r\n0\r\n\r\n",
    ]
    for _ in range(3):
        for body in bad_framings:
            resp = raw_request(
                ep,
                "PUT",
                f"/{BUCKET}/chunky",
                admin,
                headers=chunk_headers,
                body=body,
                payload_hash=marker,
            )
            record("F framing", resp.status)
            assert resp.status == 400, (body, resp.body)
        for header, value in [
            ("x-amz-checksum-sha256", "not base64!"),
            ("x-amz-checksum-crc32", checksums.compute("crc32", b"other")),
            ("Content-MD5", "short"),
        ]:
            resp = raw_request(
                ep, "PUT", f"/{BUCKET}/dig", admin, headers={header: value}, body=b"data"
            )
            record("F digest", resp.status)
            assert resp.status == 400
        resp = raw_request(
            ep,
            "PUT",
            f"/{BUCKET}/dig",
            admin,
            body=b"data",
            payload_hash=hashlib.sha256(b"other").hexdigest(),
        )
        record("F payload hash", resp.status)
        assert (resp.status, resp.code) == (400, "XAmzContentSHA256Mismatch")

    # G. query parameters and ranges
    queries = [
        "?list-type=2&max-keys=-1",
        "?list-type=2&max-keys=abc",
        "?list-type=2&continuation-token=%%%",
        "?list-type=2&continuation-token=!!notbase64",
        "?list-type=2&encoding-type=xml",
        "?list-type=2&prefix=%ff",
        "?versions&key-marker=a&version-id-marker=nope",
        "?list-type=2&" + "&".join(f"p{i}=1" for i in range(100)),
    ]
    for _ in range(3):
        for q in queries:
            resp = raw_request(ep, "GET", f"/{BUCKET}{q}", admin)
            record(f"G {q[:30]}", resp.status)
            assert 400 <= resp.status < 500, (q, resp.body)
        for q in ("partNumber=0", "partNumber=10001", "partNumber=abc"):
            resp = raw_request(ep, "PUT", f"/{BUCKET}/mp?{q}&uploadId={upload}", admin, body=b"p")
            record("G part", resp.status)
            assert resp.status == 400
        resp = raw_request(ep, "PUT", f"/{BUCKET}/mp?partNumber=1&uploadId=nope", admin, body=b"p")
        record("G upload id", resp.status)
        assert (resp.status, resp.code) == (404, "NoSuchUpload")
        for rng in (
            "bytes=abc",
            "bytes=5-1",
            "bytes=99999-",
            "bytes=-0",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=99999999999999999999999-",
            "bytes=--1",
        ):
            resp = raw_request(
                ep,
                "GET",
                f"/{BUCKET}/env%3A/staging/forkstage/terraform.tfstate",
                admin,
                headers={"Range": rng},
            )
            record(f"G range {rng}", resp.status)
            assert resp.status in (200, 206, 416)

    # H. a PR credential stepping outside its policy
    pr_denied = [
        ("PUT", f"/{BUCKET}/env%3A/staging/forkstage/terraform.tfstate"),
        ("DELETE", f"/{BUCKET}/env%3A/staging/forkstage/terraform.tfstate"),
        ("POST", f"/{BUCKET}/env%3A/staging/forkstage/terraform.tfstate?uploads"),
        ("PUT", "/prbucket"),
        ("GET", "/"),
        ("GET", f"/{BUCKET}?versions&prefix=env%3A%2Fstaging%2F"),
        ("PUT", f"/{BUCKET}/forkstage/terraform.tfstate"),
        ("PUT", f"/{BUCKET}/env%3A/pr-147x/forkstage/terraform.tfstate"),
        ("DELETE", f"/{BUCKET}/mp?uploadId={upload}"),
        ("DELETE", f"/{BUCKET}"),
    ]
    for _ in range(5):
        for method, path in pr_denied:
            resp = raw_request(ep, method, path, pr, body=b"{}" if method == "PUT" else b"")
            record(f"H {method} {path}", resp.status)
            assert resp.status == 403, (method, path, resp.status, resp.body)

    assert len(statuses) >= 500, len(statuses)
    assert not [s for s in statuses if s[1] >= 500]
    assert _snapshot(running) == before
    # still alive and serving
    s3.put_object(Bucket=BUCKET, Key="after", Body=b"ok")
    assert s3.get_object(Bucket=BUCKET, Key="after")["Body"].read() == b"ok"
