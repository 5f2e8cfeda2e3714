"""Slow-body floods (issue 22): 300 connections that declare a 1 MiB body and send one byte a
second, reconnecting whenever they are cut, must not stop a signed boto3 client from being
served - neither unsigned ones (refused at once, drained only while fast, within the strangers'
budget) nor ones signed by a stage credential (at most ``max_requests_per_credential`` in
flight, the rest 503 SlowDown at once). One server (a child process, default limits), two floods
of 10 s each; the flood runs in its own process so that it does not share the test's GIL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import BUCKET, free_port, s3_client, signed_head, start_module_server

from backend.s3 import credentials

FLOOD_SECONDS = 10.0
CONNECTIONS = 300
CALLS = 10
ANSWER_WITHIN = 2.0

# The flood: non-blocking sockets in one selector loop. Each sends its head, then a byte a
# second; whatever the server answers is read and dropped; a cut connection reconnects at once.
FLOOD = r"""
import json, selectors, socket, sys, time
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
heads = [h.encode("latin-1") for h in json.loads(sys.stdin.read())]
sel = selectors.DefaultSelector()
stats = {"opened": 0, "cut": 0}
def open_one(i):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    stats["opened"] += 1
    sel.register(s, selectors.EVENT_READ, [i, False, time.monotonic()])
    return s
socks = [open_one(i) for i in range(count)]
end = time.monotonic() + seconds
while time.monotonic() < end:
    for key, _ in sel.select(0.05):
        s, state = key.fileobj, key.data
        try:
            data = s.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            sel.unregister(s); s.close(); stats["cut"] += 1
            open_one(state[0])
    now = time.monotonic()
    for key in list(sel.get_map().values()):
        s, state = key.fileobj, key.data
        try:
            if not state[1]:
                s.send(heads[state[0] % len(heads)]); state[1] = True; state[2] = now
            elif now - state[2] >= 1.0:
                s.send(b"x"); state[2] = now
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            sel.unregister(s); s.close(); stats["cut"] += 1
            open_one(state[0])
print(json.dumps(stats))
"""


def _unsigned_head(endpoint: str) -> str:
    host = endpoint.split("//", 1)[1]
    return (
        f"PUT /{BUCKET}/env%3A/pr-1/flood HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Length: 1048576\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n"
    )


def _stage_heads(endpoint: str, cred: Any) -> list[str]:
    return [
        signed_head(
            endpoint,
            "PUT",
            f"/{BUCKET}/env%3A/pr-1/flood{i}",
            cred,
            headers={"Content-Length": "1048576"},
            payload_hash="UNSIGNED-PAYLOAD",
        ).decode("latin-1")
        for i in range(8)
    ]


def _calls_during_flood(
    port: int, heads: list[str], warm: Any, fresh: Any
) -> tuple[list[float], dict[str, int]]:
    """Start the flood, then make CALLS boto3 calls a second apart: even ones on the warm
    client's keep-alive connection, odd ones on a new client (a new connection mid-flood).
    Returns each call's seconds (inf when it failed) and the flood's counts."""
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, str(port), str(CONNECTIONS), str(FLOOD_SECONDS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert flood.stdin is not None
    flood.stdin.write(json.dumps(heads))
    flood.stdin.close()
    time.sleep(1.0)  # the flood's 300 connections are open and sending
    times: list[float] = []
    for i in range(CALLS):
        client = warm if i % 2 == 0 else fresh()
        started = time.monotonic()
        try:
            if i % 3 == 0:
                client.put_object(Bucket=BUCKET, Key=f"during/{i}", Body=b"served")
            elif i % 3 == 1:
                client.head_object(Bucket=BUCKET, Key="during/0")
            else:
                client.list_objects_v2(Bucket=BUCKET, Prefix="during/")
            times.append(time.monotonic() - started)
        except Exception:  # a refused or cut call counts as not answered
            times.append(float("inf"))
        time.sleep(max(0.0, 0.85 - (time.monotonic() - started)))
    assert flood.stdout is not None
    out = flood.stdout.read()
    flood.wait(timeout=20)
    return times, json.loads(out)


def test_slow_body_floods_do_not_starve_a_signed_client(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "state"
    proc = start_module_server(data, port, "--quiet")
    endpoint = f"http://127.0.0.1:{port}"
    admin = credentials.load(data)[0]
    stage = credentials.issue(data, policy="stage", stage="pr-1")

    def fresh() -> Any:
        return s3_client(endpoint, admin)

    try:
        warm = fresh()
        warm.put_object(Bucket=BUCKET, Key="during/0", Body=b"served")
        report = {}
        for label, heads in (
            ("unsigned", [_unsigned_head(endpoint)]),
            ("stage", _stage_heads(endpoint, stage)),
        ):
            times, counts = _calls_during_flood(port, heads, warm, fresh)
            report[label] = (times, counts)
            answered = sum(t < ANSWER_WITHIN for t in times)
            print(label, [round(t, 2) for t in times], counts)  # shown with -s
            assert answered >= 9, (label, [round(t, 2) for t in times], counts)
            assert counts["opened"] >= CONNECTIONS
        # the floods were real: connections were refused and cut, and reconnected
        assert all(counts["cut"] > CONNECTIONS for _, counts in report.values()), report
        assert warm.get_object(Bucket=BUCKET, Key="during/0")["Body"].read() == b"served"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
