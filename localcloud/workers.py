"""Serve one stage's Worker on 127.0.0.1 with Miniflare, its Hyperdrive bound to local PostgreSQL.

The local cloud runs each stage's Worker exactly as uploaded (one bundled ES module) in workerd,
through Miniflare's Node API. Python cannot drive that API, so a small Node launcher
(``miniflare_launcher.mjs``, beside this file) does, in its own session (process group) so that
``stop()`` ends it and the workerd it spawned together.

Secrets: a Hyperdrive connection string holds the database password. It travels to the launcher
on stdin only (never argv, which any user can read in ``/proc``, nor the environment), the
launcher masks it in everything it prints, and no error raised here quotes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LAUNCHER = Path(__file__).with_name("miniflare_launcher.mjs")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_COMPATIBILITY_DATE = "2025-09-01"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_BINDING_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
# The loopback check must not go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class WorkerError(RuntimeError):
    """A local Worker could not be started or stopped (the message never holds a secret)."""


def _ready_file(pid_path: Path) -> Path:
    return pid_path.with_name(pid_path.name + ".ready")


def _group_members(pgid: int) -> list[int]:
    """Live processes of a process group (the launcher and the workerd it spawned)."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _is_launcher(pid: int) -> bool:
    """The pid is alive, not a zombie, and still our launcher (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat[stat.rfind(")") + 2 :].split()[0]
    return state != "Z" and LAUNCHER.name.encode() in cmdline


def _has_cmdline(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def _ours(pid: int) -> bool:
    """A launcher or the workerd one spawned (checked before killing a stale pid file's group)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return LAUNCHER.name.encode() in b" ".join(argv0) or Path(argv0[0].decode()).name == "workerd"


def stop_pid_file(pid_path: Path) -> bool:
    """Stop whatever of a Worker still runs under this pid file; False when nothing did.

    Unlike ``WorkerProcess.attach(...).stop()`` this also ends a workerd whose launcher was
    killed with SIGKILL (it outlives it). Only processes that are a launcher or a workerd are
    touched, in case the pid was reused.
    """
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return False
    # A process on its way out (just SIGKILLed) has an empty cmdline: it is no longer anyone's.
    members = [m for m in _group_members(pid) if _has_cmdline(m)]
    stopped = bool(members) and all(_ours(m) for m in members)
    if stopped:
        WorkerProcess(name="", pid=pid, url="", pid_path=pid_path, log_path=Path()).stop()
    pid_path.unlink(missing_ok=True)
    _ready_file(pid_path).unlink(missing_ok=True)
    return stopped


def _answers(url: str, timeout: float) -> bool:
    """Any HTTP status means workerd serves; only connection errors mean not yet."""
    try:
        with _OPENER.open(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


@dataclass
class WorkerProcess:
    """A Worker served by a launcher process on ``url``; ``stop()`` ends it and its workerd."""

    name: str
    pid: int
    url: str
    pid_path: Path
    log_path: Path
    ready_seconds: float = 0.0  # start_worker() call to the first HTTP answer
    generation: int = 0  # changes whenever the Worker is (re)started: 0 here, see HostedWorker
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def attach(cls, *, name: str, pid_path: Path, log_path: Path) -> WorkerProcess | None:
        """The Worker another process started with this pid file, if it still runs."""
        try:
            pid = int(pid_path.read_text().strip())
            ready = json.loads(_ready_file(pid_path).read_text())
        except (OSError, ValueError):
            return None
        if not _is_launcher(pid):
            return None
        return cls(name=name, pid=pid, url=str(ready["url"]), pid_path=pid_path, log_path=log_path)

    def is_running(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            return False
        return _is_launcher(self.pid)

    def processes(self) -> list[int]:
        """Every live process this Worker consists of (launcher, workerd)."""
        return _group_members(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the group (the launcher disposes Miniflare); SIGKILL what outlives it."""
        if self.is_running() or self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self._reap()
                if not self.processes():
                    break
                time.sleep(0.02)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                while self.processes() and time.monotonic() < deadline + 5:
                    self._reap()
                    time.sleep(0.02)
        self._reap()
        self.pid_path.unlink(missing_ok=True)
        _ready_file(self.pid_path).unlink(missing_ok=True)

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.poll()


def check_connection_string(binding: str, value: str) -> None:
    """Reject what Miniflare would reject, without quoting the value (it holds a password)."""
    where = f"Hyperdrive binding {binding}"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise WorkerError(f"{where}: the connection string is not a valid URL") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise WorkerError(f"{where}: the connection string must start with postgresql://")
    if parts.hostname not in LOOPBACK_HOSTS:
        raise WorkerError(
            f"{where}: the local runtime only reaches databases on 127.0.0.1, "
            f"not {parts.hostname or 'an empty host'}"
        )
    if port is None:
        raise WorkerError(f"{where}: the connection string needs a port (host:port)")
    if not parts.username or not parts.password:
        raise WorkerError(f"{where}: the connection string needs a user and a password")
    if parts.path.strip("/") == "":
        raise WorkerError(f"{where}: the connection string needs a database name (/dbname)")


def check_binding_name(name: str) -> None:
    if not name or name[0].isdigit() or not set(name) <= _BINDING_NAME_CHARS:
        raise WorkerError(f"binding name {name!r} must be a JavaScript identifier (A-Z, 0-9, _)")


def _node_modules(folder: Path) -> Path:
    if not (folder / "miniflare" / "package.json").is_file():
        raise WorkerError(
            f"Miniflare is not installed in {folder}: run `npm install` (or `npm ci`) "
            "in the project"
        )
    return folder.resolve()


def start_worker(
    *,
    name: str,
    script: str | Path,
    bindings: Mapping[str, Any],
    hyperdrive: Mapping[str, str],
    log_path: Path,
    pid_path: Path,
    port: int = 0,
    main_module: str | None = None,
    compatibility_date: str = DEFAULT_COMPATIBILITY_DATE,
    compatibility_flags: tuple[str, ...] = ("nodejs_compat",),
    ready_path: str | None = "/",
    ready_timeout: float = READY_TIMEOUT,
    node: str | None = None,
    node_modules: Path,
) -> WorkerProcess:
    """Serve ``script`` (ES module source, or a path to one) on 127.0.0.1 and wait until it answers.

    ``bindings`` become plain (text/JSON) bindings; ``hyperdrive`` maps a binding name to the
    ``postgresql://user:password@127.0.0.1:port/db`` URL that binding's Hyperdrive fronts.
    ``port=0`` picks a free port (see ``.url``). Output goes to ``log_path``, the launcher's pid
    to ``pid_path``. ``ready_path=None`` returns once Miniflare serves (the script loaded) without
    sending the Worker a request.
    """
    if not name or "\n" in name:
        raise WorkerError("a Worker needs a one-line name")
    if not 0 <= port < 65536:
        raise WorkerError(f"port {port} is not a TCP port (0 picks a free one)")
    for binding, value in hyperdrive.items():
        check_binding_name(binding)
        check_connection_string(binding, value)
    for binding in bindings:
        check_binding_name(binding)
        if binding in hyperdrive:
            raise WorkerError(f"binding {binding} is both a plain and a Hyperdrive binding")
    try:
        json.dumps(dict(bindings))
    except (TypeError, ValueError) as exc:
        raise WorkerError(f"bindings must be JSON values: {exc}") from None
    if isinstance(script, Path):
        try:
            source = script.read_text()
        except OSError as exc:
            raise WorkerError(f"cannot read Worker script {script}: {exc.strerror}") from None
        module = main_module or script.name
    else:
        source, module = script, main_module or "index.js"
    node_binary = node or shutil.which("node")
    if node_binary is None:
        raise WorkerError("node is not on PATH: the local Workers runtime needs Node.js 20+")
    modules_dir = _node_modules(node_modules)

    existing = WorkerProcess.attach(name=name, pid_path=pid_path, log_path=log_path)
    if existing is not None:
        raise WorkerError(
            f"Worker {name} already runs (pid {existing.pid}, {existing.url}): stop it first"
        )
    stop_pid_file(pid_path)  # leftovers of a launcher that was killed
    ready_file = _ready_file(pid_path)
    ready_file.unlink(missing_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)

    config = {
        "name": name,
        "script": source,
        "main_module": module,
        "compatibility_date": compatibility_date,
        "compatibility_flags": list(compatibility_flags),
        "bindings": dict(bindings),
        "hyperdrives": dict(hyperdrive),
        "port": port,
        "ready_file": str(ready_file.absolute()),
        "node_modules": str(modules_dir),
    }
    env = {
        **os.environ,
        "WRANGLER_SEND_METRICS": "false",
        "CLOUDFLARE_CF_FETCH_ENABLED": "false",
        "NO_COLOR": "1",
    }
    started = time.monotonic()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            [node_binary, str(LAUNCHER)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=pid_path.parent,
            env=env,
        )
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(config).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # it died already; reported below with its log
    pid_path.write_text(f"{proc.pid}\n")
    worker = WorkerProcess(
        name=name, pid=proc.pid, url="", pid_path=pid_path, log_path=log_path, _proc=proc
    )
    try:
        worker.url = _wait_for_url(proc, ready_file, log_path, name, started + ready_timeout)
        if ready_path is not None:
            wait_until_answers(worker, ready_path, started + ready_timeout - time.monotonic())
    except BaseException:
        worker.stop()
        raise
    worker.ready_seconds = time.monotonic() - started
    return worker


def wait_until_answers(worker: WorkerProcess, path: str, timeout: float) -> None:
    """Until the Worker answers ``path`` with any HTTP status (it dies or time runs out: error)."""
    deadline = time.monotonic() + timeout
    target = worker.url.rstrip("/") + path
    while not _answers(target, timeout=1.0):
        if not worker.is_running():
            raise WorkerError(f"Worker {worker.name} exited: {_tail(worker.log_path)}")
        if time.monotonic() > deadline:
            late = f"did not answer within {timeout:.0f} s"
            raise WorkerError(f"Worker {worker.name} {late}; see {worker.log_path}")
        time.sleep(0.02)


def _wait_for_url(
    proc: subprocess.Popen[bytes], ready_file: Path, log_path: Path, name: str, deadline: float
) -> str:
    while True:
        try:
            return str(json.loads(ready_file.read_text())["url"])
        except (OSError, ValueError, KeyError):
            pass
        if proc.poll() is not None:
            raise WorkerError(
                f"Worker {name} failed to start (exit {proc.returncode}): {_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise WorkerError(f"Worker {name} was not serving in time; see {log_path}")
        time.sleep(0.02)
