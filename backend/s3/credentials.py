"""The credentials file: who may talk to the state server, and with which policy.

It lives at ``<data>/credentials.json`` with mode 0600. Writers take an flock on a sibling lock
file and replace the file atomically, so the CLI can issue credentials while the server runs; the
server re-reads the file whenever its mtime/size/inode changes (``CredentialBook``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import string
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FILENAME = "credentials.json"
POLICIES = ("admin", "stage")
STAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    policy: str
    stage: str | None = None
    read_outputs: tuple[str, ...] = ()

    def describe(self) -> str:
        """A log-safe name for this credential (never the secret)."""
        if self.policy == "admin":
            return "admin"
        return f"stage:{self.stage}"

    def to_json(self) -> dict[str, object]:
        return {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "policy": self.policy,
            "stage": self.stage,
            "read_outputs": list(self.read_outputs),
        }


def path_for(data_dir: Path) -> Path:
    return Path(data_dir) / FILENAME


def validate_stage(name: str, what: str = "stage") -> str:
    if not STAGE_RE.match(name):
        raise ValueError(
            f"invalid {what} name {name!r}: use letters, digits, '-', '_' or '.' (max 63)"
        )
    return name


def _parse(raw: object) -> list[Credential]:
    if not isinstance(raw, dict) or not isinstance(raw.get("credentials"), list):
        raise ValueError('credentials file must hold {"credentials": [...]}')
    out: list[Credential] = []
    for entry in raw["credentials"]:
        if not isinstance(entry, dict):
            raise ValueError("each credential must be an object")
        policy = entry.get("policy")
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}")
        stage = entry.get("stage")
        if policy == "stage" and not isinstance(stage, str):
            raise ValueError("a stage credential needs a stage name")
        reads = entry.get("read_outputs") or []
        if not isinstance(reads, list) or not all(isinstance(r, str) for r in reads):
            raise ValueError("read_outputs must be a list of workspace names")
        akid, secret = entry.get("access_key_id"), entry.get("secret_access_key")
        if not isinstance(akid, str) or not isinstance(secret, str) or not akid or not secret:
            raise ValueError("each credential needs access_key_id and secret_access_key")
        out.append(
            Credential(
                access_key_id=akid,
                secret_access_key=secret,
                policy=policy,
                stage=stage if policy == "stage" else None,
                read_outputs=tuple(reads) if policy == "stage" else (),
            )
        )
    return out


def load(data_dir: Path) -> list[Credential]:
    """Every credential in the file (empty list if there is no file yet)."""
    path = path_for(data_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return _parse(json.loads(text))


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / ".credentials.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _save(data_dir: Path, creds: Sequence[Credential]) -> None:
    path = path_for(data_dir)
    tmp = path.with_name(f".{FILENAME}.{os.getpid()}.tmp")
    body = json.dumps({"credentials": [c.to_json() for c in creds]}, indent=2) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, body.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _new(policy: str, stage: str | None, read_outputs: tuple[str, ...]) -> Credential:
    prefix = "FSA" if policy == "admin" else "FSS"
    return Credential(
        access_key_id=prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17)),
        secret_access_key="".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40)),
        policy=policy,
        stage=stage,
        read_outputs=read_outputs,
    )


def issue(
    data_dir: Path,
    *,
    policy: str,
    stage: str | None = None,
    read_outputs: Sequence[str] = (),
) -> Credential:
    """The credential for (policy, stage, read_outputs), created on first request."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")
    reads: tuple[str, ...]
    if policy == "admin":
        if stage or read_outputs:
            raise ValueError("an admin credential takes no stage and no read-outputs")
        stage, reads = None, ()
    else:
        if not stage:
            raise ValueError("a stage credential needs --stage")
        validate_stage(stage)
        reads = tuple(sorted({validate_stage(r, "workspace") for r in read_outputs}))
        if stage in reads:
            raise ValueError(f"stage {stage!r} already has full access to its own workspace")
    with _locked(Path(data_dir)):
        creds = load(data_dir)
        for cred in creds:
            if (cred.policy, cred.stage, tuple(sorted(cred.read_outputs))) == (
                policy,
                stage,
                reads,
            ):
                return cred
        cred = _new(policy, stage, reads)
        _save(data_dir, [*creds, cred])
        return cred


def ensure_admin(data_dir: Path) -> Credential:
    """The admin credential, generated the first time the server starts."""
    return issue(data_dir, policy="admin")


class CredentialBook:
    """The server's view of the file, re-read when it changes on disk."""

    def __init__(self, data_dir: Path) -> None:
        self._path = path_for(data_dir)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_key: dict[str, Credential] = {}

    def _refresh(self) -> None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._by_key, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            creds = _parse(json.loads(self._path.read_text()))
        except (OSError, ValueError):
            return  # keep the last good set; a half-edited file must not lock everyone out
        self._by_key = {c.access_key_id: c for c in creds}
        self._stamp = stamp

    def lookup(self, access_key_id: str) -> Credential | None:
        with self._lock:
            self._refresh()
            return self._by_key.get(access_key_id)
