"""``forkstage migrate`` and ``forkstage migrations``: run or list a branch's migrations.

The URL can come from an environment variable (``--database-url-env``) so that a password never
shows up in argv, process lists or CI logs; every message shows URLs with the password masked.
A thin layer: ``forkstage.databases`` says how to reach the project's databases, the migrator
runs, errors are ``forkstage.errors`` classes that ``forkstage.cli`` turns into exit codes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from forkstage.errors import EditedMigration, ForkstageError, MigrationFailed

if TYPE_CHECKING:
    from forkstage.databases import ProjectDatabases
    from forkstage.migrator.layout import Migration

EPILOG = (
    "Exit codes: 0 ok; 1 a migration failed (it was rolled back, later ones did not run) or the "
    "database could not be reached; 2 bad input (missing folder, unknown layout, bad URL, no "
    "database given); 4 a migration already applied to this database was edited."
)
DEFAULT_DIR = "migrations"

F = TypeVar("F", bound=Callable[..., Any])


def _database_options(func: F) -> F:
    options = [
        click.option(
            "--database-url-env",
            metavar="NAME",
            help="Read the database URL from this environment variable (keeps it out of argv).",
        ),
        click.option(
            "--database-url",
            metavar="URL",
            help="postgresql:// URL of the database (visible in process lists; prefer the env).",
        ),
        click.option(
            "--stage",
            metavar="STAGE",
            help="Use this stage's branch database, read from its deployed Terraform state "
            "($FORKSTAGE_DATABASE_URL overrides it).",
        ),
        click.option(
            "--dir",
            "directory",
            metavar="DIR",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help=f"Migrations folder [default: <project>/{DEFAULT_DIR}].",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _target(
    database_url: str | None, url_env: str | None, stage: str | None, directory: Path | None
) -> tuple[str, Path, ProjectDatabases]:
    """The database URL, the migrations folder and how to reach the project's databases."""
    from forkstage.databases import ProjectDatabases
    from forkstage.migrator.reach import choose_url

    databases = ProjectDatabases()
    url = choose_url(database_url=database_url, url_env=url_env, stage=stage, resolver=databases)
    folder = directory if directory is not None else databases.project.root / DEFAULT_DIR
    return url, folder, databases


def _fail(exc: ForkstageError, as_json: bool) -> ForkstageError:
    """Print the ``--json`` failure document; the error itself is raised on to ``forkstage.cli``."""
    if as_json:
        doc: dict[str, Any] = {"error": str(exc), "exit_code": exc.exit_code}
        if isinstance(exc, EditedMigration):
            doc["edited"] = exc.files
        if isinstance(exc, MigrationFailed):
            doc["failed"] = exc.file
            doc["applied"] = exc.applied
        click.echo(json.dumps(doc, indent=2))
    return exc


def _when(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _late_note(migration: Migration) -> str:
    return (
        " (older than the newest applied entry: "
        f"drizzle's own migrator would skip {migration.name})"
    )


@click.command("migrate", epilog=EPILOG)
@_database_options
@click.option("--dry-run", is_flag=True, help="List what would run; change nothing.")
def migrate(
    database_url_env: str | None,
    database_url: str | None,
    stage: str | None,
    directory: Path | None,
    as_json: bool,
    dry_run: bool,
) -> None:
    """Apply a migrations folder to one database (one branch), each migration exactly once.

    Understands drizzle-kit's journal folders, drizzle 1.0 migration folders and plain
    NNNN_name.sql files; history goes where drizzle keeps it (or forkstage.schema_migrations).

    Example: forkstage migrate --database-url-env DATABASE_URL --dir migrations
    """
    from forkstage.migrator.runner import Applied, Status
    from forkstage.migrator.runner import migrate as run

    def progress(done: Applied) -> None:
        if not as_json:
            click.echo(f"applied {done.migration.file} ({done.seconds:.2f} s)")

    try:
        url, folder, databases = _target(database_url, database_url_env, stage, directory)
        outcome = run(
            url,
            folder,
            dry_run=dry_run,
            on_applied=progress,
            connect_options=databases.connect_options,
        )
    except ForkstageError as exc:
        raise _fail(exc, as_json) from None

    plan = outcome.plan
    pending = plan.having(Status.PENDING)
    already = len(plan.having(Status.APPLIED))
    if as_json:
        doc = {
            "layout": str(plan.layout),
            "history_table": plan.history_table,
            "dry_run": dry_run,
            "applied": [
                {"name": a.migration.name, "file": a.migration.file, "seconds": round(a.seconds, 3)}
                for a in outcome.applied
            ],
            "pending": [e.migration.name for e in pending] if dry_run else [],
            "already_applied": already,
            "unknown": list(plan.unknown),
        }
        click.echo(json.dumps(doc, indent=2))
        return
    if plan.unknown:
        click.echo(
            f"note: {plan.history_table} lists {len(plan.unknown)} migration(s) not in the folder: "
            + ", ".join(plan.unknown),
            err=True,
        )
    if dry_run:
        for entry in pending:
            late = _late_note(entry.migration) if entry.out_of_order else ""
            click.echo(f"would apply {entry.migration.file}{late}")
        click.echo(f"dry run: {len(pending)} to apply, {already} applied already")
    elif outcome.applied:
        click.echo(f"{len(outcome.applied)} applied, {already} applied already")
    else:
        click.echo(f"nothing to apply: {already} applied already")


@click.command(
    "migrations", epilog=EPILOG + " With an edited migration the list is printed, then exit 4."
)
@_database_options
def migrations(
    database_url_env: str | None,
    database_url: str | None,
    stage: str | None,
    directory: Path | None,
    as_json: bool,
) -> None:
    """List a database's migrations: applied, pending, and applied-but-edited (changed).

    Example: forkstage migrations --database-url-env DATABASE_URL --dir migrations --json
    """
    from forkstage.migrator.runner import Status, edited_error, status

    try:
        url, folder, databases = _target(database_url, database_url_env, stage, directory)
        plan = status(url, folder, connect_options=databases.connect_options)
    except ForkstageError as exc:
        raise _fail(exc, as_json) from None

    changed = plan.having(Status.CHANGED)
    if as_json:
        doc = {
            "layout": str(plan.layout),
            "history_table": plan.history_table,
            "migrations": [
                {
                    "name": e.migration.name,
                    "file": e.migration.file,
                    "status": str(e.status),
                    "sha256": e.migration.sha256,
                    "recorded_sha256": e.recorded_sha256,
                    "applied_at": _when(e.applied_at),
                    "out_of_order": e.out_of_order,
                }
                for e in plan.entries
            ],
            "unknown": list(plan.unknown),
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        rows = [(str(e.status), e.migration.file, _when(e.applied_at) or "-") for e in plan.entries]
        rows += [("unknown", key, "(in the history, not in the folder)") for key in plan.unknown]
        width = max([len("MIGRATION")] + [len(r[1]) for r in rows])
        click.echo(f"{plan.layout} layout, history in {plan.history_table}")
        click.echo(f"{'STATUS':<8} {'MIGRATION':<{width}} APPLIED AT")
        for state, name, when in rows:
            click.echo(f"{state:<8} {name:<{width}} {when}")
        counts = ", ".join(f"{len(plan.having(s))} {s}" for s in Status)
        click.echo(counts)
    if changed:
        raise edited_error(plan)
