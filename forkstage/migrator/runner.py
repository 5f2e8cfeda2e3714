"""Apply a migrations folder to one database, each migration exactly once.

Guarantees the branch workflow relies on:

- each migration runs in its own transaction together with its history row, so a failing one
  leaves schema and history exactly as they were before it (later ones are not attempted);
- a session advisory lock makes concurrent runners on one database take turns; the history is
  read only after the lock is granted, so the second runner sees what the first applied;
- an applied migration whose file changed stops the run before anything is applied;
- a branch cloned from a migrated database carries its history, so only newer migrations run.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import psycopg
from psycopg.pq import TransactionStatus

from forkstage.errors import DatabaseUnavailable, EditedMigration, MigrationFailed
from forkstage.migrator.dburl import check_url, describe, scrub
from forkstage.migrator.history import Conn, History, Record, history_for
from forkstage.migrator.layout import Layout, Migration, MigrationSet, load_migrations
from forkstage.migrator.reach import ConnectOptions

# One key per database: advisory locks are scoped to the database they are taken in.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"forkstage.migrate").digest()[:8], "big", signed=True)
APPLICATION_NAME = "forkstage-migrate"


class Status(StrEnum):
    APPLIED = "applied"
    PENDING = "pending"
    CHANGED = "changed"


@dataclass(frozen=True)
class Entry:
    migration: Migration
    status: Status
    recorded_sha256: str | None = None
    applied_at: datetime | None = None
    # journal layout: older than the newest applied entry; drizzle's own migrator would skip it
    out_of_order: bool = False


@dataclass(frozen=True)
class Plan:
    layout: Layout
    history_table: str
    entries: tuple[Entry, ...]
    unknown: tuple[str, ...]  # history rows that match no migration in the folder

    def having(self, status: Status) -> list[Entry]:
        return [e for e in self.entries if e.status is status]


@dataclass(frozen=True)
class Applied:
    migration: Migration
    seconds: float


@dataclass
class Outcome:
    plan: Plan  # as read under the lock, before anything ran
    dry_run: bool
    applied: list[Applied] = field(default_factory=list)


def inspect(conn: Conn, mset: MigrationSet, history: History | None = None) -> Plan:
    """Each migration's status in this database (reads only)."""
    history = history or history_for(mset.layout)
    records = history.records(conn, mset) if history.exists(conn) else []
    by_key: dict[str, Record] = {}
    for record in records:
        by_key.setdefault(record.key, record)
    newest = None
    if mset.layout is Layout.DRIZZLE_JOURNAL:
        newest = max((int(k) for k in by_key if k.lstrip("-").isdigit()), default=None)
    entries: list[Entry] = []
    keys: set[str] = set()
    for m in mset.migrations:
        key = history.key(m)
        keys.add(key)
        rec = by_key.get(key)
        if rec is None:
            late = newest is not None and (m.created_at or 0) < newest
            entries.append(Entry(m, Status.PENDING, out_of_order=late))
        elif m.same_content(rec.sha256):
            entries.append(Entry(m, Status.APPLIED, rec.sha256, rec.applied_at))
        else:
            entries.append(Entry(m, Status.CHANGED, rec.sha256, rec.applied_at))
    unknown = tuple(k for k in by_key if k not in keys)
    return Plan(mset.layout, history.qualified, tuple(entries), unknown)


def edited_error(plan: Plan) -> EditedMigration:
    changed = plan.having(Status.CHANGED)
    files = [e.migration.file for e in changed]
    if len(changed) == 1:
        e = changed[0]
        recorded = (e.recorded_sha256 or "")[:12]
        return EditedMigration(
            f"{e.migration.file} was edited after it was applied to this database (recorded "
            f"sha256 {recorded}, file now {e.migration.sha256[:12]}): restore it and put the "
            "change in a new migration",
            files,
        )
    return EditedMigration(
        f"{len(files)} applied migrations were edited ({', '.join(files)}): restore them and put "
        "the changes in new migrations",
        files,
    )


def connect(url: str, *, timeout: int = 15, connect_options: ConnectOptions | None = None) -> Conn:
    """An autocommit session on ``url``; ``connect_options(url)`` adds libpq keywords."""
    check_url(url)
    extra = dict(connect_options(url)) if connect_options else {}
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=timeout,
            application_name=APPLICATION_NAME,
            **extra,  # type: ignore[arg-type]
        )
    except psycopg.Error as exc:
        detail = scrub(" ".join(str(exc).split()), url)
        raise DatabaseUnavailable(f"cannot connect to {describe(url)}: {detail}") from None


def status(url: str, directory: Path, *, connect_options: ConnectOptions | None = None) -> Plan:
    """What ``migrate`` would find: applied, pending and changed migrations."""
    mset = load_migrations(directory)
    with connect(url, connect_options=connect_options) as conn:
        return inspect(conn, mset)


def migrate(
    url: str,
    directory: Path,
    *,
    dry_run: bool = False,
    lock_timeout: float = 300,
    on_applied: Callable[[Applied], None] | None = None,
    connect_options: ConnectOptions | None = None,
) -> Outcome:
    """Apply every pending migration of ``directory``; see the module docstring for guarantees.

    ``connect_options`` is how the caller routes ``url`` (see ``reach.Resolver``).
    """
    mset = load_migrations(directory)  # bad input fails before any connection
    with connect(url, connect_options=connect_options) as conn:
        history = history_for(mset.layout)
        if dry_run:
            plan = inspect(conn, mset, history)
            if plan.having(Status.CHANGED):
                raise edited_error(plan)
            return Outcome(plan, dry_run=True)
        _lock(conn, url, lock_timeout)
        try:
            history.ensure(conn, mset)
            plan = inspect(conn, mset, history)  # read after the lock: see what others applied
            if plan.having(Status.CHANGED):
                raise edited_error(plan)
            outcome = Outcome(plan, dry_run=False)
            for entry in plan.having(Status.PENDING):
                done = _apply(conn, history, entry.migration, outcome)
                outcome.applied.append(done)
                if on_applied:
                    on_applied(done)
            return outcome
        finally:
            # closing the session would release the lock too; unlock early for the next runner
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def _lock(conn: Conn, url: str, timeout: float) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, false)", [f"{int(timeout * 1000)}ms"])
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
    except psycopg.errors.LockNotAvailable:
        raise DatabaseUnavailable(
            f"another migration run held the migration lock on {describe(url)} for more than "
            f"{timeout:.0f} s: retry when it has finished"
        ) from None
    finally:
        conn.execute("RESET lock_timeout")


class _TransactionEnded(Exception):
    pass


def _apply(conn: Conn, history: History, migration: Migration, outcome: Outcome) -> Applied:
    started = time.monotonic()
    try:
        with conn.transaction():
            for statement in migration.statements:
                conn.execute(statement.encode("utf-8"))
            if conn.info.transaction_status is not TransactionStatus.INTRANS:
                raise _TransactionEnded
            history.record(conn, migration)
    except _TransactionEnded:
        raise MigrationFailed(
            f"migration {migration.file} ran COMMIT or ROLLBACK itself, so it could not be kept "
            "atomic and was not recorded: remove the transaction statements and check the "
            "database by hand",
            migration.file,
            [a.migration.file for a in outcome.applied],
        ) from None
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        code = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
        raise MigrationFailed(
            f"migration {migration.file} failed: {first}{code}; it was rolled back and later "
            "migrations did not run",
            migration.file,
            [a.migration.file for a in outcome.applied],
        ) from None
    return Applied(migration, time.monotonic() - started)
