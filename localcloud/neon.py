"""A small Neon control plane on real PostgreSQL, for the local stand-in provider and tools.

Neon's model, kept where it matters to forkstage: a project owns branches; a branch is an
isolated copy of its parent at creation time (databases, roles, passwords, rows, migration
history) that diverges afterwards; an endpoint is the compute that serves one branch. Here every
branch has its own PostgreSQL data directory, so database and role names are the parent's, as on
Neon; an endpoint is that directory's server running on a loopback port. A branch without an
endpoint keeps its data but runs nothing. Branching a running parent uses ``pg_basebackup``
(no downtime for the parent); a stopped parent is copied file by file.

Endpoint hosts look like Neon's (``ep-cool-river-12345678.neon.localhost``) but carry no port,
as on Neon where Hyperdrive and clients use 5432. ``resolve_host`` maps such a host to the
``127.0.0.1:PORT`` its server listens on; local tools (Hyperdrive/Miniflare) go through it. A
project's ``connection_uri`` is directly usable (``postgresql://u:p@127.0.0.1:PORT/db``).

The stand-in provider runs in processes Terraform starts and stops, so all state is on disk under
``$FORKSTAGE_HOME/local/neon/`` (``state.json``, mode 0600: it holds passwords), changed only under
an exclusive file lock. Passwords never appear in messages, logs or command lines (roles get a
SCRAM verifier computed client-side).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pwd
import random
import secrets
import shutil
import socket
import string
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from localcloud.postgres import LOOPBACK, SERVER_USER, Cluster, free_port

SUPERUSER = "cloud_admin"  # Neon's own superuser name; never handed out
HOST_SUFFIX = ".neon.localhost"
PROXY_HOST = "neon.localhost"
DEFAULT_DATABASE = "neondb"
DEFAULT_ROLE = "neondb_owner"
DEFAULT_REGION = "local"
_SETTINGS = {"shared_buffers": "32MB", "max_connections": "50"}

_ADJECTIVES = (
    "autumn",
    "billowing",
    "bitter",
    "bold",
    "broad",
    "calm",
    "cool",
    "crimson",
    "curly",
    "damp",
    "dawn",
    "divine",
    "floral",
    "frosty",
    "gentle",
    "green",
    "hidden",
    "icy",
    "jolly",
    "late",
    "lively",
    "lucky",
    "misty",
    "muddy",
    "noisy",
    "odd",
    "orange",
    "patient",
    "plain",
    "polished",
    "proud",
    "purple",
    "quiet",
    "rapid",
    "restless",
    "round",
    "royal",
    "shiny",
    "shy",
    "silent",
    "snowy",
    "soft",
    "spring",
    "steep",
    "still",
    "summer",
    "sweet",
    "tiny",
    "twilight",
    "wandering",
    "wild",
    "winter",
    "wispy",
    "young",
)
_NOUNS = (
    "art",
    "band",
    "base",
    "bird",
    "block",
    "boat",
    "bread",
    "breeze",
    "brook",
    "bush",
    "cake",
    "cell",
    "cherry",
    "cloud",
    "credit",
    "darkness",
    "dew",
    "disk",
    "dream",
    "dust",
    "feather",
    "field",
    "fire",
    "firefly",
    "flower",
    "fog",
    "forest",
    "frog",
    "frost",
    "glade",
    "grass",
    "haze",
    "heart",
    "hill",
    "lake",
    "leaf",
    "meadow",
    "moon",
    "morning",
    "mountain",
    "night",
    "paper",
    "pine",
    "pond",
    "rain",
    "river",
    "sea",
    "shadow",
    "silence",
    "sky",
    "smoke",
    "snow",
    "sound",
    "star",
    "sun",
    "sunset",
    "surf",
    "thunder",
    "tree",
    "union",
    "violet",
    "voice",
    "water",
    "wave",
    "wind",
    "wood",
)


class NeonError(RuntimeError):
    """An API error of the local control plane (message safe to show: no secrets)."""

    status = 400


class NotFound(NeonError):
    status = 404


class Conflict(NeonError):
    status = 409


class PasswordNotStored(NeonError):
    status = 412


@dataclass
class Project:
    id: str
    name: str
    region_id: str
    pg_version: int
    default_branch_id: str
    default_endpoint_id: str
    database_name: str
    role_name: str
    store_password: bool
    admin_password: str = field(repr=False)  # the superuser's; never handed out
    created_at: str = ""


@dataclass
class Branch:
    id: str
    project_id: str
    name: str
    parent_id: str | None
    primary: bool
    created_at: str
    roles: dict[str, str] = field(default_factory=dict, repr=False)  # role -> password
    databases: dict[str, str] = field(default_factory=dict)  # database -> owner role
    logical_size: int = 0
    protected: bool = False


@dataclass
class Endpoint:
    id: str
    project_id: str
    branch_id: str
    type: str
    port: int
    host: str
    pooler_host: str
    created_at: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class _State:
    projects: dict[str, Project] = field(default_factory=dict)
    branches: dict[str, Branch] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _State:
        return cls(
            projects={k: Project(**v) for k, v in raw.get("projects", {}).items()},
            branches={k: Branch(**v) for k, v in raw.get("branches", {}).items()},
            endpoints={k: Endpoint(**v) for k, v in raw.get("endpoints", {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "projects": {k: asdict(v) for k, v in self.projects.items()},
            "branches": {k: asdict(v) for k, v in self.branches.items()},
            "endpoints": {k: asdict(v) for k, v in self.endpoints.items()},
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_password() -> str:
    """Shaped like Neon's generated passwords (``npg_`` + 12 letters/digits)."""
    alphabet = string.ascii_letters + string.digits
    return "npg_" + "".join(secrets.choice(alphabet) for _ in range(12))


def _word_id(prefix: str = "") -> str:
    rng = random.SystemRandom()
    return f"{prefix}{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randrange(10**7, 10**8)}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as PostgreSQL binds: a port whose old connections sit in TIME_WAIT is free to it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _server_can_enter(path: Path) -> bool:
    """Whether PostgreSQL's server user (root runs it as ``postgres``) can reach ``path``."""
    if os.geteuid() != 0:
        return True
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        return True
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid == account.pw_uid:
            bit = 0o100
        elif st.st_gid == account.pw_gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def branches_root(root: Path) -> Path:
    """Where branch data lives: under the home, unless PostgreSQL's user cannot enter it.

    A project under /root (mode 0700) would otherwise have no local cloud when run as root; its
    branch data then goes to /var/tmp (kept across reboots), in a folder named after the home.
    """
    if _server_can_enter(root):
        return root / "branches"
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path("/var/tmp") / f"forkstage-neon-{digest}" / "branches"


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total


class ControlPlane:
    """Projects, branches and endpoints under ``<home>/local/neon``; every call is atomic."""

    def __init__(self, home: Path, *, fsync: bool = False) -> None:
        self.root = Path(home) / "local" / "neon"
        self.fsync = fsync
        self.branches_root = branches_root(self.root)
        self._held = threading.local()

    # -- storage -------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def branch_dir(self, branch_id: str) -> Path:
        return self.branches_root / branch_id

    def data_dir(self, branch_id: str) -> Path:
        return self.branch_dir(branch_id) / "pgdata"

    @contextmanager
    def _locked(self, *, write: bool = True) -> Iterator[_State]:
        """The state under a file lock (exclusive to change it); saved when the block succeeds."""
        if getattr(self._held, "state", None) is not None:
            if write and not self._held.write:
                raise RuntimeError("a change nested in a read of the Neon state would be lost")
            yield self._held.state
            return
        self.root.mkdir(parents=True, exist_ok=True)
        # PostgreSQL may run as another user: it must be able to traverse to its data dirs.
        self.root.chmod(0o711)
        with open(self.root / "state.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                try:
                    state = _State.from_json(json.loads(self.state_file.read_text()))
                except FileNotFoundError:
                    state = _State()
                self._held.state, self._held.write = state, write
                yield state
                if write:
                    self._save(state)
            finally:
                self._held.state = None
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self, state: _State) -> None:
        tmp = self.state_file.with_name(f".state.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(state.to_json(), handle, indent=1, sort_keys=True)
        tmp.replace(self.state_file)

    def _snapshot(self) -> _State:
        with self._locked(write=False) as state:
            return state

    # -- clusters ------------------------------------------------------------------------------
    def _socket_dir(self, branch_id: str) -> Path:
        # sun_path is 108 bytes: a short, stable directory per data directory.
        digest = hashlib.sha256(str(self.data_dir(branch_id)).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"forkstage-neon-{digest}"

    def _cluster(self, project: Project, branch_id: str, port: int = 5432) -> Cluster:
        return Cluster(
            self.data_dir(branch_id),
            port=port,
            socket_dir=self._socket_dir(branch_id),
            superuser=SUPERUSER,
            password=project.admin_password,
            fsync=self.fsync,
            settings=_SETTINGS,
        )

    def _endpoint_cluster(self, state: _State, endpoint: Endpoint) -> Cluster:
        return self._cluster(state.projects[endpoint.project_id], endpoint.branch_id, endpoint.port)

    def _free_port(self, state: _State) -> int:
        taken = {e.port for e in state.endpoints.values()}
        for _ in range(50):
            port = free_port()
            if port not in taken:
                return port
        raise NeonError("no free TCP port on 127.0.0.1 for a new endpoint")

    def _start(self, state: _State, endpoint: Endpoint) -> None:
        cluster = self._endpoint_cluster(state, endpoint)
        if cluster.is_running():
            return
        if not _port_free(endpoint.port):
            # Taken while the endpoint was stopped: move, as a restarted Neon compute may.
            endpoint.port = self._free_port(state)
            cluster = self._endpoint_cluster(state, endpoint)
        cluster.start()

    def _stop_branch(self, state: _State, branch_id: str) -> None:
        branch = state.branches.get(branch_id)
        if branch is None or branch.project_id not in state.projects:
            return
        cluster = self._cluster(state.projects[branch.project_id], branch_id)
        if cluster.initialized():
            cluster.stop("fast")
        shutil.rmtree(self._socket_dir(branch_id), ignore_errors=True)

    def _remove_branch_data(self, branch_id: str) -> None:
        shutil.rmtree(self.branch_dir(branch_id), ignore_errors=True)
        shutil.rmtree(self._socket_dir(branch_id), ignore_errors=True)

    def _admin_sql(self, cluster: Cluster, statements: list[Any], dbname: str = "postgres") -> None:
        import psycopg  # 0.3 s to import: only paid by operations that need SQL

        with psycopg.connect(
            host=str(cluster.socket_dir),
            port=cluster.port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            for statement in statements:
                if callable(statement):
                    statement = statement(conn)
                conn.execute(statement)

    def _create_role(self, cluster: Cluster, role: str, password: str) -> None:
        from psycopg import sql

        def create(conn: Any) -> Any:
            verifier = conn.pgconn.encrypt_password(
                password.encode(), role.encode(), b"scram-sha-256"
            ).decode()
            return sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(verifier)
            )

        self._admin_sql(cluster, [create])

    def _run_as_server(self, argv: list[str], what: str) -> None:
        """A PostgreSQL client binary run as the server's OS user (needed when we are root)."""
        account = None
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd="/",
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise NeonError(f"{what} failed (exit {done.returncode}): {tail}")

    def _hand_over(self, path: Path) -> None:
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(path, account.pw_uid, account.pw_gid)

    # -- projects ------------------------------------------------------------------------------
    def create_project(
        self,
        *,
        name: str | None = None,
        region_id: str | None = None,
        pg_version: int | None = None,
        branch_name: str | None = None,
        database_name: str | None = None,
        role_name: str | None = None,
        store_password: bool = True,
    ) -> Project:
        """A project with its default branch, database, owner role and running endpoint."""
        with self._locked() as state:
            project_id = _word_id()
            branch_id = _word_id("br-")
            endpoint_id = _word_id("ep-")
            database = database_name or DEFAULT_DATABASE
            role = role_name or DEFAULT_ROLE
            password = new_password()
            project = Project(
                id=project_id,
                name=name or project_id,
                region_id=region_id or DEFAULT_REGION,
                pg_version=0,
                default_branch_id=branch_id,
                default_endpoint_id=endpoint_id,
                database_name=database,
                role_name=role,
                store_password=store_password,
                admin_password=new_password(),
                created_at=_now(),
            )
            port = self._free_port(state)
            cluster = self._cluster(project, branch_id, port)
            self.branch_dir(branch_id).mkdir(parents=True, exist_ok=True)
            self.branch_dir(branch_id).chmod(0o711)
            try:
                cluster.init()
                cluster.start()
                self._create_role(cluster, role, password)
                from psycopg import sql

                self._admin_sql(
                    cluster,
                    [
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(database), sql.Identifier(role)
                        )
                    ],
                )
                server_version = int((cluster.data_dir / "PG_VERSION").read_text().split(".")[0])
            except Exception:
                cluster.destroy()
                self._remove_branch_data(branch_id)
                raise
            project.pg_version = pg_version or server_version
            state.projects[project_id] = project
            state.branches[branch_id] = Branch(
                id=branch_id,
                project_id=project_id,
                name=branch_name or "main",
                parent_id=None,
                primary=True,
                created_at=project.created_at,
                roles={role: password},
                databases={database: role},
                logical_size=_dir_size(cluster.data_dir),
            )
            state.endpoints[endpoint_id] = Endpoint(
                id=endpoint_id,
                project_id=project_id,
                branch_id=branch_id,
                type="read_write",
                port=port,
                host=endpoint_id + HOST_SUFFIX,
                pooler_host=endpoint_id + "-pooler" + HOST_SUFFIX,
                created_at=project.created_at,
            )
            return project

    def get_project(self, project_id: str) -> Project:
        state = self._snapshot()
        if project_id not in state.projects:
            raise NotFound(f"project {project_id} not found")
        return state.projects[project_id]

    def rename_project(self, project_id: str, name: str) -> Project:
        with self._locked() as state:
            project = self._project(state, project_id)
            project.name = name
            return project

    def set_store_password(self, project_id: str, store: bool) -> None:
        with self._locked() as state:
            self._project(state, project_id).store_password = store

    def delete_project(self, project_id: str) -> None:
        """Everything of the project: endpoints stopped, every branch's data removed."""
        with self._locked() as state:
            self._project(state, project_id)
            for endpoint in [e for e in state.endpoints.values() if e.project_id == project_id]:
                self._stop_branch(state, endpoint.branch_id)
                del state.endpoints[endpoint.id]
            for branch in [b for b in state.branches.values() if b.project_id == project_id]:
                self._stop_branch(state, branch.id)
                self._remove_branch_data(branch.id)
                del state.branches[branch.id]
            del state.projects[project_id]

    def _project(self, state: _State, project_id: str) -> Project:
        if project_id not in state.projects:
            raise NotFound(f"project {project_id} not found")
        return state.projects[project_id]

    # -- branches ------------------------------------------------------------------------------
    def create_branch(
        self, project_id: str, *, name: str | None = None, parent_id: str | None = None
    ) -> Branch:
        """An isolated copy of the parent (default: the project's default branch) as of now."""
        with self._locked() as state:
            project = self._project(state, project_id)
            parent = self._branch(state, project_id, parent_id or project.default_branch_id)
            branch_id = _word_id("br-")
            target = self.data_dir(branch_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.parent.chmod(0o711)
            running = [
                e
                for e in state.endpoints.values()
                if e.branch_id == parent.id and self._endpoint_cluster(state, e).is_running()
            ]
            try:
                if running:
                    source = self._endpoint_cluster(state, running[0])
                    target.mkdir(mode=0o700)
                    self._hand_over(target)
                    self._run_as_server(
                        [
                            str(source.bindir / "pg_basebackup"),
                            "-D",
                            str(target),
                            "-h",
                            str(source.socket_dir),
                            "-p",
                            str(source.port),
                            "-U",
                            SUPERUSER,
                            "-X",
                            "stream",
                            "-c",
                            "fast",
                            "--no-sync",
                        ],
                        "pg_basebackup of the parent branch",
                    )
                else:
                    # A stopped server's directory is consistent: a file copy is a branch.
                    subprocess.run(
                        ["cp", "-a", str(self.data_dir(parent.id)), str(target)],
                        check=True,
                        capture_output=True,
                    )
                for leftover in ("server.log", "postmaster.pid", "postmaster.opts"):
                    (target / leftover).unlink(missing_ok=True)
            except Exception:
                self._remove_branch_data(branch_id)
                raise
            branch = Branch(
                id=branch_id,
                project_id=project_id,
                name=name or branch_id,
                parent_id=parent.id,
                primary=False,
                created_at=_now(),
                roles=dict(parent.roles),
                databases=dict(parent.databases),
                logical_size=_dir_size(target),
            )
            state.branches[branch_id] = branch
            return branch

    def get_branch(self, project_id: str, branch_id: str) -> Branch:
        return self._branch(self._snapshot(), project_id, branch_id)

    def update_branch(
        self, project_id: str, branch_id: str, *, name: str | None = None, protected: bool = False
    ) -> Branch:
        with self._locked() as state:
            branch = self._branch(state, project_id, branch_id)
            branch.name = name or branch.name
            branch.protected = protected
            return branch

    def delete_branch(self, project_id: str, branch_id: str) -> None:
        """Its endpoints stopped and its data removed; the parent and siblings are untouched."""
        with self._locked() as state:
            branch = self._branch(state, project_id, branch_id)
            if branch.primary:
                raise Conflict(f"branch {branch_id} is the project's default branch")
            children = [b.id for b in state.branches.values() if b.parent_id == branch_id]
            if children:
                raise Conflict(f"branch {branch_id} has child branches: {', '.join(children)}")
            self._stop_branch(state, branch_id)
            for endpoint in [e for e in state.endpoints.values() if e.branch_id == branch_id]:
                del state.endpoints[endpoint.id]
            self._remove_branch_data(branch_id)
            del state.branches[branch_id]

    def _branch(self, state: _State, project_id: str, branch_id: str) -> Branch:
        self._project(state, project_id)
        branch = state.branches.get(branch_id)
        if branch is None or branch.project_id != project_id:
            raise NotFound(f"branch {branch_id} not found in project {project_id}")
        return branch

    def role_password(self, project_id: str, branch_id: str, role: str) -> str:
        state = self._snapshot()
        project = self._project(state, project_id)
        branch = self._branch(state, project_id, branch_id)
        if not project.store_password:
            raise PasswordNotStored(
                f'project {project_id} does not store role passwords (store_password = "no")'
            )
        if role not in branch.roles:
            raise NotFound(f"role {role} not found on branch {branch_id}")
        return branch.roles[role]

    # -- endpoints -----------------------------------------------------------------------------
    def create_endpoint(
        self, project_id: str, branch_id: str, *, type: str = "read_write"
    ) -> Endpoint:
        """Start the branch's server on a free loopback port."""
        with self._locked() as state:
            project = self._project(state, project_id)
            self._branch(state, project_id, branch_id)
            if type != "read_write":
                raise NeonError(f"endpoint type {type!r} is not emulated locally: use read_write")
            if any(e.branch_id == branch_id for e in state.endpoints.values()):
                raise Conflict(f"branch {branch_id} already has a read_write endpoint")
            endpoint_id = _word_id("ep-")
            endpoint = Endpoint(
                id=endpoint_id,
                project_id=project.id,
                branch_id=branch_id,
                type=type,
                port=self._free_port(state),
                host=endpoint_id + HOST_SUFFIX,
                pooler_host=endpoint_id + "-pooler" + HOST_SUFFIX,
                created_at=_now(),
            )
            self._start(state, endpoint)
            state.endpoints[endpoint_id] = endpoint
            return endpoint

    def get_endpoint(self, project_id: str, endpoint_id: str) -> Endpoint:
        state = self._snapshot()
        self._project(state, project_id)
        endpoint = state.endpoints.get(endpoint_id)
        if endpoint is None or endpoint.project_id != project_id:
            raise NotFound(f"endpoint {endpoint_id} not found in project {project_id}")
        return endpoint

    def update_endpoint(self, project_id: str, endpoint_id: str, settings: dict[str, Any]) -> None:
        with self._locked() as state:
            self._project(state, project_id)
            endpoint = state.endpoints.get(endpoint_id)
            if endpoint is None or endpoint.project_id != project_id:
                raise NotFound(f"endpoint {endpoint_id} not found in project {project_id}")
            endpoint.settings = settings

    def wake(self, endpoint_id: str) -> Endpoint:
        """Start a suspended endpoint (Neon computes wake on demand; here after a reboot)."""
        with self._locked() as state:
            if endpoint_id not in state.endpoints:
                raise NotFound(f"endpoint {endpoint_id} not found")
            endpoint = state.endpoints[endpoint_id]
            self._start(state, endpoint)
            return endpoint

    def delete_endpoint(self, project_id: str, endpoint_id: str) -> None:
        """Stop the branch's server; its data stays with the branch."""
        with self._locked() as state:
            self._project(state, project_id)
            endpoint = state.endpoints.get(endpoint_id)
            if endpoint is None or endpoint.project_id != project_id:
                raise NotFound(f"endpoint {endpoint_id} not found in project {project_id}")
            if state.projects[project_id].default_endpoint_id == endpoint_id:
                raise Conflict(f"endpoint {endpoint_id} is the project's default endpoint")
            self._stop_branch(state, endpoint.branch_id)
            del state.endpoints[endpoint_id]

    def resolve_host(self, host: str) -> tuple[str, int]:
        """``(127.0.0.1, port)`` that serves an endpoint host (direct or pooler)."""
        state = self._snapshot()
        for endpoint in state.endpoints.values():
            if host in (endpoint.host, endpoint.pooler_host):
                return LOOPBACK, endpoint.port
        raise NotFound(f"no local endpoint has host {host}")

    def branch_url(
        self,
        project_id: str,
        branch_id: str,
        *,
        database: str | None = None,
        role: str | None = None,
    ) -> str:
        """A libpq URL to the branch's endpoint, as the project's owner role by default."""
        state = self._snapshot()
        project = self._project(state, project_id)
        branch = self._branch(state, project_id, branch_id)
        endpoint = next((e for e in state.endpoints.values() if e.branch_id == branch_id), None)
        if endpoint is None:
            raise NotFound(f"branch {branch_id} has no endpoint")
        user = role or project.role_name
        password = branch.roles.get(user)
        if password is None:
            raise NotFound(f"role {user} not found on branch {branch_id}")
        return (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{LOOPBACK}:"
            f"{endpoint.port}/{quote(database or project.database_name, safe='')}"
        )

    # -- housekeeping --------------------------------------------------------------------------
    def endpoints(self) -> list[Endpoint]:
        return list(self._snapshot().endpoints.values())

    def start_all(self) -> None:
        with self._locked() as state:
            for endpoint in state.endpoints.values():
                self._start(state, endpoint)

    def stop_all(self) -> None:
        """Stop every server under this home (before a reboot, at test teardown), including
        one a killed process started but never recorded."""
        if not self.root.is_dir():
            return
        # Nothing recorded changes: endpoints wake on their next read, or with start_all().
        with self._locked(write=False):
            for data_dir in sorted(self.branches_root.glob("*/pgdata")):
                branch_id = data_dir.parent.name
                cluster = Cluster(data_dir, port=5432, socket_dir=self._socket_dir(branch_id))
                cluster.stop("fast")
                shutil.rmtree(cluster.socket_dir, ignore_errors=True)
