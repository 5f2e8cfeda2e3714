"""`forkstage reset` on the local cloud: a preview forked again from staging as it is now sees
staging's new row and not its own, through one apply that replaces its branch, endpoint and
migrations step; staging's state is untouched, the Worker answers, an owner stage is refused."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.local_env import LocalCloud
from tests.wrapper_env import REPO

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCloud]:
    box = LocalCloud("forkstage-reset-")
    try:
        yield box
    finally:
        box.clean_up()


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


def test_reset_forks_the_preview_again_from_staging(
    local: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    local.ok("deploy", "--stage", "staging")
    local.ok("deploy", "--stage", "pr-147")
    _write(local, "staging", "staging moved on", monkeypatch)
    _write(local, "pr-147", "only on the preview", monkeypatch)
    assert "only on the preview" in _notes(local, "pr-147", monkeypatch)
    assert "staging moved on" not in _notes(local, "pr-147", monkeypatch)
    before = _serials(local)

    result = json.loads(local.ok("reset", "--stage", "pr-147", "--json"))
    replaced = {c["address"].split(".")[0] for c in result["changes"] if c["action"] == "replace"}
    assert {"neon_branch", "neon_endpoint", "terraform_data"} <= replaced, result["changes"]
    assert result["owner_serial"]["before"] == result["owner_serial"]["after"]

    notes = _notes(local, "pr-147", monkeypatch)
    assert "staging moved on" in notes
    assert "only on the preview" not in notes
    after = _serials(local)
    assert after["staging"] == before["staging"]
    assert after["pr-147"] > before["pr-147"]

    url = json.loads(local.ok("outputs", "--stage", "pr-147", "--json"))["local_url"]
    with _NO_PROXY.open(url + "/health", timeout=15) as response:
        assert json.loads(response.read()) == {"ok": True, "database": "app"}
    with _NO_PROXY.open(url + "/notes", timeout=15) as response:
        assert "staging moved on" in [n["body"] for n in json.loads(response.read())]

    # an owner stage has no parent to be reset from: refused, one line, nothing changed
    refused = local.run("reset", "--stage", "staging")
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.strip().startswith("Error: stage staging owns its branch")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert _serials(local) == after
    assert "only on the preview" not in _notes(local, "pr-147", monkeypatch)
    assert "staging moved on" in _notes(local, "staging", monkeypatch)
