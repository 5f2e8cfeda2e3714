"""localcloud.workers: the bundled example Worker in real Miniflare/workerd on 127.0.0.1,
its Hyperdrive binding on a real local PostgreSQL database (see tests/pgfixture.py).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import psycopg
import pytest

from localcloud import live_workers
from localcloud.cloudflare import Account
from localcloud.net import free_port
from localcloud.postgres import Cluster
from localcloud.workers import WorkerError, WorkerProcess, start_worker, stop_pid_file

pytest_plugins = ["tests.pgfixture"]

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "node_modules"
BUNDLE = ROOT / "worker" / "dist" / "index.js"
MIGRATION = ROOT / "migrations" / "0001_create_notes.sql"
# URL-special characters: proves the password reaches PostgreSQL intact through Miniflare's
# Hyperdrive, and gives the leak checks below something unmistakable to look for.
ROLE_PASSWORD = "Wk3r:@/?#%& pw"
_ids = itertools.count(1)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class AppDb:
    name: str
    url: str  # as the role that owns it, with its password

    def rows(self) -> list[tuple[int, str]]:
        with psycopg.connect(self.url) as conn:
            return [(r[0], r[1]) for r in conn.execute("SELECT id, body FROM notes ORDER BY id")]


def _admin(cluster: Cluster, statement: str) -> None:
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(statement.encode())


@pytest.fixture
def app_db(pg_cluster: Cluster) -> Iterator[Callable[[], AppDb]]:
    """A database owned by its own password role, with the notes table (and no rows)."""
    made: list[tuple[str, str]] = []

    def make() -> AppDb:
        n = next(_ids)
        role, db = f"wk_role_{os.getpid()}_{n}", f"wk_db_{os.getpid()}_{n}"
        escaped = ROLE_PASSWORD.replace("'", "''")
        _admin(pg_cluster, f"CREATE ROLE {role} LOGIN PASSWORD '{escaped}'")
        _admin(pg_cluster, f"CREATE DATABASE {db} OWNER {role}")
        made.append((role, db))
        url = (
            f"postgresql://{role}:{quote(ROLE_PASSWORD, safe='')}@127.0.0.1:{pg_cluster.port}/{db}"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(MIGRATION.read_text().encode())
        return AppDb(db, url)

    yield make
    for role, db in made:
        _admin(pg_cluster, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        _admin(pg_cluster, f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def run_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="forkstage-wk-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def workers(run_dir: Path) -> Iterator[list[WorkerProcess]]:
    """Workers started by a test; stopped afterwards even when the test failed."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def _serve(
    workers: list[WorkerProcess], run_dir: Path, name: str, db: AppDb | None, **kwargs
) -> WorkerProcess:
    worker = start_worker(
        name=name,
        script=kwargs.pop("script", BUNDLE),
        bindings=kwargs.pop("bindings", {}),
        hyperdrive={"HYPERDRIVE": db.url} if db else {},
        log_path=run_dir / f"{name}.log",
        pid_path=run_dir / f"{name}.pid",
        node_modules=NODE_MODULES,
        **kwargs,
    )
    workers.append(worker)
    return worker


def _call(worker: WorkerProcess, path: str, body: str | None = None) -> tuple[int, object]:
    data = body.encode() if body is not None else None
    request = urllib.request.Request(worker.url.rstrip("/") + path, data=data)
    try:
        with _NO_PROXY.open(request, timeout=15) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _secret_forms() -> list[str]:
    return [ROLE_PASSWORD, quote(ROLE_PASSWORD, safe=""), quote(ROLE_PASSWORD)]


# -- the bundle ---------------------------------------------------------------------------------
def test_committed_bundle_is_fresh() -> None:
    done = subprocess.run(
        ["node", "scripts/build-worker.mjs", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "build-worker: worker/dist/index.js is up to date\n"


def test_bundle_check_fails_when_source_changed(run_dir: Path) -> None:
    copy = run_dir / "repo"
    for part in ("scripts", "worker"):
        shutil.copytree(ROOT / part, copy / part)
    for part in ("package.json", "package-lock.json", "forkstage/build-worker.mjs"):
        (copy / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / part, copy / part)
    (copy / "node_modules").symlink_to(ROOT / "node_modules")
    source = copy / "worker" / "src" / "index.js"
    source.write_text(source.read_text().replace('"not found"', '"nothing here"'))

    check = ["node", "scripts/build-worker.mjs", "--check"]
    stale = subprocess.run(check, cwd=copy, capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1
    assert stale.stderr == (
        "build-worker: worker/dist/index.js is stale: "
        "run `node scripts/build-worker.mjs` and commit it\n"
    )
    rebuilt = subprocess.run(
        ["node", "scripts/build-worker.mjs"], cwd=copy, capture_output=True, text=True, timeout=60
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert '"nothing here"' in (copy / "worker" / "dist" / "index.js").read_text()
    again = subprocess.run(check, cwd=copy, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr


def test_bundle_is_one_module_for_workerd() -> None:
    text = BUNDLE.read_text()
    imports = set(re.findall(r'^import .* from "([^"]+)";$', text, flags=re.MULTILINE))
    # Only runtime-provided modules remain (nodejs_compat + the sockets API); postgres.js is in.
    assert imports == {"node:buffer", "node:events", "node:stream"}
    assert 'await import("cloudflare:sockets")' in text
    assert str(ROOT) not in text  # no machine paths: the same bytes from any clone


# -- serving it ---------------------------------------------------------------------------------
def test_notes_round_trip_through_hyperdrive(app_db, workers, run_dir: Path) -> None:
    db = app_db()
    worker = _serve(workers, run_dir, "api-pr-1", db)
    assert worker.url.startswith("http://127.0.0.1:")

    assert _call(worker, "/health") == (200, {"ok": True, "database": db.name})
    assert _call(worker, "/notes") == (200, [])
    status, created = _call(worker, "/notes", "first note from the worker")
    assert status == 201
    assert created == {"id": 1, "body": "first note from the worker"}
    assert _call(worker, "/notes") == (200, [{"id": 1, "body": "first note from the worker"}])
    assert db.rows() == [(1, "first note from the worker")]  # really in PostgreSQL
    assert _call(worker, "/nowhere") == (404, "not found")


def test_password_stays_off_argv_env_and_log(app_db, workers, run_dir: Path) -> None:
    db = app_db()
    worker = _serve(workers, run_dir, "api-secret", db)
    assert _call(worker, "/health")[0] == 200
    pids = worker.processes()
    assert worker.pid in pids and len(pids) >= 2  # the launcher and its workerd
    for pid in pids:
        for part in ("cmdline", "environ"):
            exposed = Path(f"/proc/{pid}/{part}").read_bytes().decode(errors="replace")
            for secret in _secret_forms():
                assert secret not in exposed, f"password visible in /proc/{pid}/{part}"
    worker.stop()
    log = (run_dir / "api-secret.log").read_text()
    assert "Ready on http://127.0.0.1:" in log
    assert "GET /health 200" in log
    for secret in _secret_forms():
        assert secret not in log


def test_two_workers_on_two_databases_are_isolated(app_db, workers, run_dir: Path) -> None:
    staging_db, pr_db = app_db(), app_db()
    staging = _serve(workers, run_dir, "api-staging", staging_db)
    pr = _serve(workers, run_dir, "api-pr-147", pr_db)
    assert staging.url != pr.url

    assert _call(pr, "/notes", "only in the preview")[0] == 201
    assert _call(staging, "/notes", "only in staging")[0] == 201
    assert _call(pr, "/notes") == (200, [{"id": 1, "body": "only in the preview"}])
    assert _call(staging, "/notes") == (200, [{"id": 1, "body": "only in staging"}])
    assert _call(pr, "/health")[1] == {"ok": True, "database": pr_db.name}
    assert _call(staging, "/health")[1] == {"ok": True, "database": staging_db.name}


def test_database_restart_fails_requests_not_the_worker(workers, run_dir: Path) -> None:
    # A private cluster: this test stops it under the running Worker.
    base = Path(tempfile.mkdtemp(prefix="forkstage-wkpg-"))
    base.chmod(0o711)
    cluster = Cluster(base / "data", port=free_port(), password=ROLE_PASSWORD, fsync=False)
    try:
        cluster.init()
        cluster.start()
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(MIGRATION.read_text().encode())
        worker = _serve(workers, run_dir, "api-restart", AppDb("postgres", cluster.url()))
        assert _call(worker, "/notes", "before the restart")[0] == 201

        cluster.stop()
        status, body = _call(worker, "/health")
        assert (status, body) == (
            500,
            {
                "error": f"forkstage local HYPERDRIVE: database 127.0.0.1:{cluster.port} "
                "is not reachable (ECONNREFUSED)"
            },
        )
        assert worker.is_running()

        cluster.start()
        assert _call(worker, "/notes") == (200, [{"id": 1, "body": "before the restart"}])
        worker.stop()
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)
    log = (run_dir / "api-restart.log").read_text()
    assert f"HYPERDRIVE: database 127.0.0.1:{cluster.port} is not reachable (ECONNREFUSED)" in log
    for form in _secret_forms():
        assert form not in log


def test_stop_leaves_no_process_and_frees_the_port(app_db, workers, run_dir: Path) -> None:
    worker = _serve(workers, run_dir, "api-stop", app_db())
    pids = worker.processes()
    port = int(worker.url.rstrip("/").rsplit(":", 1)[1])
    assert worker.is_running() and all(_alive(p) for p in pids)
    assert (run_dir / "api-stop.pid").read_text() == f"{worker.pid}\n"

    worker.stop()
    assert not worker.is_running()
    assert [p for p in pids if _alive(p)] == []
    assert worker.processes() == []
    assert not (run_dir / "api-stop.pid").exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    worker.stop()  # a second stop is a no-op


def test_attach_finds_a_running_worker_and_refuses_a_second_start(
    app_db, workers, run_dir: Path
) -> None:
    db = app_db()
    worker = _serve(workers, run_dir, "api-attach", db)
    found = WorkerProcess.attach(
        name="api-attach", pid_path=worker.pid_path, log_path=worker.log_path
    )
    assert found is not None and (found.pid, found.url) == (worker.pid, worker.url)
    with pytest.raises(WorkerError, match=r"^Worker api-attach already runs \(pid \d+, http"):
        _serve(workers, run_dir, "api-attach", db)
    found.stop()  # another process's handle stops it too
    assert not worker.is_running()
    assert (
        WorkerProcess.attach(name="x", pid_path=worker.pid_path, log_path=worker.log_path) is None
    )


def test_a_killed_launcher_leaves_workerd_that_the_next_start_ends(workers, run_dir: Path) -> None:
    script = "export default { fetch() { return new Response('up'); } };"
    first = _serve(workers, run_dir, "edge-crash", None, script=script)
    orphan = [p for p in first.processes() if p != first.pid]
    assert orphan
    os.kill(first.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5  # SIGKILL is delivered asynchronously
    while first.is_running() and time.monotonic() < deadline:
        first._reap()
        time.sleep(0.02)
    assert not first.is_running()
    assert all(_alive(p) for p in orphan)  # workerd outlives its launcher

    second = _serve(workers, run_dir, "edge-crash", None, script=script)
    assert [p for p in orphan if _alive(p)] == []
    assert _call(second, "/") == (200, "up")

    pids = second.processes()
    os.kill(second.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5  # as above: let the kill land before looking at the group
    while second.is_running() and time.monotonic() < deadline:
        second._reap()
        time.sleep(0.02)
    assert stop_pid_file(second.pid_path) is True
    assert [p for p in pids if _alive(p)] == []
    assert not second.pid_path.exists()
    assert stop_pid_file(second.pid_path) is False


def test_plain_bindings_and_outbound_network_is_loopback_only(workers, run_dir: Path) -> None:
    script = """
export default {
  async fetch(request, env) {
    const to = new URL(request.url).searchParams.get("to");
    if (!to) return Response.json(env.SETTINGS);
    try {
      const answer = await fetch(to);
      return new Response("reached " + answer.status);
    } catch (err) {
      return new Response("blocked", { status: 502 });
    }
  },
};
"""
    with socket.socket() as listener:  # a loopback HTTP peer the Worker may reach
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        peer = listener.getsockname()[1]
        worker = _serve(
            workers, run_dir, "edge", None, script=script, bindings={"SETTINGS": {"stage": "pr-9"}}
        )
        assert _call(worker, "/") == (200, {"stage": "pr-9"})

        def answer_once() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

        thread = threading.Thread(target=answer_once, daemon=True)
        thread.start()
        assert _call(worker, f"/?to=http://127.0.0.1:{peer}/") == (200, "reached 204")
        thread.join(5)
    # TEST-NET-1 and a private address: refused by workerd itself, no packet leaves the host.
    assert _call(worker, "/?to=http://192.0.2.1/") == (502, "blocked")
    assert _call(worker, "/?to=http://10.11.12.13/") == (502, "blocked")
    worker.stop()
    assert (run_dir / "edge.log").read_text().count("blocked by restrictPeers()") == 2


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            f"postgresql://app:{quote(ROLE_PASSWORD, safe='')}@db.example.com:5432/app",
            "only reaches databases on 127.0.0.1, not db.example.com",
        ),
        (
            f"mysql://app:{quote(ROLE_PASSWORD, safe='')}@127.0.0.1:3306/app",
            "must start with postgresql://",
        ),
        ("postgresql://app@127.0.0.1:5432/app", "needs a user and a password"),
        (f"postgresql://app:{quote(ROLE_PASSWORD, safe='')}@127.0.0.1/app", "needs a port"),
        (f"postgresql://app:{quote(ROLE_PASSWORD, safe='')}@127.0.0.1:5432/", "database name"),
    ],
)
def test_bad_connection_string_is_refused_without_echoing_it(
    run_dir: Path, url: str, message: str
) -> None:
    with pytest.raises(WorkerError) as caught:
        start_worker(
            name="bad",
            script=BUNDLE,
            bindings={},
            hyperdrive={"HYPERDRIVE": url},
            log_path=run_dir / "bad.log",
            pid_path=run_dir / "bad.pid",
            node_modules=NODE_MODULES,
        )
    assert message in str(caught.value)
    assert str(caught.value).startswith("Hyperdrive binding HYPERDRIVE: ")
    for secret in _secret_forms():
        assert secret not in str(caught.value)
    assert list(run_dir.iterdir()) == []  # nothing started, nothing written


def test_bad_binding_name_and_port_are_refused(run_dir: Path) -> None:
    def start(bindings: dict[str, str], port: int = 0) -> None:
        start_worker(
            name="bad",
            script="export default {}",
            bindings=bindings,
            hyperdrive={},
            port=port,
            log_path=run_dir / "b.log",
            pid_path=run_dir / "b.pid",
            node_modules=NODE_MODULES,
        )

    with pytest.raises(WorkerError, match=r"binding name 'MY-VAR' must be a JavaScript identifier"):
        start({"MY-VAR": "x"})
    with pytest.raises(WorkerError, match=r"^port 70000 is not a TCP port"):
        start({}, port=70000)
    assert list(run_dir.iterdir()) == []


def test_a_worker_that_does_not_load_fails_with_its_log(workers, run_dir: Path) -> None:
    with pytest.raises(WorkerError) as caught:
        _serve(workers, run_dir, "broken", None, script="export default { fetch( }")
    text = str(caught.value)
    assert text.startswith("Worker broken failed to start (exit 1): ")
    assert "SyntaxError" in text or "Unexpected token" in text
    assert not (run_dir / "broken.pid").exists()
    assert not any("broken" in p.name for p in run_dir.glob("*.ready"))


# -- the local account's live Workers (what the Cloudflare stand-in runs) ----------------------
def _origin(db: AppDb) -> dict[str, object]:
    parts = urlsplit(db.url)
    return {
        "scheme": "postgresql",
        "host": parts.hostname,
        "port": parts.port,
        "database": parts.path.lstrip("/"),
        "user": parts.username,
        "password": unquote(parts.password or ""),
    }


def test_a_script_s_worker_follows_its_code_and_its_hyperdrive(app_db, run_dir: Path) -> None:
    first_db, second_db = app_db(), app_db()
    account = Account(run_dir)
    config = account.put_hyperdrive("acc", {"name": "hd", "origin": _origin(first_db)})
    settings = {
        "main_module": "index.js",
        "compatibility_date": "2025-09-01",
        "compatibility_flags": ["nodejs_compat"],
        "bindings": [{"type": "hyperdrive", "name": "HYPERDRIVE", "id": config["id"]}],
    }
    account.put_script("acc", "api", content=BUNDLE.read_text(), settings=settings)
    try:
        worker = live_workers.ensure_worker(account, "acc", "api", node_modules=NODE_MODULES)
        assert _call(worker, "/health")[1] == {"ok": True, "database": first_db.name}
        same = live_workers.ensure_worker(account, "acc", "api")
        assert (same.url, same.generation) == (worker.url, worker.generation)  # as it was

        # the Hyperdrive config moves to another database: its bound Worker follows
        account.put_hyperdrive(
            "acc", {"name": "hd", "origin": _origin(second_db)}, hyperdrive_id=config["id"]
        )
        live_workers.restart_bound(account, "acc", config["id"])
        moved = live_workers.attach(run_dir, "api")
        assert moved is not None and moved.generation != worker.generation
        assert moved.url == worker.url  # a Worker keeps its address while it exists
        assert _call(moved, "/health")[1] == {"ok": True, "database": second_db.name}

        # new code: ensure_worker runs it; the same code again changes nothing
        script = "export default { fetch() { return new Response('v2'); } };"
        account.put_script("acc", "api", content=script, settings=settings)
        again = live_workers.ensure_worker(account, "acc", "api", node_modules=NODE_MODULES)
        assert again.generation != moved.generation and _call(again, "/") == (200, "v2")
        assert [w.name for w in live_workers.running(run_dir)] == ["api"]
        pids = again.processes()
        assert len(pids) == 2  # the host (node) and its workerd
        assert live_workers.stop_worker(run_dir, "api") is True
        assert [p for p in pids if _alive(p)] == []  # the last Worker gone: the host stops
        assert live_workers.attach(run_dir, "api") is None
    finally:
        live_workers.stop_all(run_dir)


def test_one_host_serves_many_workers_and_changes_drop_no_request(app_db, run_dir: Path) -> None:
    """Each Worker its own URL and database in one Node + workerd; deploying, changing and
    removing Workers (two at once too) never fails a request to another one."""
    account = Account(run_dir)
    settings = {
        "main_module": "index.js",
        "compatibility_date": "2025-09-01",
        "compatibility_flags": ["nodejs_compat"],
    }
    dbs = {}
    # b's origin is another address (a forwarder to the same server), as each branch has its
    # own: two Workers binding HYPERDRIVE must each reach their own
    for name in ("a", "b"):
        dbs[name] = app_db()
        origin = _origin(dbs[name])
        if name == "b":
            forwarder = _Forwarder(int(origin["port"]))
            origin["port"] = forwarder.port
        config = account.put_hyperdrive("acc", {"name": name, "origin": origin})
        bound = [{"type": "hyperdrive", "name": "HYPERDRIVE", "id": config["id"]}]
        account.put_script(
            "acc", name, content=BUNDLE.read_text(), settings={**settings, "bindings": bound}
        )
    try:
        a = live_workers.ensure_worker(account, "acc", "a", node_modules=NODE_MODULES)
        b = live_workers.ensure_worker(account, "acc", "b", node_modules=NODE_MODULES)
        assert a.pid == b.pid and a.url != b.url
        assert len(a.processes()) == 2  # one Node, one workerd for both
        assert _call(a, "/health")[1] == {"ok": True, "database": dbs["a"].name}
        assert forwarder.connections == 0
        assert _call(b, "/health")[1] == {"ok": True, "database": dbs["b"].name}
        assert forwarder.connections >= 1

        failures: list[object] = []
        answered = [0]
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                status, body = _call(a, "/health")
                if status != 200 or body != {"ok": True, "database": dbs["a"].name}:
                    failures.append((status, body))
                answered[0] += 1

        clients = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in clients:
            thread.start()
        try:
            script = "export default { fetch() { return new Response('c'); } };"
            for name in ("c", "d"):
                account.put_script("acc", name, content=script, settings=settings)
            both = [
                threading.Thread(
                    target=live_workers.ensure_worker,
                    args=(account, "acc", name),
                    kwargs={"node_modules": NODE_MODULES},
                )
                for name in ("c", "d")
            ]
            for thread in both:
                thread.start()
            for thread in both:
                thread.join()
            changed = "export default { fetch() { return new Response('b2'); } };"
            account.put_script("acc", "b", content=changed, settings=settings)
            b2 = live_workers.ensure_worker(account, "acc", "b", node_modules=NODE_MODULES)
            assert b2.url == b.url and _call(b2, "/") == (200, "b2")
            assert live_workers.stop_worker(run_dir, "c") and live_workers.stop_worker(run_dir, "d")
        finally:
            stop.set()
            for thread in clients:
                thread.join()
        assert failures == [] and answered[0] > 10
        assert sorted(w.name for w in live_workers.running(run_dir)) == ["a", "b"]
    finally:
        live_workers.stop_all(run_dir)
        forwarder.close()
    assert live_workers.running(run_dir) == []


class _Forwarder:
    """A loopback TCP port that forwards to ``target`` and counts the connections."""

    def __init__(self, target: int) -> None:
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.target = target
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_miniflare_is_found_through_the_environment(tmp_path: Path) -> None:
    bin_dir = str(NODE_MODULES / ".bin")
    found = live_workers.find_node_modules({"PATH": f"/usr/bin{os.pathsep}{bin_dir}"})
    assert found == NODE_MODULES
    assert live_workers.find_node_modules({"FORKSTAGE_NODE_MODULES": "/x/node_modules"}) == Path(
        "/x/node_modules"
    )
    with pytest.raises(WorkerError, match=r"Miniflare was not found.*FORKSTAGE_NODE_MODULES"):
        live_workers.find_node_modules({"PATH": str(tmp_path)})


def test_ready_path_none_returns_once_the_script_loaded(workers, run_dir: Path) -> None:
    script = "export default { fetch() { return new Response('up'); } };"
    worker = _serve(workers, run_dir, "no-call", None, script=script, ready_path=None)
    assert worker.url.startswith("http://127.0.0.1:")
    assert "GET /" not in (run_dir / "no-call.log").read_text()  # nobody called it yet
    assert _call(worker, "/") == (200, "up")
