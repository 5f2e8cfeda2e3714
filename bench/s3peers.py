"""The servers the state-server bench compares, and how it talks to them and measures them.

forkstage (``forkstage backend serve``), ``moto_server`` and ``rclone serve s3`` (Go, local
directory backend) each run as a child process on 127.0.0.1. Requests are signed once per distinct
request with botocore and replayed over keep-alive connections, so the Python client stays cheap.
Also here: resident memory from /proc, and per-thread cProfile for an in-process forkstage server.
"""

from __future__ import annotations

import cProfile
import hashlib
import http.client
import json
import pstats
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from localcloud.net import free_port

BUCKET = "forkstage-state"
BIN = Path(sys.executable).parent
CLIENT_THREAD = "bench-client"  # threads named so are not profiled


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    akid: str
    secret: str
    pid: int = 0


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
    S3SigV4Auth(Credentials(t.akid, t.secret), "s3", "us-east-1").add_auth(req)
    out = dict(req.headers.items())
    if body or method in ("PUT", "POST"):
        out["Content-Length"] = str(len(body))
    return Prepared(method, path, out, body)


class Conn:
    """One keep-alive connection."""

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

    def close(self) -> None:
        self.http.close()


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _spawn(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc


def start_forkstage(data: Path) -> tuple[subprocess.Popen[bytes], Target]:
    port = free_port()
    cmd = [str(BIN / "forkstage"), "backend", "serve", "--quiet", "--port", str(port)]
    proc = _spawn([*cmd, "--data", str(data)], port)
    creds = json.loads((data / "credentials.json").read_text())["credentials"]
    admin = next(c for c in creds if c["policy"] == "admin")
    akid, secret = admin["access_key_id"], admin["secret_access_key"]
    return proc, Target("forkstage", "127.0.0.1", port, akid, secret, proc.pid)


def start_moto() -> tuple[subprocess.Popen[bytes], Target]:
    port = free_port()
    proc = _spawn([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port)
    t = Target("moto", "127.0.0.1", port, "testing", "testing", proc.pid)
    c = Conn(t)
    c.send(prepare(t, "PUT", f"/{BUCKET}"))
    versioning = (
        b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Status>Enabled</Status></VersioningConfiguration>"
    )
    c.send(prepare(t, "PUT", f"/{BUCKET}?versioning", versioning))
    c.close()
    return proc, t


def start_rclone(root: Path) -> tuple[subprocess.Popen[bytes], Target]:
    """``rclone serve s3`` over a local directory (no versioning, no fsync)."""
    port = free_port()
    akid, secret = "RCLONEBENCH", secrets.token_hex(16)
    (root / "data" / BUCKET).mkdir(parents=True)
    (root / "rclone.conf").write_text("")
    proc = _spawn(
        [
            str(BIN / "rclone"), "serve", "s3", str(root / "data"),
            "--addr", f"127.0.0.1:{port}", "--auth-key", f"{akid},{secret}",
            "--config", str(root / "rclone.conf"), "--cache-dir", str(root / "cache"),
        ],
        port,
    )  # fmt: skip
    return proc, Target("rclone", "127.0.0.1", port, akid, secret, proc.pid)


def honours_if_none_match(t: Target) -> bool:
    """Does a second ``If-None-Match: *`` PUT of the same key fail (a lock that locks)?"""
    c = Conn(t)
    key = f"/{BUCKET}/probe/{secrets.token_hex(4)}.tflock"
    first = c.send(prepare(t, "PUT", key, b"{}", {"If-None-Match": "*"}))
    second = c.send(prepare(t, "PUT", key, b"{}", {"If-None-Match": "*"}))
    c.close()
    return first == 200 and second in (409, 412)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_with_connections(t: Target, n: int, request: Prepared) -> float:
    """RSS while ``n`` keep-alive connections are open, each having made one request."""
    conns = [Conn(t) for _ in range(n)]
    try:
        for c in conns:
            c.send(request)
        time.sleep(0.3)
        return rss_mib(t.pid)
    finally:
        for c in conns:
            c.close()


@contextmanager
def thread_profiles(joined: Callable[[], None]) -> Iterator[list[cProfile.Profile]]:
    """cProfile in every thread started inside the block (except bench clients).

    cProfile sees only the thread that enables it, and a server's work happens on its own
    threads; ``joined`` (e.g. the server's shutdown) runs before the stats are collected.
    """
    profiles: list[cProfile.Profile] = []
    started: list[threading.Thread] = []
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        if self.name.startswith(CLIENT_THREAD):
            return original(self)
        prof = cProfile.Profile()
        started.append(self)
        prof.enable()
        try:
            return original(self)
        finally:
            prof.disable()
            profiles.append(prof)

    threading.Thread.run = run  # type: ignore[method-assign]
    try:
        yield profiles
    finally:
        joined()
        for th in started:
            th.join(timeout=5)
        threading.Thread.run = original  # type: ignore[method-assign]


def print_profile(title: str, profiles: list[cProfile.Profile], top: int = 18) -> None:
    print(f"\n== profile: {title} (server threads only, {len(profiles)} threads) ==")
    if not profiles:
        print("(no server thread finished; nothing to show)")
        return
    stats = pstats.Stats(profiles[0], stream=sys.stdout)
    for prof in profiles[1:]:
        stats.add(prof)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
