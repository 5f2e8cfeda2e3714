"""`forkstage schema-diff`, the summary's schema section and `forkstage reset` on the local
cloud: staging from the repo, pr-147 from a copy with one more migration (a new column and a new
index)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import procs
from tests.local_env import BIN, TIMEOUT, LocalCloud
from tests.test_cdktf_path import fresh_copy
from tests.wrapper_env import REPO

pytestmark = pytest.mark.slow
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

EXTRA = "0003_add_notes_title.sql"
EXTRA_SQL = (
    "ALTER TABLE notes ADD COLUMN title text NOT NULL DEFAULT 'untitled';\n"
    "CREATE INDEX notes_title_idx ON notes (title);\n"
)


def _copy_with_extra_migration(dest: Path) -> Path:
    """The repository as a fresh checkout has it, plus one migration."""
    fresh_copy(dest)
    (dest / "migrations" / EXTRA).write_text(EXTRA_SQL)
    return dest


def _connect(local: LocalCloud, stage: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stage's database as the migrator reaches it (local routing included)."""
    from forkstage.databases import ProjectDatabases

    monkeypatch.setenv("FORKSTAGE_HOME", str(local.home))
    monkeypatch.setenv("FORKSTAGE_BACKEND_ENDPOINT", local.endpoint)
    monkeypatch.chdir(REPO)
    databases = ProjectDatabases(environ={})
    url = databases.stage_url(stage)
    return psycopg.connect(url, autocommit=True, **databases.connect_options(url))


def _notes(local: LocalCloud, stage: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    with _connect(local, stage, monkeypatch) as conn:
        return [r[0] for r in conn.execute("select body from notes order by id")]


def _write(local: LocalCloud, stage: str, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with _connect(local, stage, monkeypatch) as conn:
        conn.execute("insert into notes (body) values (%s)", (body,))


def _serials(local: LocalCloud) -> dict[str, int]:
    return {r["stage"]: r["serial"] for r in json.loads(local.ok("stages", "--json"))}


def _get(url: str) -> Any:
    with _NO_PROXY.open(url, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCloud]:
    box = LocalCloud("forkstage-schema-")
    try:
        yield box
    finally:
        box.discard()


def test_schema_diff_summary_section_and_reset(
    local: LocalCloud, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = _copy_with_extra_migration(tmp_path_factory.mktemp("pr-checkout"))

    def forkstage(*args: str, code: int = 0) -> str:
        done = procs.run(
            [str(BIN / "forkstage"), *args], cwd=copy, env=local.env(), timeout=TIMEOUT
        )
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout

    local.ok("deploy", "--stage", "staging")
    forkstage("deploy", "--stage", "pr-147")

    found = json.loads(forkstage("schema-diff", "--stage", "pr-147", "--format", "json"))
    assert found["against"] == "staging" and found["differs"]
    assert found["removed"] == [] and found["changed"] == []
    assert [(d["kind"], d["name"]) for d in found["added"]] == [
        ("column", "public.notes.title"),
        ("index", "public.notes_title_idx"),
    ]
    assert found["added"][0]["definition"] == "text NOT NULL DEFAULT 'untitled'::text"
    assert (
        "CREATE INDEX notes_title_idx ON public.notes USING btree (title)"
        in (found["added"][1]["definition"])
    )
    text = forkstage("schema-diff", "--stage", "pr-147")  # exit 0 with differences
    assert "+ column public.notes.title: text NOT NULL" in text
    forkstage("schema-diff", "--stage", "pr-147", "--exit-code", code=1)

    same = json.loads(
        forkstage("schema-diff", "--stage", "pr-147", "--against", "pr-147", "--format", "json")
    )
    assert not same["differs"] and same["added"] == []
    forkstage("schema-diff", "--stage", "pr-147", "--against", "pr-147", "--exit-code")

    summary = forkstage("summary", "--stage", "pr-147", "--format", "markdown")
    section = summary.split("#### Schema changes against `staging`", 1)[1]
    assert f"`{EXTRA}`" in section
    assert "+ column public.notes.title" in section
    assert "```diff" in section

    # an owner stage names what to compare with: bad input, nothing read
    out = local.run("schema-diff", "--stage", "staging")
    assert out.returncode == 2 and "--against" in out.stderr

    # issue 14, reset: pr-147 forked again from staging as it is now, its extra migration applied
    # again on the new fork; staging's state untouched; the Worker answers.
    _write(local, "staging", "staging after the fork", monkeypatch)
    _write(local, "pr-147", "pr-147 before the reset", monkeypatch)
    before = _serials(local)
    reset = json.loads(forkstage("reset", "--stage", "pr-147", "--json"))
    replaced = {c["address"].split(".")[0] for c in reset["changes"] if c["action"] == "replace"}
    assert {"neon_branch", "neon_endpoint", "terraform_data"} <= replaced, reset["changes"]
    assert reset["owner_serial"] == {"before": before["staging"], "after": before["staging"]}
    notes = _notes(local, "pr-147", monkeypatch)
    assert "staging after the fork" in notes and "pr-147 before the reset" not in notes
    again = json.loads(forkstage("schema-diff", "--stage", "pr-147", "--format", "json"))
    assert [(d["kind"], d["name"]) for d in again["added"]] == [
        ("column", "public.notes.title"),
        ("index", "public.notes_title_idx"),
    ]
    after = _serials(local)
    assert after["staging"] == before["staging"] and after["pr-147"] > before["pr-147"]
    url = json.loads(forkstage("outputs", "--stage", "pr-147", "--json"))["local_url"]
    assert _get(url + "/health") == {"ok": True, "database": "app"}
    assert "staging after the fork" in [n["body"] for n in _get(url + "/notes")]

    # an owner stage has no parent to be reset from: refused, one line, nothing changed
    refused = local.run("reset", "--stage", "staging")
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.strip().startswith("Error: stage staging owns its branch")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert _serials(local) == after
    assert "staging after the fork" in _notes(local, "staging", monkeypatch)
