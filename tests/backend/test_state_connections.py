"""Connections under hostile clients: the cap, deadlines, malformed heads, log lines, memory.

Deadlines are set to about a second so each case takes seconds; malformed input goes over raw
sockets (boto3 will not send it) and the legitimate client is boto3.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import (
    BUCKET,
    Running,
    _start,
    cpu_seconds,
    free_port,
    port_of,
    proc_status,
    raw_exchange,
    raw_request,
    read_response,
    s3_client,
    signed_head,
    start_module_server,
)

from backend.limits import MIB, Limits
from backend.s3 import credentials

UNSIGNED = "UNSIGNED-PAYLOAD"


@contextlib.contextmanager
def serving(tmp_path: Path, **limits: Any) -> Iterator[tuple[Running, list[str]]]:
    lines: list[str] = []
    for running in _start(tmp_path / "state", limits=Limits(**limits), log=lines.append):
        yield running, lines


def connect(endpoint: str, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(endpoint)), timeout=timeout)


def closed_after(sock: socket.socket, started: float) -> float:
    """Seconds from ``started`` until the server closed ``sock`` (reading and dropping input)."""
    with contextlib.suppress(ConnectionResetError):
        while sock.recv(65536):
            pass
    return time.monotonic() - started


# -- the connection cap and the descriptor limit -------------------------------------------------


def _fd_limit(n: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


@pytest.mark.parametrize("cap", [64, 1000], ids=["capped", "past-the-fd-limit"])
def test_idle_flood_under_a_low_fd_limit_neither_spins_nor_blocks(tmp_path: Path, cap: int) -> None:
    """300 idle connections (a third with half a head) against 256 descriptors: with the cap,
    the oldest idle ones are closed; past the descriptor limit (EMFILE), accepting pauses 100 ms
    and idle ones make room. Either way the server stays idle and boto3 is served."""
    port, data = free_port(), tmp_path / "s"
    proc = start_module_server(
        data, port, "--quiet", "--max-connections", str(cap), preexec_fn=_fd_limit(256)
    )
    flood: list[socket.socket] = []
    try:
        for i in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 3 == 0:
                sock.sendall(b"GET /forkstage-state HTTP/1.1\r\nHost: x\r\n")
            flood.append(sock)
        time.sleep(0.5)
        s3 = s3_client(f"http://127.0.0.1:{port}", credentials.load(data)[0])
        s3.put_object(Bucket=BUCKET, Key="during-flood", Body=b"served")
        assert s3.get_object(Bucket=BUCKET, Key="during-flood")["Body"].read() == b"served"
        before = cpu_seconds(proc.pid)
        time.sleep(2)
        assert cpu_seconds(proc.pid) - before < 0.3  # a spinning accept loop burns ~2 s
        assert s3.head_object(Bucket=BUCKET, Key="during-flood")["ContentLength"] == 6
    finally:
        for sock in flood:
            sock.close()
        proc.terminate()
        proc.communicate(timeout=10)


def test_the_cap_evicts_the_oldest_idle_connection_then_says_slow_down(tmp_path: Path) -> None:
    with serving(tmp_path, max_connections=2, body_grace=30) as (running, _):
        ep = running.endpoint
        health = b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n"
        oldest, second = connect(ep), connect(ep)
        time.sleep(0.2)
        with connect(ep) as third:
            third.sendall(health)
            answer = read_response(third)
            assert answer is not None and answer.status == 200
        assert oldest.recv(1) == b""  # evicted to make room
        second.sendall(health)
        answer = read_response(second)
        assert answer is not None and answer.status == 200
        oldest.close()
        second.close()
        time.sleep(0.2)
        # two uploads in the middle of their bodies: nothing can be evicted
        uploads = []
        for i in range(2):
            sock = connect(ep)
            sock.sendall(
                signed_head(
                    ep,
                    "PUT",
                    f"/{BUCKET}/up{i}",
                    running.admin,
                    headers={"Content-Length": "10"},
                    payload_hash=UNSIGNED,
                )
                + b"01234"
            )
            uploads.append(sock)
        time.sleep(0.3)
        with connect(ep) as extra:
            refused = read_response(extra)
        assert refused is not None
        assert (refused.status, refused.code) == (503, "SlowDown")
        assert refused.headers["connection"] == "close"
        for sock in uploads:
            sock.sendall(b"56789")
            done = read_response(sock)
            assert done is not None and done.status == 200
            sock.close()


# -- deadlines -----------------------------------------------------------------------------------


def test_deadlines_cut_slow_heads_idle_connections_and_stalled_bodies(tmp_path: Path) -> None:
    with serving(tmp_path, header_timeout=1, idle_timeout=1, body_grace=0.5) as (running, _):
        ep = running.endpoint
        # a head trickled a byte every 0.2 s: each byte is prompt, the head as a whole is not
        with connect(ep) as sock:
            stop = threading.Event()

            def trickle() -> None:
                for byte in b"GET /-/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
                    if stop.wait(0.2):
                        return
                    with contextlib.suppress(OSError):
                        sock.send(bytes([byte]))

            started = time.monotonic()
            sender = threading.Thread(target=trickle)
            sender.start()
            elapsed = closed_after(sock, started)
            stop.set()
            sender.join()
        assert 1.0 <= elapsed < 2.5, elapsed
        # a new connection that never sends is cut after header_timeout
        with connect(ep) as sock:
            assert 0.9 <= closed_after(sock, time.monotonic()) < 2.5
        # keep-alive: answered, then cut after idle_timeout
        with connect(ep) as sock:
            sock.sendall(b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_response(sock)
            assert answer is not None and answer.status == 200
            assert 0.9 <= closed_after(sock, time.monotonic()) < 2.5
        # a body that stalls: 400 RequestTimeout once the average rate drops after body_grace
        with connect(ep) as sock:
            sock.sendall(
                signed_head(
                    ep,
                    "PUT",
                    f"/{BUCKET}/stalled",
                    running.admin,
                    headers={"Content-Length": "1000000"},
                    payload_hash=UNSIGNED,
                )
                + b"x" * 10
            )
            started = time.monotonic()
            cut = read_response(sock)
            assert cut is not None and (cut.status, cut.code) == (400, "RequestTimeout")
            assert 0.5 <= time.monotonic() - started < 2.0
        with pytest.raises(ClientError):
            running.client().head_object(Bucket=BUCKET, Key="stalled")


# -- malformed heads and request targets -----------------------------------------------------------

_MALFORMED = {
    "non-ASCII digits in Content-Length": "PUT /forkstage-state/k HTTP/1.1\r\nHost: x\r\n"
    "Content-Length: \uff11\uff12\r\n\r\n".encode(),
    "two equal Content-Length headers": b"PUT /forkstage-state/k HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nab",
    "Content-Length with Transfer-Encoding": b"PUT /forkstage-state/k HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "decoded length not digits": b"PUT /forkstage-state/k HTTP/1.1\r\nHost: x\r\n"
    b"x-amz-decoded-content-length: 1e3\r\n\r\n",
    "obs-fold": b"GET /forkstage-state HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
    "NUL in a value": b"GET /forkstage-state HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bare CR": b"GET /forkstage-state HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    "space in a header name": b"GET /forkstage-state HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n",
    "two Host headers": b"GET /forkstage-state HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "# in the target": b"PUT /forkstage-state/k#x HTTP/1.1\r\nHost: x\r\n\r\n",
    "raw byte outside pchar": b"GET /forkstage-state/k{x} HTTP/1.1\r\nHost: x\r\n\r\n",
    "truncated escape": b"GET /forkstage-state/k%4 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad escape": b"GET /forkstage-state/k%zz HTTP/1.1\r\nHost: x\r\n\r\n",
    "query name twice": b"GET /forkstage-state?prefix=a&prefix=b HTTP/1.1\r\nHost: x\r\n\r\n",
}


def test_malformed_heads_get_400_before_anything_else(state_server: Running) -> None:
    s3 = state_server.client()
    for label, payload in _MALFORMED.items():
        answer = raw_exchange(state_server.endpoint, payload)
        assert answer is not None, label
        assert answer.status == 400, (label, answer.status, answer.body)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_a_signed_request_replayed_onto_key_fragment_is_refused(state_server: Running) -> None:
    ep, admin = state_server.endpoint, state_server.admin
    body = b"captured"
    head = signed_head(ep, "PUT", f"/{BUCKET}/replay", admin, body=body)
    replayed = head.replace(f"/{BUCKET}/replay ".encode(), f"/{BUCKET}/replay#x ".encode(), 1)
    payload = replayed.replace(b"\r\n\r\n", f"\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    answer = raw_exchange(ep, payload + body)
    assert answer is not None and answer.status == 400
    assert "Contents" not in state_server.client().list_objects_v2(Bucket=BUCKET)


def test_range_with_underscores_is_ignored(state_server: Running) -> None:
    s3 = state_server.client()
    s3.put_object(Bucket=BUCKET, Key="r", Body=b"0123456789" * 3)
    got = raw_request(
        state_server.endpoint,
        "GET",
        f"/{BUCKET}/r",
        state_server.admin,
        headers={"Range": "bytes=1_0-2_0"},
    )
    assert (got.status, got.body) == (200, b"0123456789" * 3)


# -- bodies: sizes, 100-continue, digests -------------------------------------------------------


def test_size_is_refused_before_the_body_and_continue_comes_after_checks(tmp_path: Path) -> None:
    with serving(tmp_path, max_object_bytes=1 * MIB) as (running, _):
        ep, admin = running.endpoint, running.admin
        expect = {"Expect": "100-continue"}

        def head_only(path: str, length: int, cred: object = admin) -> bytes:
            headers = {**expect, "Content-Length": str(length)}
            if cred is None:
                return (
                    f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                    "Expect: 100-continue\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n"
                ).encode()
            return signed_head(ep, "PUT", path, admin, headers=headers, payload_hash=UNSIGNED)

        too_big = raw_exchange(ep, head_only(f"/{BUCKET}/big", 2 * MIB))
        assert too_big is not None and (too_big.status, too_big.code) == (400, "EntityTooLarge")
        stranger = raw_exchange(ep, head_only(f"/{BUCKET}/big", 10, cred=None))
        assert stranger is not None and stranger.status == 403
        with connect(ep) as sock:
            sock.sendall(head_only(f"/{BUCKET}/small", 10))
            assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(b"0123456789")
            done = read_response(sock)
            assert done is not None and done.status == 200
        # a chunked body growing past the limit is cut as it grows
        with connect(ep) as sock:
            sock.sendall(
                signed_head(
                    ep,
                    "PUT",
                    f"/{BUCKET}/growing",
                    admin,
                    headers={"Transfer-Encoding": "chunked"},
                    payload_hash=UNSIGNED,
                )
            )
            with contextlib.suppress(OSError):
                for _ in range(8):
                    sock.sendall(b"40000\r\n" + b"g" * 0x40000 + b"\r\n")
            cut = read_response(sock)
            assert cut is not None and (cut.status, cut.code) == (400, "EntityTooLarge")
        # a spooled body whose digest does not match is refused and its spool file removed
        wrong = raw_request(
            ep, "PUT", f"/{BUCKET}/mismatch", admin, body=b"m" * (600 * 1024), payload_hash="0" * 64
        )
        assert (wrong.status, wrong.code) == (400, "XAmzContentSHA256Mismatch")
        assert not list((running.data_dir / "tmp").glob("body-*"))
        s3 = running.client()
        for key in ("big", "growing", "mismatch"):
            with pytest.raises(ClientError):
                s3.head_object(Bucket=BUCKET, Key=key)
        assert s3.get_object(Bucket=BUCKET, Key="small")["Body"].read() == b"0123456789"


def test_four_60_mib_puts_stay_within_a_memory_bound(tmp_path: Path) -> None:
    """Bound: 64 MiB of peak-RSS growth, below the size of any one body, so holding one whole
    fails. The HTTP layer holds per upload at most ~1 MiB of socket buffer (reading pauses
    beyond), one 256 KiB recv and ``memory_body_bytes`` (256 KiB) before spooling to disk."""
    port, data = free_port(), tmp_path / "m"
    proc = start_module_server(data, port, "--quiet")
    ep, admin = f"http://127.0.0.1:{port}", credentials.load(data)[0]
    size, block = 60 * MIB, b"\xa5" * MIB
    try:
        assert raw_request(ep, "PUT", f"/{BUCKET}/warm", admin, body=b"w" * 300_000).status == 200
        baseline = proc_status(proc.pid, "VmHWM")
        statuses: list[int] = []

        def upload(i: int) -> None:
            with connect(ep, timeout=60) as sock:
                head = signed_head(
                    ep,
                    "PUT",
                    f"/{BUCKET}/big{i}",
                    admin,
                    headers={"Content-Length": str(size)},
                    payload_hash=UNSIGNED,
                )
                sock.sendall(head)
                for _ in range(size // len(block)):
                    sock.sendall(block)
                answer = read_response(sock)
                statuses.append(answer.status if answer else 0)

        uploads = [threading.Thread(target=upload, args=(i,)) for i in range(4)]
        for thread in uploads:
            thread.start()
        for thread in uploads:
            thread.join(timeout=120)
        assert statuses == [200] * 4
        growth_kib = proc_status(proc.pid, "VmHWM") - baseline
        assert growth_kib < 64 * 1024, f"peak RSS grew {growth_kib / 1024:.0f} MiB"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


# -- logs, health, options -------------------------------------------------------------------------


def test_log_lines_escape_keys_and_user_agents(tmp_path: Path) -> None:
    with serving(tmp_path) as (running, lines):
        ep, admin = running.endpoint, running.admin
        forged = raw_request(ep, "GET", f"/{BUCKET}/a%0A1.2.3.4%20GET%20%2Fx%00b%E2%80%A8c", admin)
        assert forged.status == 400
        agent = {"User-Agent": 'tool "1.0" \\ \x85'}
        quoted = raw_request(ep, "PUT", f"/{BUCKET}/q%22uote", admin, body=b"1", headers=agent)
        assert quoted.status == 200
        presigned = raw_request(ep, "GET", f"/{BUCKET}?X-Amz-Signature=feedface&prefix=q", admin)
        assert presigned.status == 400  # a header signature and presign parameters: two auths
    assert len(lines) == 3 and all("\n" not in line and "\x00" not in line for line in lines)
    assert '"/forkstage-state/a\\n1.2.3.4 GET /x\\x00b\\u2028c" 400' in lines[0]
    assert '"/forkstage-state/q\\"uote" 200' in lines[1] and "PutObject admin" in lines[1]
    assert lines[1].endswith('"tool \\"1.0\\" \\\\ \\x85"')
    # query values never reach the log (a presigned URL's signature, say): names only
    assert (
        '"/forkstage-state?X-Amz-Signature&prefix" 400' in lines[2] and "feedface" not in lines[2]
    )
    assert admin.secret_access_key not in "".join(lines) and "AWS4-HMAC" not in "".join(lines)


def test_health_endpoint_needs_no_credentials(tmp_path: Path) -> None:
    with serving(tmp_path, max_connections=50, disk_reserve_bytes=MIB) as (running, _):
        answer = raw_exchange(running.endpoint, b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer is not None and answer.status == 200
        assert answer.headers["content-type"] == "application/json"
        health = json.loads(answer.body)
        assert health["status"] == "ok" and health["free_bytes"] > 0
        assert (health["reserve_bytes"], health["max_connections"]) == (MIB, 50)
        assert health["connections"] >= 1
        put = raw_exchange(running.endpoint, b"PUT /-/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert put is not None and put.status == 405
