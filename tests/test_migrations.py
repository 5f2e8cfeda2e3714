"""forkstage's migration runner against a real PostgreSQL (see tests/pgfixture.py)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from forkstage.cli import main
from forkstage.migrator import (
    EditedMigration,
    Layout,
    MigrationFailed,
    Status,
    load_migrations,
    migrate,
    status,
)
from forkstage.migrator.errors import BadInput
from tests.pgfixture import PASSWORD, Database, pg_cluster, pg_db  # noqa: F401

BP = "\n--> statement-breakpoint\n"
WHEN0 = 1_700_000_000_123


# -- folder builders ------------------------------------------------------------------------
@dataclass
class Kit:
    """Writes migrations in one layout; ``file(i)`` is how messages name the i-th (0-based)."""

    layout: Layout
    labels: list[str]

    def write(self, folder: Path, migrations: list[tuple[str, list[str]]]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        entries = []
        for i, (label, statements) in enumerate(migrations):
            if self.layout is Layout.PLAIN:
                (folder / f"{i:04d}_{label}.sql").write_text(";\n".join(statements) + ";\n")
            elif self.layout is Layout.DRIZZLE_JOURNAL:
                tag = f"{i:04d}_{label}"
                (folder / f"{tag}.sql").write_text(";".join(s + BP for s in statements))
                entries.append(
                    {"idx": i, "version": "7", "when": WHEN0 + i * 1000, "tag": tag,
                     "breakpoints": True}
                )  # fmt: skip
            else:
                sub = folder / f"2024010112{i:02d}00_{label}"
                sub.mkdir(exist_ok=True)
                (sub / "migration.sql").write_text(";".join(s + BP for s in statements))
        if self.layout is Layout.DRIZZLE_JOURNAL:
            (folder / "meta").mkdir(exist_ok=True)
            journal = {"version": "7", "dialect": "postgresql", "entries": entries}
            (folder / "meta" / "_journal.json").write_text(json.dumps(journal, indent=2))
        self.labels = [label for label, _ in migrations]

    def file(self, i: int) -> str:
        label = self.labels[i]
        if self.layout is Layout.DRIZZLE_FOLDERS:
            return f"2024010112{i:02d}00_{label}/migration.sql"
        return f"{i:04d}_{label}.sql"

    @property
    def history(self) -> str:
        if self.layout is Layout.PLAIN:
            return "forkstage.schema_migrations"
        return "drizzle.__drizzle_migrations"


@pytest.fixture(params=list(Layout), ids=lambda layout: str(layout))
def kit(request: pytest.FixtureRequest) -> Kit:
    return Kit(request.param, [])


ACCOUNTS = ("accounts", ["CREATE TABLE accounts (id serial PRIMARY KEY, email text NOT NULL)"])
POSTS = (
    "posts",
    [
        "CREATE TABLE posts (id serial PRIMARY KEY, account_id int REFERENCES accounts(id))",
        "CREATE INDEX posts_account ON posts (account_id)",
    ],
)
TAGS = ("tags", ["CREATE TABLE tags (name text PRIMARY KEY)", "INSERT INTO tags VALUES ('a')"])


def tables(db: Database) -> list[str]:
    rows = db.query(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
    )
    return [r[0] for r in rows]


def catalog(db: Database) -> list[tuple[Any, ...]]:
    """Every user relation and column: what a rolled-back migration must not leave behind."""
    rels = db.query(
        "SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2"
    )
    cols = db.query(
        "SELECT table_schema, table_name, column_name, data_type, is_nullable, "
        "coalesce(column_default, '') FROM information_schema.columns "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3"
    )
    return rels + cols


def history_rows(db: Database, kit: Kit) -> list[tuple[Any, ...]]:
    return db.query(f"SELECT * FROM {kit.history} ORDER BY 1".encode())


def applied_files(outcome: Any) -> list[str]:
    return [a.migration.file for a in outcome.applied]


def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


# -- each layout: apply, then no-op -----------------------------------------------------------
def test_each_layout_applies_on_empty_database_then_is_a_noop(
    kit: Kit, pg_db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    kit.write(folder, [ACCOUNTS, POSTS, TAGS])
    assert load_migrations(folder).layout is kit.layout

    first = migrate(pg_db.url, folder)
    assert applied_files(first) == [kit.file(0), kit.file(1), kit.file(2)]
    assert {"public.accounts", "public.posts", "public.tags", kit.history} <= set(tables(pg_db))
    assert pg_db.query("SELECT name FROM tags") == [("a",)]
    rows_after_first = history_rows(pg_db, kit)
    assert len(rows_after_first) == 3

    second = migrate(pg_db.url, folder)
    assert second.applied == []
    assert [e.status for e in second.plan.entries] == [Status.APPLIED] * 3
    assert history_rows(pg_db, kit) == rows_after_first
    assert pg_db.query("SELECT count(*) FROM tags") == [(1,)]


# -- a branch (template clone) runs only what came after the fork ------------------------------
def test_clone_runs_only_migrations_added_after_the_clone(
    kit: Kit, pg_db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    kit.write(folder, [ACCOUNTS, POSTS])
    migrate(pg_db.url, folder)
    branch = pg_db.clone("branch")

    kit.write(folder, [ACCOUNTS, POSTS, TAGS])
    on_branch = migrate(branch.url, folder)
    assert applied_files(on_branch) == [kit.file(2)]
    assert branch.query("SELECT name FROM tags") == [("a",)]
    assert len(history_rows(branch, kit)) == 3
    # the parent is untouched until it is migrated itself
    assert "public.tags" not in tables(pg_db)
    assert len(history_rows(pg_db, kit)) == 2


# -- a failing migration changes nothing -------------------------------------------------------
BAD = (
    "broken",
    [
        "CREATE TABLE half_done (id int)",
        "INSERT INTO accounts (email) VALUES ('x')",
        "SELECT * FROM no_such_table",
    ],
)


def test_failing_middle_migration_leaves_schema_and_history_as_before(
    kit: Kit, pg_db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    kit.write(folder, [ACCOUNTS])
    migrate(pg_db.url, folder)
    before = (catalog(pg_db), history_rows(pg_db, kit))

    kit.write(folder, [ACCOUNTS, BAD, TAGS])
    with pytest.raises(MigrationFailed) as failed:
        migrate(pg_db.url, folder)
    assert str(failed.value) == (
        f'migration {kit.file(1)} failed: relation "no_such_table" does not exist '
        "(SQLSTATE 42P01); it was rolled back and later migrations did not run"
    )
    assert (catalog(pg_db), history_rows(pg_db, kit)) == before
    assert pg_db.query("SELECT count(*) FROM accounts") == [(0,)]

    # in one run from empty: the first stays applied, the rest never happened
    fresh, reference = pg_db.sibling("fresh"), pg_db.sibling("ref")
    with pytest.raises(MigrationFailed):
        migrate(fresh.url, folder)
    kit.write(tmp_path / "ref", [ACCOUNTS])
    migrate(reference.url, tmp_path / "ref")
    assert catalog(fresh) == catalog(reference)
    # same rows but for the applied_at / serial details that differ between two databases
    assert [r[:3] for r in history_rows(fresh, kit)] == [r[:3] for r in history_rows(reference, kit)] or (
        kit.layout is Layout.PLAIN
        and [r[:2] for r in history_rows(fresh, kit)] == [r[:2] for r in history_rows(reference, kit)]
    )
    assert len(history_rows(fresh, kit)) == 1
