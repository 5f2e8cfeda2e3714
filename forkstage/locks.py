"""Terraform's state lock, for people: who holds it, since when, and how to release it safely.

The S3 backend's lock is an object beside the state (``<key>.tflock``) holding Terraform's lock
info (ID, Who, Operation, Created). Terraform records no process id, so forkstage records its
own runs (``forkstage.runs.running``): a lock held by a live forkstage run on this machine is
never released from outside, a stale one of this machine is, any other holder needs ``force``.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forkstage.errors import Failed, Refused
from forkstage.runs import live_runs
from forkstage.state import StateReader, backend_client, state_key

if TYPE_CHECKING:
    from cdk.settings import BackendSettings
    from forkstage.runner import StageRun


class Locked(Failed):
    """Another run holds the stage's state lock (exit 1: the operation could not run)."""


def who() -> str:
    """What Terraform writes as the lock's ``Who`` on this machine: ``user@host``."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def created_at(info: dict[str, Any]) -> datetime | None:
    """The lock's ``Created`` (RFC 3339 in the lock object, Go's format in error text)."""
    text = str(info.get("Created", "")).strip()
    if not text:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)  # Go's nanoseconds
    text = text.replace(" +0000 UTC", "+00:00").replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age(moment: datetime | None) -> str:
    """``3m ago``; ``-`` when unknown."""
    if moment is None:
        return "-"
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def operation(info: dict[str, Any]) -> str:
    """``OperationTypeApply`` -> ``apply``."""
    text = str(info.get("Operation", "") or "")
    return text.removeprefix("OperationType").lower() or "an unknown operation"


def describe(info: dict[str, Any]) -> str:
    """``ci@runner-7 since 2026-11-26 10:00:00 UTC (5m ago), for apply, lock ID 1111...``."""
    moment = created_at(info)
    since = (
        f"since {moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')} ({age(moment)})"
        if moment
        else "since an unknown time"
    )
    return (
        f"{info.get('Who') or 'an unknown holder'} {since}, for {operation(info)}, "
        f"lock ID {info.get('ID') or '?'}"
    )


def conflict_message(run: StageRun, parsed: dict[str, str]) -> str:
    """Terraform could not take the lock: name the holder and say how to wait or release it."""
    stage = run.stage.name
    try:
        info: dict[str, Any] = run.reader.lock(stage) or parsed
    except Failed:
        info = parsed
    return (
        f"stage {stage} is locked by {describe(info)}: wait for that run with --lock-timeout "
        f"(e.g. --lock-timeout 10m), or, if it is gone, release the lock with "
        f"`forkstage unlock --stage {stage}`"
    )


def release_own(run: StageRun, *, since: float, until: float) -> bool:
    """After our own Terraform run was interrupted: delete the lock it may have left, only if
    it is its lock (this user and machine, created while it ran). True if one was deleted."""
    try:
        info = run.reader.lock(run.stage.name)
    except Failed:
        return False
    if not info or info.get("Who") != who():
        return False
    moment = created_at(info)
    if moment is None or not (since - 5 <= moment.timestamp() <= until + 1):
        return False
    return delete_if(run.reader, run.backend, run.home, run.stage.name, str(info.get("ID", "")))


def delete_if(
    reader: StateReader, backend: BackendSettings, home: Path, stage: str, lock_id: str
) -> bool:
    """Delete the stage's lock object only while it still carries ``lock_id``."""
    current = reader.lock(stage)
    if not current or str(current.get("ID", "")) != lock_id:
        return False
    key = state_key(backend, stage) + ".tflock"
    try:
        backend_client(backend, home).delete_object(Bucket=backend.bucket, Key=key)
    except Exception as exc:
        raise Failed(f"cannot release the lock of {stage}: {exc}") from None
    return True


@dataclass
class UnlockResult:
    """What ``forkstage unlock`` found and did."""

    stage: str
    lock: dict[str, Any] | None
    released: bool = False
    holder: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "lock": self.lock,
            "released": self.released,
            "holder": self.holder,
        }


def unlock(
    reader: StateReader,
    backend: BackendSettings,
    home: Path,
    stage: str,
    *,
    force: bool = False,
    lock_id: str | None = None,
) -> UnlockResult:
    """Release the stage's lock, refusing (exit 3) what is not provably stale without
    ``force``, and always a lock held by a live forkstage run on this machine."""
    info = reader.lock(stage)
    if info is None:
        return UnlockResult(stage, None)
    shown = str(info.get("ID", ""))
    if lock_id is not None and lock_id != shown:
        raise Refused(f"the lock of {stage} is {shown}, not {lock_id}: nothing released")
    holder = str(info.get("Who", ""))
    mine = holder == who()
    running = live_runs(home, stage)
    if running and (mine or not holder):
        first = running[0]
        raise Refused(
            f"the lock of {stage} is held by a live forkstage run on this machine (pid "
            f"{first['pid']}, {first['operation']}): stop that run (Ctrl-C) instead; it releases "
            "the lock itself"
        )
    if not mine and not force:
        raise Refused(
            f"stage {stage} is locked by {describe(info)}, not a run of this machine: if that "
            f"run is gone, pass --force to release it (forkstage unlock --stage {stage} --force)"
        )
    if not delete_if(reader, backend, home, stage, shown):
        raise Refused(f"the lock of {stage} changed while it was read: nothing released")
    return UnlockResult(stage, info, released=True, holder="this machine" if mine else holder)
