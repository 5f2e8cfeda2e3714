"""Where a database remembers which migrations it has run.

Drizzle layouts keep their history in Drizzle's own table, written exactly as Drizzle writes it,
so a branch migrated by forkstage can later be migrated by drizzle-kit (and vice versa) without
running anything twice:

- journal layout: ``drizzle.__drizzle_migrations(id serial primary key, hash text not null,
  created_at bigint)``; a row is (sha256 of the file, the journal entry's ``when``). Drizzle itself
  identifies migrations by ``created_at``; so does forkstage.
- folder layout (drizzle 1.0): the same table plus ``name text`` and ``applied_at timestamptz
  default now()``; rows are identified by ``name`` (the folder). A table still in the older shape is
  upgraded the way Drizzle does it (add the columns, backfill names by timestamp, then hash).

Plain folders use ``forkstage.schema_migrations(name, sha256, applied_at)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import LiteralString

import psycopg
from psycopg.rows import TupleRow

from forkstage.errors import BadInput
from forkstage.migrator.layout import Layout, Migration, MigrationSet

Conn = psycopg.Connection[TupleRow]

DRIZZLE_SCHEMA = "drizzle"
DRIZZLE_TABLE = "__drizzle_migrations"
FORKSTAGE_SCHEMA = "forkstage"
FORKSTAGE_TABLE = "schema_migrations"


@dataclass(frozen=True)
class Record:
    """One history row: ``key`` is what ties it to a migration (see ``History.key``)."""

    key: str
    sha256: str
    applied_at: datetime | None


class History(ABC):
    schema: LiteralString
    table: LiteralString

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    def exists(self, conn: Conn) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [self.qualified]).fetchone()
        return bool(row and row[0])

    def columns(self, conn: Conn) -> set[str]:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            [self.schema, self.table],
        ).fetchall()
        return {str(r[0]) for r in rows}

    @abstractmethod
    def key(self, migration: Migration) -> str:
        """The value that identifies ``migration`` among this table's rows."""

    @abstractmethod
    def ensure(self, conn: Conn, mset: MigrationSet) -> None:
        """Create (or upgrade) the table; called with the migration lock held."""

    @abstractmethod
    def records(self, conn: Conn, mset: MigrationSet) -> list[Record]:
        """Every row, oldest first (the table must exist)."""

    @abstractmethod
    def record(self, conn: Conn, migration: Migration) -> None:
        """Write ``migration``'s row (inside the migration's own transaction)."""


class DrizzleJournalHistory(History):
    schema = DRIZZLE_SCHEMA
    table = DRIZZLE_TABLE

    def key(self, migration: Migration) -> str:
        return str(migration.created_at)

    def ensure(self, conn: Conn, mset: MigrationSet) -> None:
        conn.execute('CREATE SCHEMA IF NOT EXISTS "drizzle"')
        conn.execute(
            'CREATE TABLE IF NOT EXISTS "drizzle"."__drizzle_migrations" '
            "(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)"
        )

    def records(self, conn: Conn, mset: MigrationSet) -> list[Record]:
        applied_at: LiteralString = (
            "applied_at" if "applied_at" in self.columns(conn) else "NULL::timestamptz"
        )
        rows = conn.execute(
            "SELECT created_at, hash, " + applied_at + ' FROM "drizzle"."__drizzle_migrations" '
            "ORDER BY id"
        ).fetchall()
        return [Record(str(r[0]), str(r[1]), r[2]) for r in rows]

    def record(self, conn: Conn, migration: Migration) -> None:
        conn.execute(
            'INSERT INTO "drizzle"."__drizzle_migrations" ("hash", "created_at") VALUES (%s, %s)',
            [migration.sha256, migration.created_at],
        )


class DrizzleFoldersHistory(History):
    schema = DRIZZLE_SCHEMA
    table = DRIZZLE_TABLE

    def key(self, migration: Migration) -> str:
        return migration.name

    def ensure(self, conn: Conn, mset: MigrationSet) -> None:
        conn.execute('CREATE SCHEMA IF NOT EXISTS "drizzle"')
        if not self.exists(conn):
            conn.execute(
                'CREATE TABLE "drizzle"."__drizzle_migrations" (id SERIAL PRIMARY KEY, '
                "hash text NOT NULL, created_at bigint, name text, "
                "applied_at timestamp with time zone DEFAULT now())"
            )
            return
        if "name" in self.columns(conn):
            return
        rows = self._old_rows(conn)
        names = _match_old_rows(rows, mset.migrations)
        unmatched = [str(i) for i, _, _ in rows if i not in names]
        if unmatched:
            raise BadInput(
                f"{self.qualified} has rows (ids {', '.join(unmatched)}) that match no migration "
                f"folder in {mset.directory}: add the missing folders before migrating"
            )
        with conn.transaction():
            conn.execute(
                'ALTER TABLE "drizzle"."__drizzle_migrations" ADD COLUMN IF NOT EXISTS name text'
            )
            conn.execute(
                'ALTER TABLE "drizzle"."__drizzle_migrations" ADD COLUMN IF NOT EXISTS '
                "applied_at timestamp with time zone DEFAULT now()"
            )
            for row_id, name in names.items():
                conn.execute(
                    'UPDATE "drizzle"."__drizzle_migrations" SET name = %s, applied_at = NULL '
                    "WHERE id = %s",
                    [name, row_id],
                )

    def _old_rows(self, conn: Conn) -> list[tuple[int, str, int | None]]:
        rows = conn.execute(
            'SELECT id, hash, created_at FROM "drizzle"."__drizzle_migrations" ORDER BY id'
        ).fetchall()
        return [(int(r[0]), str(r[1]), None if r[2] is None else int(r[2])) for r in rows]

    def records(self, conn: Conn, mset: MigrationSet) -> list[Record]:
        if "name" not in self.columns(conn):  # old shape, seen read-only (dry run, listing)
            rows = self._old_rows(conn)
            names = _match_old_rows(rows, mset.migrations)
            return [Record(names.get(i, f"id {i}"), h, None) for i, h, _ in rows]
        found = conn.execute(
            'SELECT id, name, hash, applied_at FROM "drizzle"."__drizzle_migrations" ORDER BY id'
        ).fetchall()
        return [Record(str(r[1]) if r[1] is not None else f"id {r[0]}", r[2], r[3]) for r in found]

    def record(self, conn: Conn, migration: Migration) -> None:
        conn.execute(
            'INSERT INTO "drizzle"."__drizzle_migrations" ("hash", "created_at", "name") '
            "VALUES (%s, %s, %s)",
            [migration.sha256, migration.created_at, migration.name],
        )


def _match_old_rows(
    rows: list[tuple[int, str, int | None]], migrations: tuple[Migration, ...]
) -> dict[int, str]:
    """Drizzle's rule for naming rows of the old table: same second, then same hash."""
    by_second: dict[int, list[Migration]] = {}
    by_hash: dict[str, Migration] = {}
    for m in migrations:
        by_second.setdefault(m.created_at or 0, []).append(m)
        by_hash[m.sha256] = m
    names: dict[int, str] = {}
    for row_id, digest, created_at in rows:
        candidates = by_second.get((created_at or 0) // 1000 * 1000, [])
        if len(candidates) == 1:
            names[row_id] = candidates[0].name
        elif candidates:
            hit = next((c for c in candidates if c.sha256 == digest), None)
            if hit:
                names[row_id] = hit.name
        elif digest in by_hash:
            names[row_id] = by_hash[digest].name
    return names


class ForkstageHistory(History):
    schema = FORKSTAGE_SCHEMA
    table = FORKSTAGE_TABLE

    def key(self, migration: Migration) -> str:
        return migration.name

    def ensure(self, conn: Conn, mset: MigrationSet) -> None:
        conn.execute('CREATE SCHEMA IF NOT EXISTS "forkstage"')
        conn.execute(
            'CREATE TABLE IF NOT EXISTS "forkstage"."schema_migrations" ('
            "name text PRIMARY KEY, sha256 text NOT NULL, "
            "applied_at timestamp with time zone NOT NULL DEFAULT now())"
        )

    def records(self, conn: Conn, mset: MigrationSet) -> list[Record]:
        rows = conn.execute(
            'SELECT name, sha256, applied_at FROM "forkstage"."schema_migrations" '
            "ORDER BY applied_at, name"
        ).fetchall()
        return [Record(str(r[0]), str(r[1]), r[2]) for r in rows]

    def record(self, conn: Conn, migration: Migration) -> None:
        conn.execute(
            'INSERT INTO "forkstage"."schema_migrations" (name, sha256) VALUES (%s, %s)',
            [migration.name, migration.sha256],
        )


def history_for(layout: Layout) -> History:
    if layout is Layout.DRIZZLE_JOURNAL:
        return DrizzleJournalHistory()
    if layout is Layout.DRIZZLE_FOLDERS:
        return DrizzleFoldersHistory()
    return ForkstageHistory()
