"""Benchmark: the forkstage state server against moto_server, measured in the same run.

Both servers run as child processes on 127.0.0.1; the client replays Terraform's apply request
sequence and hammers PUT/GET/lock operations with pre-signed raw HTTP requests over keep-alive
connections (signing once per distinct request keeps the Python client out of the way). The disk's
fsync latency is measured in the same run, since every acknowledged write waits for one.

Run: .venv/bin/python bench/state_server.py   (about a minute; prints one table)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from localcloud.net import free_port

BUCKET = "forkstage-state"
KEY = "forkstage/terraform.tfstate"
DURATION = 1.5  # seconds per throughput cell
REPLAYS = 150  # apply sequences per server
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    akid: str
    secret: str


@dataclass(frozen=True)
class Prepared:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def prepare(
    t: Target, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> Prepared:
    hdrs = {"x-amz-content-sha256": hashlib.sha256(body).hexdigest(), **(headers or {})}
    req = AWSRequest(method=method, url=f"http://{t.host}:{t.port}{path}", headers=hdrs, data=body)
    req.headers["Host"] = f"{t.host}:{t.port}"
    signer = S3SigV4Auth(Credentials(t.akid, t.secret), "s3", "us-east-1")
    signer.add_auth(req)
    out = dict(req.headers.items())
    if body:
        out["Content-Length"] = str(len(body))
    return Prepared(method, path, out, body)


class Conn:
    def __init__(self, t: Target) -> None:
        self.http = http.client.HTTPConnection(t.host, t.port, timeout=30)

    def send(self, p: Prepared) -> int:
        self.http.putrequest(p.method, p.path, skip_host=True, skip_accept_encoding=True)
        for k, v in p.headers.items():
            self.http.putheader(k, v)
        self.http.endheaders(p.body or None)
        resp = self.http.getresponse()
        resp.read()
        return resp.status


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_forkstage(data: Path) -> tuple[subprocess.Popen[bytes], Target]:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "forkstage"),
            "backend",
            "serve",
            "--quiet",
            "--port",
            str(port),
            "--data",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    creds = json.loads((data / "credentials.json").read_text())["credentials"]
    admin = next(c for c in creds if c["policy"] == "admin")
    return proc, Target(
        "forkstage", "127.0.0.1", port, admin["access_key_id"], admin["secret_access_key"]
    )


def start_moto() -> tuple[subprocess.Popen[bytes], Target]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    t = Target("moto", "127.0.0.1", port, "testing", "testing")
    c = Conn(t)
    c.send(prepare(t, "PUT", f"/{BUCKET}"))
    versioning = (
        b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Status>Enabled</Status></VersioningConfiguration>"
    )
    c.send(prepare(t, "PUT", f"/{BUCKET}?versioning", versioning))
    return proc, t


def state_body(serial: int) -> bytes:
    resources = [
        {
            "mode": "managed",
            "type": "terraform_data",
            "name": f"r{i}",
            "instances": [{"a": "x" * 200}],
        }
        for i in range(60)
    ]
    return json.dumps(
        {"version": 4, "serial": serial, "lineage": "bench", "outputs": {}, "resources": resources},
        indent=2,
    ).encode()


def apply_sequence(t: Target) -> list[float]:
    """Terraform's apply: LIST, lock PUT, HEAD, ranged GET, state PUT, GET lock, DELETE lock."""
    ws = "env%3A/bench"
    state, lock = f"/{BUCKET}/{ws}/{KEY}", f"/{BUCKET}/{ws}/{KEY}.tflock"
    conn = Conn(t)
    conn.send(prepare(t, "PUT", state, state_body(0), {"Content-Type": "application/json"}))
    seq = [
        prepare(t, "GET", f"/{BUCKET}?list-type=2&max-keys=1000&prefix=env%3A%2F"),
        prepare(t, "PUT", lock + "?x-id=PutObject", b'{"ID":"bench"}', {"If-None-Match": "*"}),
        prepare(t, "HEAD", state),
        prepare(t, "GET", state + "?x-id=GetObject", headers={"Range": "bytes=0-5242879"}),
        prepare(
            t, "PUT", state + "?x-id=PutObject", state_body(1), {"Content-Type": "application/json"}
        ),
        prepare(t, "GET", lock + "?x-id=GetObject"),
        prepare(t, "DELETE", lock + "?x-id=DeleteObject"),
    ]
    expected = [200, 200, 200, 206, 200, 200, 204]
    latencies: list[float] = []
    for _ in range(REPLAYS):
        for p, want in zip(seq, expected, strict=True):
            start = time.perf_counter()
            got = conn.send(p)
            latencies.append(time.perf_counter() - start)
            if got != want:
                raise RuntimeError(f"{t.name}: {p.method} {p.path} -> {got}, wanted {want}")
    return latencies


def throughput(t: Target, clients: int, make: Callable[[Target, int], list[Prepared]]) -> float:
    """Operations per second with ``clients`` concurrent keep-alive connections."""
    plans = [make(t, i) for i in range(clients)]
    counts = [0] * clients
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def run(i: int) -> None:
        conn = Conn(t)
        plan = plans[i]
        start_gate.wait()
        n = 0
        while time.perf_counter() < stop_at[0]:
            for p in plan:
                status = conn.send(p)
                if status >= 300:
                    raise RuntimeError(f"{t.name}: {p.method} {p.path} -> {status}")
            n += len(plan)
        counts[i] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    stop_at[0] = time.perf_counter() + DURATION
    started = time.perf_counter()
    start_gate.wait()
    for th in threads:
        th.join()
    return sum(counts) / (time.perf_counter() - started)


PAYLOAD = os.urandom(4096)


def put_plan(t: Target, i: int) -> list[Prepared]:
    return [prepare(t, "PUT", f"/{BUCKET}/env%3A/c{i}/{KEY}", PAYLOAD)]


def get_plan(t: Target, i: int) -> list[Prepared]:
    Conn(t).send(put_plan(t, i)[0])
    return [prepare(t, "GET", f"/{BUCKET}/env%3A/c{i}/{KEY}")]


def lock_plan(t: Target, i: int) -> list[Prepared]:
    lock = f"/{BUCKET}/env%3A/c{i}/{KEY}.tflock"
    return [
        prepare(t, "PUT", lock, b'{"ID":"x"}', {"If-None-Match": "*"}),
        prepare(t, "DELETE", lock),
    ]


def fsync_latency(folder: Path, rounds: int = 300) -> list[float]:
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    out = []
    try:
        for _ in range(rounds):
            os.write(fd, PAYLOAD)
            start = time.perf_counter()
            os.fsync(fd)
            out.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="forkstage-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        fs_proc, fs = start_forkstage(work / "state")
        procs.append(fs_proc)
        moto_proc, moto = start_moto()
        procs.append(moto_proc)
        fsync = fsync_latency(work)
        rows: list[tuple[str, float, float, str]] = []
        seq = {t.name: apply_sequence(t) for t in (fs, moto)}
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            a, b = pct(seq["forkstage"], q) * 1e3, pct(seq["moto"], q) * 1e3
            rows.append((f"apply sequence {label} latency (ms)", a, b, "p99 < 5 ms"))
        single_put: list[float] = []
        for label, plan in (("PUT", put_plan), ("GET", get_plan)):
            for clients in (1, 8, 32):
                a = throughput(fs, clients, plan)
                b = throughput(moto, clients, plan)
                rows.append((f"{label} ops/s @{clients}", a, b, ">= 3x moto"))
                if label == "PUT" and clients == 1:
                    single_put = [1 / a]
        for clients in (1, 8):
            a = throughput(fs, clients, lock_plan) / 2
            b = throughput(moto, clients, lock_plan) / 2
            rows.append((f"lock+unlock pairs/s @{clients}", a, b, ">= 3x moto"))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"forkstage state server vs moto_server — same run, 127.0.0.1, {os.cpu_count()} cores, "
        f"{dt.datetime.now():%Y-%m-%d %H:%M}"
    )
    print(f"{'metric':<36} {'forkstage':>10} {'moto':>10} {'ratio':>8}  {'goal':<12} ok")
    for name, a, b, goal in rows:
        if "latency" in name:
            ratio = b / a if a else 0.0
            ok = "NO" if "p99" in name and a >= 5 else "yes"
        else:
            ratio = a / b if b else 0.0
            ok = "yes" if ratio >= 3 else "NO"
        print(f"{name:<36} {a:>10.2f} {b:>10.2f} {ratio:>7.1f}x  {goal:<12} {ok}")
    f50, f99 = pct(fsync, 0.5) * 1e3, pct(fsync, 0.99) * 1e3
    put_ms = single_put[0] * 1e3 if single_put else float("nan")
    print(f"{'disk fsync latency p50 / p99 (ms)':<36} {f50:>10.3f} {f99:>10.3f}")
    times = put_ms / f50 if f50 else 0.0
    print(
        f"{'PUT @1 mean (ms) vs fsync p50':<36} {put_ms:>10.3f} {'':>10} {times:>7.1f}x  "
        f"(one durable PUT costs {times:.1f} fsyncs)"
    )
    runtime = time.monotonic() - began
    print(f"(ratio: throughput forkstage/moto, latency moto/forkstage; runtime {runtime:.0f}s)")


if __name__ == "__main__":
    main()
