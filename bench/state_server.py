"""Benchmark: the forkstage state server against moto_server and ``rclone serve s3``, in one run.

All three run as child processes on 127.0.0.1 (rclone: Go, local directory backend, no versioning,
no fsync); the client replays Terraform's apply request sequence and hammers PUT/GET/lock operations
with pre-signed raw HTTP requests over keep-alive connections. Also measured in the same run: each
server's resident memory idle and with 100 open keep-alive connections, and the disk's fsync
latency, since every acknowledged forkstage write waits for one. Issue #13's goals are evaluated
on the spot. ``--profile`` then runs forkstage in-process under cProfile for the PUT @1 and lock
cells and prints where the time goes (a missed goal comes with its profile).

Run: .venv/bin/python bench/state_server.py [--profile]   (about a minute and a half)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3peers import (
    BUCKET,
    CLIENT_THREAD,
    Conn,
    Prepared,
    Target,
    honours_if_none_match,
    prepare,
    print_profile,
    rss_mib,
    rss_with_connections,
    start_forkstage,
    start_moto,
    start_rclone,
    thread_profiles,
)

KEY = "forkstage/terraform.tfstate"
DURATION = 1.5  # seconds per throughput cell
REPLAYS = 150  # apply sequences per server
CONNECTIONS = 100  # open keep-alive connections for the memory row
PAYLOAD = os.urandom(4096)


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
    conn.close()
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
        conn.close()

    threads = [
        threading.Thread(target=run, args=(i,), name=f"{CLIENT_THREAD}-{i}") for i in range(clients)
    ]
    for th in threads:
        th.start()
    stop_at[0] = time.perf_counter() + DURATION
    started = time.perf_counter()
    start_gate.wait()
    for th in threads:
        th.join()
    return sum(counts) / (time.perf_counter() - started)


def put_plan(t: Target, i: int) -> list[Prepared]:
    return [prepare(t, "PUT", f"/{BUCKET}/env%3A/c{i}/{KEY}", PAYLOAD)]


def get_plan(t: Target, i: int) -> list[Prepared]:
    conn = Conn(t)
    conn.send(put_plan(t, i)[0])
    conn.close()
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


@dataclass
class Row:
    metric: str
    values: dict[str, float | None]  # by server; None: the peer cannot do it faithfully
    lower_is_better: bool = False
    goal: str = ""
    ok: bool | None = None
    note: str = ""


def better(row: Row, peer: str) -> str:
    """How many times better forkstage is than ``peer`` on this row."""
    a, b = row.values.get("forkstage"), row.values.get(peer)
    if not a or not b:
        return "-"
    return f"{(b / a if row.lower_is_better else a / b):.1f}x"


def measure(work: Path) -> tuple[list[Row], list[float]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        peers: list[Target] = []
        starters: list[Callable[[], tuple[subprocess.Popen[bytes], Target]]] = [
            lambda: start_forkstage(work / "state"),
            start_moto,
            lambda: start_rclone(work / "rclone"),
        ]
        for start in starters:
            proc, target = start()
            procs.append(proc)
            peers.append(target)
        idle = {t.name: rss_mib(t.pid) for t in peers}
        locks = {t.name: honours_if_none_match(t) for t in peers}
        no_lock = ", ".join(
            f"{n} ignores If-None-Match (no lock): n/a" for n, v in locks.items() if not v
        )
        fsync = fsync_latency(work)
        rows: list[Row] = []
        seq = {t.name: apply_sequence(t) if locks[t.name] else None for t in peers}
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            vals = {n: (pct(v, q) * 1e3 if v else None) for n, v in seq.items()}
            row = Row(
                f"apply sequence {label} latency (ms)", vals, lower_is_better=True, note=no_lock
            )
            if label == "p99":
                row.goal, row.ok = "< 5 ms", (vals["forkstage"] or 99) < 5
            rows.append(row)
        for label, plan in (("PUT", put_plan), ("GET", get_plan)):
            for clients in (1, 8, 32):
                vals = {t.name: throughput(t, clients, plan) for t in peers}
                row = Row(f"{label} ops/s @{clients}", dict(vals))
                if label == "PUT":
                    row.note = "rclone keeps no versions and does not fsync"
                if (label, clients) == ("PUT", 1):
                    row.goal, row.ok = ">= 3x moto", vals["forkstage"] >= 3 * vals["moto"]
                if (label, clients) == ("GET", 8):
                    row.goal, row.ok = ">= rclone", vals["forkstage"] >= vals["rclone"]
                rows.append(row)
        for clients in (1, 8):
            vals = {
                t.name: throughput(t, clients, lock_plan) / 2 if locks[t.name] else None
                for t in peers
            }
            row = Row(f"lock+unlock pairs/s @{clients}", vals, note=no_lock)
            if clients == 1 and vals["moto"]:
                row.goal, row.ok = ">= 3x moto", (vals["forkstage"] or 0) >= 3 * vals["moto"]
            rows.append(row)
        rows.append(Row("memory idle, at start (MiB RSS)", dict(idle), lower_is_better=True))
        busy = {t.name: rss_with_connections(t, CONNECTIONS, get_plan(t, 0)[0]) for t in peers}
        rows.append(
            Row(f"memory, {CONNECTIONS} keep-alive conns (MiB)", dict(busy), lower_is_better=True)
        )
        return rows, fsync
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


def show(rows: list[Row], fsync: list[float], runtime: float) -> None:
    print(
        f"forkstage state server vs moto_server vs rclone serve s3 — same run, 127.0.0.1, "
        f"{os.cpu_count()} cores, 4 KiB objects, {dt.datetime.now():%Y-%m-%d %H:%M}"
    )
    head = (
        f"{'metric':<38} {'forkstage':>9} {'moto':>9} {'rclone':>9} {'vs moto':>8} {'vs rclone':>9}"
    )
    print(f"{head}  {'goal':<11} {'ok':<4} note")
    for r in rows:
        cells = " ".join(
            f"{v:>9.2f}" if v is not None else f"{'n/a':>9}"
            for v in (r.values.get(n) for n in ("forkstage", "moto", "rclone"))
        )
        ok = "" if r.ok is None else ("yes" if r.ok else "NO")
        line = f"{r.metric:<38} {cells} {better(r, 'moto'):>8} {better(r, 'rclone'):>9}"
        print(f"{line}  {r.goal:<11} {ok:<4} {r.note}")
    f50, f99 = pct(fsync, 0.5) * 1e3, pct(fsync, 0.99) * 1e3
    put = next(r.values["forkstage"] for r in rows if r.metric == "PUT ops/s @1") or 0.0
    put_ms = 1e3 / put if put else float("nan")
    print(f"disk fsync latency p50 / p99: {f50:.3f} / {f99:.3f} ms; one forkstage PUT @1 takes "
          f"{put_ms:.3f} ms = {put_ms / f50 if f50 else 0:.1f} fsyncs")  # fmt: skip
    print(
        "durability: forkstage fsyncs every acknowledged PUT (and keeps its versions); "
        "rclone serve s3 and moto_server do not fsync (moto keeps everything in memory)"
    )
    print(
        "(vs: how many times better forkstage is — throughput forkstage/peer, latency and "
        f"memory peer/forkstage; n/a: not faithful, see note; runtime {runtime:.0f}s)"
    )


def _stop(servers: list[Any]) -> None:
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def profile_forkstage(folder: Path) -> None:
    """PUT @1 and lock @1 against an in-process server, every server thread under cProfile."""
    from backend.s3 import credentials
    from backend.server import make_server, serve_in_thread

    cells = (("PUT @1", put_plan, 1), ("lock+unlock pairs @1", lock_plan, 2))
    for title, plan, per in cells:
        data = folder / title.split()[0]
        servers: list[Any] = []
        with thread_profiles(lambda servers=servers: _stop(servers)) as profiles:
            servers.append(make_server(data_dir=data))
            serve_in_thread(servers[0])
            admin = credentials.ensure_admin(data)
            port = int(servers[0].endpoint.rsplit(":", 1)[1])
            t = Target(
                "in-process", "127.0.0.1", port, admin.access_key_id, admin.secret_access_key
            )
            rate = throughput(t, 1, plan) / per
        print(f"\nin-process {title}: {rate:.0f}/s (the client shares the process and the GIL)")
        print_profile(title, profiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", action="store_true", help="then profile PUT @1 and lock @1")
    args = parser.parse_args()
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="forkstage-bench-"))
    try:
        rows, fsync = measure(work)
        show(rows, fsync, time.monotonic() - began)
        if args.profile:
            profile_forkstage(work / "profile")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
