"""A branch's schema against its owner's, read from the catalog (``forkstage schema-diff``).

Read through psycopg from ``pg_catalog``, not with ``pg_dump``: the client need not match the
server's major version, and pipeline jobs install no PostgreSQL. A schema is a flat map of
``(kind, name) -> definition``, so the diff of two is a set comparison, ordered and stable.

The owner's database is reached with the stage's own connection details and the owner's
endpoint host (a non-sensitive output): a Neon branch inherits its parent's role and password.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, LiteralString
from urllib.parse import urlsplit, urlunsplit

import psycopg

from forkstage.context import Project
from forkstage.databases import ProjectDatabases
from forkstage.errors import BadInput
from forkstage.migrator.history import history_for
from forkstage.migrator.layout import load_migrations
from forkstage.migrator.runner import connect

Schema = dict[tuple[str, str], str]

_USER_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
)

# kind -> query returning (name, definition) rows.
QUERIES: dict[str, LiteralString] = {
    "table": "SELECT n.nspname || '.' || c.relname, 'table' FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND "
    + _USER_SCHEMAS,
    "column": "SELECT n.nspname || '.' || c.relname || '.' || a.attname, "
    "format_type(a.atttypid, a.atttypmod) "
    "|| CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END "
    "|| COALESCE(' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid), '') "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped AND "
    + _USER_SCHEMAS,
    "index": "SELECT n.nspname || '.' || c.relname, pg_get_indexdef(i.indexrelid) "
    "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE " + _USER_SCHEMAS,
    "constraint": "SELECT n.nspname || '.' || cl.relname || '.' || co.conname, "
    "pg_get_constraintdef(co.oid) FROM pg_constraint co "
    "JOIN pg_class cl ON cl.oid = co.conrelid "
    "JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE " + _USER_SCHEMAS,
    "view": "SELECT n.nspname || '.' || c.relname, pg_get_viewdef(c.oid) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND "
    + _USER_SCHEMAS,
    "function": "SELECT n.nspname || '.' || p.proname || '(' "
    "|| pg_get_function_identity_arguments(p.oid) || ')', pg_get_functiondef(p.oid) "
    "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    "WHERE p.prokind IN ('f', 'p') AND " + _USER_SCHEMAS + " AND "
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')",
    "enum": "SELECT n.nspname || '.' || t.typname, "
    "string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) "
    "FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid "
    "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE " + _USER_SCHEMAS + " "
    "GROUP BY n.nspname, t.typname",
}


def read_schema(conn: psycopg.Connection[Any]) -> Schema:
    """Every user object's definition, keyed by (kind, qualified name)."""
    schema: Schema = {}
    for kind, query in QUERIES.items():
        for name, definition in conn.execute(query).fetchall():
            schema[(kind, str(name))] = " ".join(str(definition).split())
    return schema


@dataclass
class SchemaDiff:
    """What ``stage`` has that ``against`` has not (added), the reverse (removed), and changes."""

    stage: str
    against: str
    added: list[dict[str, str]] = field(default_factory=list)
    removed: list[dict[str, str]] = field(default_factory=list)
    changed: list[dict[str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "against": self.against,
            "differs": not self.empty,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
        }

    def lines(self) -> list[str]:
        """One line per difference: ``+``/``-``/``~`` kind name: definition."""
        out = [f"+ {d['kind']} {d['name']}: {d['definition']}" for d in self.added]
        out += [f"- {d['kind']} {d['name']}: {d['definition']}" for d in self.removed]
        out += [f"~ {d['kind']} {d['name']}: {d['before']} -> {d['after']}" for d in self.changed]
        return out

    def text(self) -> str:
        if self.empty:
            return f"no schema changes: {self.stage} matches {self.against}"
        return f"schema of {self.stage} against {self.against}:\n" + "\n".join(self.lines())

    def markdown(self) -> str:
        if self.empty:
            return f"No schema changes against `{self.against}`."
        return "```diff\n" + "\n".join(self.lines()) + "\n```"


def diff(stage: str, against: str, mine: Schema, theirs: Schema) -> SchemaDiff:
    """Compare two schemas; entries sorted by kind, then name."""
    result = SchemaDiff(stage, against)
    for key in sorted(mine.keys() | theirs.keys()):
        kind, name = key
        if key not in theirs:
            result.added.append({"kind": kind, "name": name, "definition": mine[key]})
        elif key not in mine:
            result.removed.append({"kind": kind, "name": name, "definition": theirs[key]})
        elif mine[key] != theirs[key]:
            result.changed.append(
                {"kind": kind, "name": name, "before": theirs[key], "after": mine[key]}
            )
    return result


def with_host(url: str, host: str) -> str:
    """``url`` with its host (and port, when ``host`` carries one) replaced."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" not in host and parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=(f"{userinfo}@" if userinfo else "") + host))


@dataclass
class StagePair:
    """The connection details of a stage's database and of the one it is compared with."""

    project: Project
    stage: str
    against: str
    databases: ProjectDatabases

    @classmethod
    def resolve(cls, project: Project, stage: str, against: str | None) -> StagePair:
        """``against`` defaults to the stage's owner; an owner stage must name one."""
        parsed = project.parse_stage(stage)
        target = against or parsed.owner
        if not target:
            raise BadInput(f"{stage} is not a pull-request stage: name one with --against STAGE")
        project.parse_stage(target)
        return cls(project, stage, target, ProjectDatabases(project))

    def urls(self) -> tuple[str, str]:
        """(stage URL, against URL): the stage's details with the other's endpoint host."""
        from forkstage.embedded import ensure_running
        from forkstage.state import StateReader

        url = self.databases.stage_url(self.stage)
        if self.against == self.stage:
            return url, url
        settings = self.project.settings
        ensure_running(settings.backend, self.project.home)
        state = StateReader(settings.backend, self.project.home).state(self.against)
        host = (state.public_outputs() if state else {}).get("neon_endpoint_host")
        if not host:
            raise BadInput(
                f"stage {self.against} has no neon_endpoint_host output: "
                f"deploy it first (forkstage deploy --stage {self.against})"
            )
        return url, with_host(url, str(host))

    def connect(self, url: str) -> psycopg.Connection[Any]:
        return connect(url, timeout=10, connect_options=self.databases.connect_options)

    def _history(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Names of the migrations recorded in ``conn``'s history table, oldest first."""
        directory = self.project.settings.migrations_path
        mset = load_migrations(directory)
        history = history_for(mset.layout)
        if not history.exists(conn):
            return []
        names = {history.key(m): m.name for m in mset.migrations}
        return [names.get(r.key, r.key) for r in history.records(conn, mset)]

    def compare(self) -> tuple[SchemaDiff, list[str]]:
        """The schema diff, and the migrations the stage applied that ``against`` has not."""
        mine_url, theirs_url = self.urls()
        with self.connect(mine_url) as conn:
            mine, mine_history = read_schema(conn), self._history(conn)
        with self.connect(theirs_url) as conn:
            theirs, theirs_history = read_schema(conn), self._history(conn)
        beyond = [name for name in mine_history if name not in set(theirs_history)]
        return diff(self.stage, self.against, mine, theirs), beyond


def render(result: SchemaDiff, fmt: str) -> str:
    """``text``, ``markdown`` or ``json``."""
    if fmt == "json":
        return json.dumps(result.as_json(), sort_keys=True)
    return result.markdown() if fmt == "markdown" else result.text()
