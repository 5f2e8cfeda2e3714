"""Issue 22's refusals: answered before the body, per-credential caps, numbers of any length,
one authentication per request, strict chunk sizes, the signing region, bad reserves at start."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import (
    BUCKET,
    Running,
    _start,
    port_of,
    raw_exchange,
    raw_request,
    read_response,
    signed_head,
)

from backend.limits import Limits
from backend.s3.credentials import Credential

UNSIGNED = "UNSIGNED-PAYLOAD"
NINES = "9" * 5000


@contextlib.contextmanager
def serving(tmp_path: Path, **kwargs: Any) -> Iterator[Running]:
    yield from _start(tmp_path / "state", **kwargs)


def connect(endpoint: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(endpoint)), timeout=5)


def unsigned_put(endpoint: str, key: str, length: int) -> bytes:
    host = endpoint.split("//", 1)[1]
    return (
        f"PUT /{BUCKET}/{key} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n"
        f"x-amz-content-sha256: {UNSIGNED}\r\n\r\n"
    ).encode()


# -- refused before the body ----------------------------------------------------------------


def test_a_refused_body_is_answered_at_once_and_drained_only_while_fast(
    state_server: Running,
) -> None:
    ep = state_server.endpoint
    with connect(ep) as sock:  # 1 MiB declared, 10 bytes sent: the 403 does not wait for it
        started = time.monotonic()
        sock.sendall(unsigned_put(ep, "slow", 1 << 20) + b"x" * 10)
        answer = read_response(sock)
        assert answer is not None and answer.status == 403
        assert time.monotonic() - started < 0.5
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(65536):
                pass
        assert time.monotonic() - started < 3.0  # the slow rest is not waited for
    with connect(ep) as sock:  # a refused body that arrives at once keeps the connection
        sock.sendall(unsigned_put(ep, "fast", 10) + b"0123456789")
        answer = read_response(sock)
        assert answer is not None and answer.status == 403
        assert answer.headers.get("connection") != "close"
        sock.sendall(b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n")
        health = read_response(sock)
        assert health is not None and health.status == 200


def test_a_stage_credential_has_a_cap_on_requests_in_flight(tmp_path: Path) -> None:
    with serving(tmp_path, limits=Limits(max_requests_per_credential=2)) as running:
        ep, stage = running.endpoint, running.issue(policy="stage", stage="pr-1")
        held = []
        for i in range(2):  # two uploads in the middle of their bodies
            sock = connect(ep)
            head = signed_head(
                ep,
                "PUT",
                f"/{BUCKET}/env%3A/pr-1/up{i}",
                stage,
                headers={"Content-Length": "10"},
                payload_hash=UNSIGNED,
            )
            sock.sendall(head + b"01234")
            held.append(sock)
        time.sleep(0.2)
        third = raw_request(ep, "PUT", f"/{BUCKET}/env%3A/pr-1/third", stage, body=b"x")
        assert (third.status, third.code) == (503, "SlowDown")
        assert third.headers["retry-after"] == "1"
        admin = raw_request(ep, "PUT", f"/{BUCKET}/admin-is-exempt", running.admin, body=b"x")
        assert admin.status == 200
        for sock in held:
            sock.sendall(b"56789")
            done = read_response(sock)
            assert done is not None and done.status == 200
            sock.close()
        again = raw_request(ep, "PUT", f"/{BUCKET}/env%3A/pr-1/third", stage, body=b"x")
        assert again.status == 200


# -- numbers of any length ----------------------------------------------------------------


def test_range_numbers_of_any_length_answer_as_huge_numbers(state_server: Running) -> None:
    ep, admin = state_server.endpoint, state_server.admin
    state_server.client().put_object(Bucket=BUCKET, Key="r", Body=b"0123456789")
    cases = {
        f"bytes={NINES}-": (416, b""),
        f"bytes=-{NINES}": (206, b"0123456789"),
        f"bytes=0-{NINES}": (206, b"0123456789"),
        f"bytes=2-{NINES}": (206, b"23456789"),
        f"bytes={NINES}-{NINES}": (416, b""),
        f"bytes={NINES}-5": (200, b"0123456789"),  # last < first: ignored, as S3 does
        f"bytes={'0' * 5000}3-4": (206, b"34"),
    }
    for spec, (status, body) in cases.items():
        got = raw_request(ep, "GET", f"/{BUCKET}/r", admin, headers={"Range": spec})
        assert got.status == status, (spec[:20], got.status, got.body[:200])
        if status != 416:
            assert got.body == body
    # other numbers past their bound are a 400, never a 500
    for query in (f"?list-type=2&max-keys={NINES}", f"?uploads&max-uploads={NINES}"):
        assert raw_request(ep, "GET", f"/{BUCKET}{query}", admin).status == 400
    part = raw_request(ep, "PUT", f"/{BUCKET}/r?partNumber={NINES}&uploadId=x", admin, body=b"1")
    assert part.status == 400
    long_length = signed_head(ep, "PUT", f"/{BUCKET}/n", admin).replace(
        b"\r\n\r\n", f"\r\nContent-Length: {NINES}\r\n\r\n".encode()
    )
    answer = raw_exchange(ep, long_length)
    assert answer is not None and answer.status == 400


# -- one authentication, strict framing, the region ------------------------------------------


def test_two_authorizations_or_a_header_signature_with_presign_parameters_are_400(
    state_server: Running,
) -> None:
    ep, admin = state_server.endpoint, state_server.admin
    head = signed_head(ep, "GET", f"/{BUCKET}", admin)
    auth = next(line for line in head.split(b"\r\n") if line.startswith(b"Authorization:"))
    twice = raw_exchange(ep, head.replace(b"\r\n\r\n", b"\r\n" + auth + b"\r\n\r\n"))
    assert twice is not None and (twice.status, twice.code) == (400, "InvalidArgument")
    other_first = head.replace(auth, b"Authorization: AWS4-HMAC-SHA256 bogus\r\n" + auth)
    refused = raw_exchange(ep, other_first)
    assert refused is not None and refused.status == 400
    for query in (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Credential=a%2Fb",
        "x-amz-signature=0",
    ):
        both = raw_request(ep, "GET", f"/{BUCKET}?{query}", admin)
        assert (both.status, both.code) == (400, "InvalidArgument"), query


def test_chunk_sizes_are_hex_digits_only(state_server: Running) -> None:
    ep, admin = state_server.endpoint, state_server.admin
    for framing in (b"5 \r\nhello\r\n0\r\n\r\n", b" 5\r\nhello\r\n0\r\n\r\n", b"0x5\r\nhello"):
        head = signed_head(
            ep,
            "PUT",
            f"/{BUCKET}/chunked",
            admin,
            headers={"Transfer-Encoding": "chunked"},
            payload_hash=UNSIGNED,
        )
        answer = raw_exchange(ep, head + framing)
        assert answer is not None and answer.status == 400, framing
    head = signed_head(
        ep,
        "PUT",
        f"/{BUCKET}/chunked",
        admin,
        headers={"Transfer-Encoding": "chunked"},
        payload_hash=UNSIGNED,
    )
    ok = raw_exchange(ep, head + b"5;ext=1\r\nhello\r\n0\r\n\r\n")
    assert ok is not None and ok.status == 200
    assert state_server.client().get_object(Bucket=BUCKET, Key="chunked")["Body"].read() == (
        b"hello"
    )


def _signed_in(region: str, endpoint: str, cred: Credential) -> dict[str, str]:
    request = AWSRequest(
        method="GET",
        url=f"{endpoint}/{BUCKET}",
        headers={"x-amz-content-sha256": hashlib.sha256(b"").hexdigest()},
    )
    request.context["timestamp"] = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    keys = Credentials(cred.access_key_id, cred.secret_access_key)
    S3SigV4Auth(keys, "s3", region).add_auth(request)
    # raw_request sends x-amz-content-sha256 itself (the same hash of an empty body)
    return {k: v for k, v in request.headers.items() if k.lower() != "x-amz-content-sha256"}


def test_the_signing_region_must_be_the_servers(tmp_path: Path) -> None:
    for running in _start(tmp_path / "default"):
        ep, admin = running.endpoint, running.admin
        wrong = raw_request(
            ep, "GET", f"/{BUCKET}", None, send_headers=_signed_in("eu-west-1", ep, admin)
        )
        assert (wrong.status, wrong.code) == (400, "AuthorizationHeaderMalformed")
        assert b"<Region>us-east-1</Region>" in wrong.body
        right = raw_request(
            ep, "GET", f"/{BUCKET}", None, send_headers=_signed_in("us-east-1", ep, admin)
        )
        assert right.status == 200
    for running in _start(tmp_path / "eu", region="eu-west-1"):
        ep, admin = running.endpoint, running.admin
        listed = running.client().list_objects_v2(Bucket=BUCKET)  # signed for us-east-1
        assert listed["KeyCount"] == 0  # boto3 follows the region the error names
        eu = raw_request(
            ep, "GET", f"/{BUCKET}", None, send_headers=_signed_in("eu-west-1", ep, admin)
        )
        assert eu.status == 200
        us = raw_request(
            ep, "GET", f"/{BUCKET}", None, send_headers=_signed_in("us-east-1", ep, admin)
        )
        assert (us.status, us.code) == (400, "AuthorizationHeaderMalformed")


def test_bad_region_and_oversized_reserve_are_one_line_errors(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "backend", "serve", "--port", "0", "--data", str(tmp_path)]
    for extra, says in (
        (["--disk-reserve", "1000TiB"], "--disk-reserve"),
        (["--region", "Not A Region"], "--region"),
    ):
        done = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert not (tmp_path / "state.sqlite3").exists()
