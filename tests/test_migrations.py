"""forkstage's migration runner against a real PostgreSQL (see tests/pgfixture.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from forkstage.cli import main
from forkstage.errors import BadInput
from forkstage.migrator import (
    EditedMigration,
    Layout,
    MigrationFailed,
    Status,
    load_migrations,
    migrate,
    status,
)
from tests import procs

if TYPE_CHECKING:
    from tests.pgfixture import Database

# pg_cluster: one PostgreSQL for the session; pg_db: a fresh database per test
pytest_plugins = ["tests.pgfixture"]


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


def history_rows(db: Database, kit: Kit, *, timeless: bool = False) -> list[tuple[Any, ...]]:
    """The history table's rows; ``timeless`` drops applied_at (it differs between databases)."""
    rows = db.query(f"SELECT * FROM {kit.history} ORDER BY 1".encode())
    keep = {Layout.PLAIN: 2, Layout.DRIZZLE_JOURNAL: 3, Layout.DRIZZLE_FOLDERS: 4}[kit.layout]
    return [r[:keep] for r in rows] if timeless else rows


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
    assert history_rows(fresh, kit, timeless=True) == history_rows(reference, kit, timeless=True)
    assert len(history_rows(fresh, kit)) == 1


# -- edited migrations are refused -----------------------------------------------------------
def test_edited_applied_file_is_refused_with_its_name_exit_4(
    pg_db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    kit = Kit(Layout.PLAIN, [])
    kit.write(folder, [ACCOUNTS])
    assert run_cli("migrate", "--database-url", pg_db.url, "--dir", str(folder)).exit_code == 0
    recorded = hashlib.sha256((folder / "0000_accounts.sql").read_bytes()).hexdigest()

    kit.write(folder, [("accounts", ["CREATE TABLE accounts (id bigint)"]), TAGS])
    now = hashlib.sha256((folder / "0000_accounts.sql").read_bytes()).hexdigest()
    result = run_cli("migrate", "--database-url", pg_db.url, "--dir", str(folder))
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: 0000_accounts.sql was edited after it was applied to this database (recorded "
        f"sha256 {recorded[:12]}, file now {now[:12]}): restore it and put the change in a new "
        "migration\n"
    )
    assert "public.tags" not in tables(pg_db)  # refused before anything ran

    listing = run_cli("migrations", "--database-url", pg_db.url, "--dir", str(folder), "--json")
    assert listing.exit_code == 4
    doc = json.loads(listing.stdout)
    assert [(m["file"], m["status"]) for m in doc["migrations"]] == [
        ("0000_accounts.sql", "changed"),
        ("0001_tags.sql", "pending"),
    ]
    assert doc["migrations"][0]["recorded_sha256"] == recorded


@pytest.mark.parametrize("layout", [Layout.DRIZZLE_JOURNAL, Layout.DRIZZLE_FOLDERS])
def test_edited_drizzle_migration_is_refused(
    layout: Layout, pg_db: Database, tmp_path: Path
) -> None:
    kit = Kit(layout, [])
    folder = tmp_path / "m"
    kit.write(folder, [ACCOUNTS, POSTS])
    migrate(pg_db.url, folder)
    kit.write(folder, [ACCOUNTS, ("posts", ["CREATE TABLE posts (id int)"])])
    with pytest.raises(EditedMigration) as edited:
        migrate(pg_db.url, folder)
    assert edited.value.files == [kit.file(1)]
    assert str(edited.value).startswith(f"{kit.file(1)} was edited after it was applied")


def test_crlf_normalised_hash_is_not_taken_for_an_edit(pg_db: Database, tmp_path: Path) -> None:
    """Recorded from an LF checkout, read from a CRLF one (git autocrlf): the same migration."""
    kit = Kit(Layout.DRIZZLE_JOURNAL, [])
    folder = tmp_path / "m"
    kit.write(folder, [ACCOUNTS])
    sql_file = folder / "0000_accounts.sql"
    sql_file.write_bytes(sql_file.read_bytes().replace(b"\n", b"\r\n"))
    migrate(pg_db.url, folder)
    lf_hash = hashlib.sha256(sql_file.read_bytes().replace(b"\r\n", b"\n")).hexdigest()
    pg_db.query("UPDATE drizzle.__drizzle_migrations SET hash = %s", [lf_hash])
    assert [e.status for e in status(pg_db.url, folder).entries] == [Status.APPLIED]


# -- concurrent runners take turns -------------------------------------------------------------
def test_two_runners_at_once_apply_each_migration_once(pg_db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    Kit(Layout.PLAIN, []).write(
        folder,
        [
            # applied twice, this fails (the table exists); the sleep forces the overlap
            ("slow", ["CREATE TABLE once_only (n int)", "SELECT pg_sleep(0.8)"]),
            ("count", ["INSERT INTO once_only VALUES (1)"]),
        ],
    )
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []
    failures: list[BaseException] = []
    spans: list[tuple[float, float]] = []

    def runner() -> None:
        barrier.wait()
        started = time.monotonic()
        try:
            outcomes.append(migrate(pg_db.url, folder))
        except BaseException as exc:
            failures.append(exc)
        spans.append((started, time.monotonic()))

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert failures == []
    assert sorted(len(o.applied) for o in outcomes) == [0, 2]
    assert pg_db.query("SELECT count(*) FROM once_only") == [(1,)]
    assert pg_db.query("SELECT count(*) FROM forkstage.schema_migrations") == [(2,)]
    # they really overlapped: both started before either finished
    assert max(s for s, _ in spans) < min(e for _, e in spans)


# -- the real Drizzle, both ways (pinned from npm in tests/drizzle, installed by make install) ---
DRIZZLE = Path(__file__).resolve().parent / "drizzle"
# drizzle-kit/drizzle-orm 0.x write and read the journal layout; 1.0 the folders (./v1)
DRIZZLE_MAJOR = {Layout.DRIZZLE_JOURNAL: 0, Layout.DRIZZLE_FOLDERS: 1}
DRIZZLE_LAYOUTS = [Layout.DRIZZLE_JOURNAL, Layout.DRIZZLE_FOLDERS]
SCHEMA_ACCOUNTS = """\
import { pgTable, serial, text } from "drizzle-orm/pg-core";
export const accounts = pgTable("accounts", {
  id: serial("id").primaryKey(),
  email: text("email").notNull(),
});
"""
SCHEMA_POSTS = """\
import { index, integer, pgTable, serial, text } from "drizzle-orm/pg-core";
export const accounts = pgTable("accounts", {
  id: serial("id").primaryKey(),
  email: text("email").notNull(),
  name: text("name"),
});
export const posts = pgTable(
  "posts",
  {
    id: serial("id").primaryKey(),
    accountId: integer("account_id").references(() => accounts.id),
    body: text("body").notNull(),
  },
  (t) => [index("posts_account").on(t.accountId)],
);
"""


def drizzle_node(major: int) -> tuple[str, Path]:
    """node and the package of drizzle ``major``; missing ones fail (CI must not skip them)."""
    package = DRIZZLE / "v1" if major else DRIZZLE
    node = shutil.which("node")
    missing = [
        name
        for name in ("drizzle-kit", "drizzle-orm", "postgres")
        if not (package / "node_modules" / name / "package.json").is_file()
    ]
    if node is None or missing:
        what = "node is not on PATH" if node is None else f"{package} lacks {', '.join(missing)}"
        pytest.fail(f"the real Drizzle is not installed ({what}): run make install", False)
    return node, package


def drizzle_kit_cli(major: int, *args: str, cwd: Path) -> None:
    node, package = drizzle_node(major)
    kit = package / "node_modules" / "drizzle-kit" / "bin.cjs"
    procs.run([node, str(kit), *args], cwd=cwd, timeout=120, check=True)


def kit_workdir(major: int, work: Path) -> Path:
    """A folder to run drizzle-kit in: schema files there import drizzle ``major``'s drizzle-orm
    (resolved from beside them, as in an app)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "node_modules").symlink_to(drizzle_node(major)[1] / "node_modules")
    return work


@pytest.fixture
def not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A machine zone west of UTC: drizzle reads folder timestamps as UTC wherever it runs."""
    monkeypatch.setenv("TZ", "XST3:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def drizzle_orm_migrate(layout: Layout, *runs: tuple[Database, Path]) -> None:
    """drizzle-orm's own migrator (postgres-js) on each (database, folder), in one node start."""
    node, _ = drizzle_node(DRIZZLE_MAJOR[layout])
    argv = [node, str(DRIZZLE / "migrate.mjs"), str(DRIZZLE_MAJOR[layout])]
    for db, folder in runs:
        argv += [db.url, str(folder)]
    procs.run(argv, cwd=DRIZZLE, timeout=120, check=True)


def drizzle_rows(db: Database) -> list[tuple[Any, ...]]:
    """Drizzle's history rows, every column but when each was written (that differs between two
    databases; whether it was written, absent, null or a time, is compared)."""
    return db.query(
        "SELECT to_jsonb(m) - 'applied_at', "
        "coalesce(jsonb_typeof(to_jsonb(m) -> 'applied_at'), 'absent') "
        "FROM drizzle.__drizzle_migrations m ORDER BY id"
    )


@dataclass(frozen=True)
class KitOutput:
    """What drizzle-kit generate wrote: for the accounts schema, then for the posts change."""

    first: Path  # the first migration alone
    both: Path  # the first and the second
    second: str  # the second migration's name (journal tag or folder)


@pytest.fixture(scope="module")
def drizzle_kit(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Layout], KitOutput]:
    """drizzle-kit generate, run once per layout for the whole module (node starts are slow)."""
    made: dict[Layout, KitOutput] = {}

    def generate(layout: Layout) -> KitOutput:
        if layout in made:
            return made[layout]
        major = DRIZZLE_MAJOR[layout]
        work = kit_workdir(major, tmp_path_factory.mktemp(f"drizzle-kit-{major}"))
        copies = []
        for name, schema in (("accounts", SCHEMA_ACCOUNTS), ("posts", SCHEMA_POSTS)):
            (work / f"{name}.ts").write_text(schema)
            drizzle_kit_cli(major, "generate", "--dialect", "postgresql", "--schema",
                            f"{name}.ts", "--out", "out", "--name", name, cwd=work)  # fmt: skip
            shutil.copytree(work / "out", work / name)
            copies.append(work / name)
        mset = load_migrations(copies[1])
        assert mset.layout is layout
        assert [m.name.split("_", 1)[1] for m in mset.migrations] == ["accounts", "posts"]
        made[layout] = KitOutput(copies[0], copies[1], mset.migrations[1].name)
        return made[layout]

    return generate


@pytest.mark.usefixtures("not_utc")
@pytest.mark.parametrize("layout", DRIZZLE_LAYOUTS, ids=str)
def test_drizzle_applied_first_forkstage_applies_only_the_second_as_drizzle_would(
    layout: Layout, drizzle_kit: Callable[[Layout], KitOutput], pg_db: Database
) -> None:
    kit = drizzle_kit(layout)
    reference = pg_db.sibling("drizzle")  # drizzle-orm applies both here
    drizzle_orm_migrate(layout, (pg_db, kit.first), (reference, kit.both))
    before = (catalog(pg_db), pg_db.query("SELECT * FROM drizzle.__drizzle_migrations"))
    assert len(before[1]) == 1

    assert migrate(pg_db.url, kit.first).applied == []  # what drizzle applied counts as applied
    assert (catalog(pg_db), pg_db.query("SELECT * FROM drizzle.__drizzle_migrations")) == before
    outcome = migrate(pg_db.url, kit.both)
    assert [a.migration.name for a in outcome.applied] == [kit.second]
    assert drizzle_rows(pg_db) == drizzle_rows(reference)
    assert catalog(pg_db) == catalog(reference)


@pytest.mark.usefixtures("not_utc")
@pytest.mark.parametrize("layout", DRIZZLE_LAYOUTS, ids=str)
def test_forkstage_applied_first_drizzle_applies_nothing_then_the_second(
    layout: Layout, drizzle_kit: Callable[[Layout], KitOutput], pg_db: Database
) -> None:
    kit = drizzle_kit(layout)
    migrate(pg_db.url, kit.first)
    before = (catalog(pg_db), pg_db.query("SELECT * FROM drizzle.__drizzle_migrations"))
    drizzle_orm_migrate(layout, (pg_db, kit.first))  # re-running the first would fail
    assert (catalog(pg_db), pg_db.query("SELECT * FROM drizzle.__drizzle_migrations")) == before

    reference = pg_db.sibling("drizzle")
    drizzle_orm_migrate(layout, (pg_db, kit.both), (reference, kit.both))
    assert catalog(pg_db) == catalog(reference)  # forkstage's history table is drizzle's too
    assert drizzle_rows(pg_db) == drizzle_rows(reference)
    assert migrate(pg_db.url, kit.both).applied == []  # and forkstage sees what drizzle applied


def test_drizzle_orm_hashes_a_crlf_journal_file_as_forkstage_does(
    pg_db: Database, tmp_path: Path
) -> None:
    """Dollar quotes, CRLF line ends: drizzle-orm 0.x hashes the file as read; so does forkstage."""
    folder = tmp_path / "drizzle"
    (folder / "meta").mkdir(parents=True)
    files = {
        "0000_init": 'CREATE TABLE "users" ("id" serial PRIMARY KEY NOT NULL, "name" text);\n'
        "--> statement-breakpoint\n"
        'CREATE INDEX "users_name" ON "users" ("name");',
        "0001_func": "CREATE FUNCTION one() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\r\n"
        "--> statement-breakpoint\r\n"
        "DO $$ BEGIN PERFORM one(); END $$;\r\n",
    }
    for tag, text in files.items():
        (folder / f"{tag}.sql").write_bytes(text.encode())
    entries = [
        {"idx": i, "version": "7", "when": 1_718_000_000_001 + i * 500_001, "tag": tag,
         "breakpoints": True}
        for i, tag in enumerate(files)
    ]  # fmt: skip
    journal = {"version": "7", "dialect": "postgresql", "entries": entries}
    (folder / "meta" / "_journal.json").write_text(json.dumps(journal))

    by_drizzle = pg_db.sibling("drizzle")
    drizzle_orm_migrate(Layout.DRIZZLE_JOURNAL, (by_drizzle, folder))
    migrate(pg_db.url, folder)
    rows = pg_db.query("SELECT * FROM drizzle.__drizzle_migrations ORDER BY id")
    assert rows == by_drizzle.query("SELECT * FROM drizzle.__drizzle_migrations ORDER BY id")
    assert [r[1] for r in rows] == [hashlib.sha256(t.encode()).hexdigest() for t in files.values()]
    assert catalog(pg_db) == catalog(by_drizzle)
    assert pg_db.query("SELECT one()") == [(1,)]


def test_drizzle_1_upgrade_of_a_0x_history_table_is_forkstages(
    drizzle_kit: Callable[[Layout], KitOutput], pg_db: Database, tmp_path: Path
) -> None:
    """A branch migrated by drizzle-orm 0.x, its folder converted by drizzle-kit 1.0's `up`: the
    history table is upgraded as drizzle-orm 1.0 does it. Two custom migrations with the same text
    (so the same hash) need drizzle's rule of naming rows by the second of their `when`."""
    work = kit_workdir(0, tmp_path / "kit")
    shutil.copytree(drizzle_kit(Layout.DRIZZLE_JOURNAL).both, work / "out")
    (work / "posts.ts").write_text(SCHEMA_POSTS)
    for name in ("backfill", "backfill_again"):
        drizzle_kit_cli(0, "generate", "--custom", "--dialect", "postgresql", "--schema",
                        "posts.ts", "--out", "out", "--name", name, cwd=work)  # fmt: skip
    for custom in sorted((work / "out").glob("000[23]_*.sql")):
        custom.write_text("UPDATE accounts SET name = email WHERE name IS NULL;")
    journal_path = work / "out" / "meta" / "_journal.json"
    journal = json.loads(journal_path.read_text())
    last, before = journal["entries"][-1], journal["entries"][-2]
    if last["when"] // 1000 == before["when"] // 1000:  # generated within one second
        last["when"] += 1000
        journal_path.write_text(json.dumps(journal))
    drizzle_orm_migrate(Layout.DRIZZLE_JOURNAL, (pg_db, work / "out"))
    ours = pg_db.clone("forkstage")
    folders = tmp_path / "up"
    shutil.copytree(work / "out", folders)
    drizzle_kit_cli(1, "up", "--dialect", "postgresql", "--out", str(folders), cwd=tmp_path)
    migrations = load_migrations(folders).migrations
    assert [m.name[15:] for m in migrations] == ["accounts", "posts", "backfill", "backfill_again"]

    drizzle_orm_migrate(Layout.DRIZZLE_FOLDERS, (pg_db, folders))
    assert migrate(ours.url, folders).applied == []
    rows = ours.query("SELECT * FROM drizzle.__drizzle_migrations ORDER BY id")
    assert rows == pg_db.query("SELECT * FROM drizzle.__drizzle_migrations ORDER BY id")
    assert [(r[3], r[4]) for r in rows] == [(m.name, None) for m in migrations]
    assert catalog(ours) == catalog(pg_db)


def test_journal_entry_older_than_newest_applied_is_applied_and_flagged(
    pg_db: Database, tmp_path: Path
) -> None:
    """drizzle's migrator would skip it forever on this branch; forkstage applies it, noted."""
    kit = Kit(Layout.DRIZZLE_JOURNAL, [])
    folder = tmp_path / "m"
    kit.write(folder, [ACCOUNTS, POSTS, TAGS])
    journal_path = folder / "meta" / "_journal.json"
    journal = json.loads(journal_path.read_text())
    tags_entry = journal["entries"].pop(2)
    middle = journal["entries"].pop(1)
    journal["entries"].append(tags_entry)
    journal_path.write_text(json.dumps(journal))
    migrate(pg_db.url, folder)  # accounts, tags
    journal["entries"].insert(1, middle)  # a rebase brought in an older migration
    journal_path.write_text(json.dumps(journal))

    dry = run_cli("migrate", "--database-url", pg_db.url, "--dir", str(folder), "--dry-run")
    assert dry.exit_code == 0
    assert dry.stdout.splitlines() == [
        "would apply 0001_posts.sql (older than the newest applied entry: drizzle's own "
        "migrator would skip 0001_posts)",
        "dry run: 1 to apply, 2 applied already",
    ]
    skipped = pg_db.clone("drizzle")  # the claim, checked with drizzle-orm itself
    drizzle_orm_migrate(Layout.DRIZZLE_JOURNAL, (skipped, folder))
    assert "public.posts" not in tables(skipped)
    assert len(skipped.query("SELECT * FROM drizzle.__drizzle_migrations")) == 2
    assert applied_files(migrate(pg_db.url, folder)) == ["0001_posts.sql"]


# -- the CLI -----------------------------------------------------------------------------------
def test_cli_migrate_json_dry_run_then_apply_then_list(pg_db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    Kit(Layout.PLAIN, []).write(folder, [ACCOUNTS, TAGS])
    env = {"MY_DB": pg_db.url}

    dry = run_cli("migrate", "--database-url-env", "MY_DB", "--dir", str(folder), "--dry-run",
                  "--json", env=env)  # fmt: skip
    assert dry.exit_code == 0
    doc = json.loads(dry.stdout)
    assert doc["pending"] == ["0000_accounts.sql", "0001_tags.sql"]
    assert doc["applied"] == [] and doc["dry_run"] is True
    assert tables(pg_db) == []  # dry run creates not even the history table

    done = run_cli("migrate", "--database-url-env", "MY_DB", "--dir", str(folder), env=env)
    assert done.exit_code == 0
    lines = done.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines[:2]] == [
        "applied 0000_accounts.sql",
        "applied 0001_tags.sql",
    ]
    assert lines[2:] == ["2 applied, 0 applied already"]

    again = run_cli("migrate", "--database-url-env", "MY_DB", "--dir", str(folder), env=env)
    assert again.stdout == "nothing to apply: 2 applied already\n"

    Kit(Layout.PLAIN, []).write(folder, [ACCOUNTS, TAGS, POSTS])
    listing = run_cli("migrations", "--database-url-env", "MY_DB", "--dir", str(folder), env=env)
    assert listing.exit_code == 0
    out = listing.stdout.splitlines()
    assert out[0] == "plain layout, history in forkstage.schema_migrations"
    assert out[1].split() == ["STATUS", "MIGRATION", "APPLIED", "AT"]
    assert [line.split()[:2] for line in out[2:5]] == [
        ["applied", "0000_accounts.sql"],
        ["applied", "0001_tags.sql"],
        ["pending", "0002_posts.sql"],
    ]
    assert out[4].split()[2] == "-"
    assert out[5] == "2 applied, 1 pending, 0 changed"


def test_cli_failed_migration_exit_1_names_file_and_error_never_the_password(
    pg_db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    Kit(Layout.PLAIN, []).write(folder, [ACCOUNTS, ("bad", ["SELEC 1"])])
    result = run_cli("migrate", "--database-url", pg_db.url, "--dir", str(folder))
    assert result.exit_code == 1
    assert result.stderr == (
        'Error: migration 0001_bad.sql failed: syntax error at or near "SELEC" (SQLSTATE 42601); '
        "it was rolled back and later migrations did not run\n"
    )
    assert result.stdout.startswith("applied 0000_accounts.sql (")
    password = pg_db.cluster.password
    assert password and password not in result.output


def test_cli_unreachable_database_is_exit_1_with_redacted_url(
    pg_db: Database, tmp_path: Path
) -> None:
    from localcloud.net import free_port
    from localcloud.postgres import Cluster

    folder = tmp_path / "m"
    Kit(Layout.PLAIN, []).write(folder, [ACCOUNTS])
    port = free_port()
    password = pg_db.cluster.password or ""
    url = Cluster(tmp_path / "none", port=port, password=password).url("app")
    result = run_cli("migrate", "--database-url", url, "--dir", str(folder))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot connect to postgres@127.0.0.1:{port}/app: ")
    assert password not in result.output
    assert url.split("@")[0].split(":")[-1] not in result.output  # the URL-encoded form either


BAD_INPUT: list[tuple[list[str], dict[str, str], str]] = [
    ([], {}, "no database given: pass --database-url-env NAME, --database-url URL or "
     "--stage STAGE"),
    (["--database-url-env", "NOPE_UNSET"], {}, "environment variable NOPE_UNSET is not set or "
     "empty: put the database URL in it"),
    (["--database-url", "mysql://u:secret@h/db"], {}, "the database URL must start with "
     "postgresql:// (got mysql://...)"),
    (["--database-url", "postgresql://u@h/db?nonsense=1"], {}, "bad database URL "
     "postgresql://u@h/db?nonsense=1: invalid URI query parameter: \"nonsense\""),
    (["--stage", "pr-7", "--database-url", "postgresql://h/db"], {}, "pass only one of "
     "--database-url, --database-url-env and --stage"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "env", "message"), BAD_INPUT)
def test_cli_bad_input_is_exit_2_with_one_line(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    Kit(Layout.PLAIN, []).write(folder, [ACCOUNTS])
    result = run_cli(
        "migrate", *args, "--dir", str(folder), env={"FORKSTAGE_DATABASE_URL": "", **env}
    )
    assert (result.exit_code, result.stderr) == (2, f"Error: {message}\n")
    assert "secret" not in result.output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "migrations folder {p} does not exist: pass --dir"),
        (
            lambda p: (p.mkdir(), (p / "README.md").write_text("hi")),
            "found no migrations in {p}: expected meta/_journal.json (drizzle-kit), "
            "YYYYMMDDHHMMSS_name/migration.sql folders (drizzle 1.0) or NNNN_name.sql files",
        ),
        (
            lambda p: (p.mkdir(), (p / "seed.sql").write_text("SELECT 1")),
            "seed.sql in {p} has no NNNN_ prefix: rename it NNNN_name.sql",
        ),
        (
            lambda p: ((p / "meta").mkdir(parents=True), (p / "meta/_journal.json").write_text(
                '{"entries": [{"tag": "0000_x", "when": 1}]}')),
            "{p}/meta/_journal.json lists 0000_x but 0000_x.sql is missing",
        ),
    ],
    ids=["missing", "unknown-layout", "unnumbered", "journal-without-file"],
)  # fmt: skip
def test_cli_bad_folder_is_exit_2_and_touches_nothing(
    make: Callable[[Path], Any], message: str, pg_db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    make(folder)
    result = run_cli("migrate", "--database-url", pg_db.url, "--dir", str(folder))
    assert (result.exit_code, result.stderr) == (2, f"Error: {message.format(p=folder)}\n")
    assert tables(pg_db) == []


def test_cli_stage_reads_forkstage_database_url(pg_db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    Kit(Layout.PLAIN, []).write(folder, [ACCOUNTS])
    result = run_cli("migrate", "--stage", "pr-7", "--dir", str(folder), "--json",
                     env={"FORKSTAGE_DATABASE_URL": pg_db.url})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [a["file"] for a in json.loads(result.stdout)["applied"]] == ["0000_accounts.sql"]


def test_help_documents_exit_codes_and_example() -> None:
    for command in ("migrate", "migrations"):
        text = run_cli(command, "--help").stdout
        assert "Example: forkstage " + command in text
        flat = " ".join(text.split())
        assert "Exit codes: 0 ok; 1 a migration failed" in flat
        assert "4 a migration already applied to this database was edited" in flat


def test_migration_that_commits_itself_is_reported(pg_db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    Kit(Layout.PLAIN, []).write(folder, [("txn", ["BEGIN", "CREATE TABLE t (a int)", "COMMIT"])])
    with pytest.raises(MigrationFailed, match=r"0000_txn.sql ran COMMIT or ROLLBACK itself"):
        migrate(pg_db.url, folder)


def test_project_default_migrations_create_notes(pg_db: Database) -> None:
    folder = Path(__file__).resolve().parents[1] / "migrations"
    outcome = migrate(pg_db.url, folder)
    assert [a.migration.file for a in outcome.applied] == [
        "0001_create_notes.sql",
        "0002_seed_notes.sql",
    ]
    assert pg_db.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'notes' ORDER BY ordinal_position"
    ) == [("id", "integer"), ("body", "text"), ("created_at", "timestamp with time zone")]
    assert pg_db.query("SELECT count(*) FROM notes") == [(1,)]


def test_bad_input_raised_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        migrate("postgresql://nobody@127.0.0.1:1/x", tmp_path / "absent")


@pytest.mark.parametrize(
    ("url", "shown", "secret"),
    [
        ("postgresql://app:p%40ss%20w@db.example:5432/app",
         "postgresql://app:***@db.example:5432/app", "p@ss w"),
        ("postgres://app:plain@h/db?sslmode=require", "postgres://app:***@h/db?sslmode=require",
         "plain"),
        ("postgresql://app@h/db?password=q%26s&sslmode=require",
         "postgresql://app@h/db?password=***&sslmode=require", "q&s"),
    ],
)  # fmt: skip
def test_urls_are_redacted_and_scrubbed(url: str, shown: str, secret: str) -> None:
    from urllib.parse import quote

    from forkstage.migrator.dburl import redact, scrub

    assert redact(url) == shown
    scrubbed = scrub(f"failed for {url}: {secret} / {quote(secret, safe='')} rejected", url)
    assert scrubbed == f"failed for {shown}: *** / *** rejected"
    assert redact("postgresql://h/db") == "postgresql://h/db"


def test_url_without_scheme_is_bad_input(tmp_path: Path) -> None:
    Kit(Layout.PLAIN, []).write(tmp_path / "m", [ACCOUNTS])
    result = run_cli("migrate", "--database-url", "host=h password=x", "--dir", str(tmp_path / "m"))
    assert (result.exit_code, result.stderr) == (
        2,
        "Error: the database URL must start with postgresql:// (got a value without a scheme)\n",
    )
