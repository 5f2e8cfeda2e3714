"""`forkstage stages` and `prune` over 500 stages, seeded by writing state objects over S3.

The listing reads states a bounded number at a time and, on a later run, only those whose ETag
changed; each row must still say what that stage's state says now.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.wrapper_env import Sandbox

COUNT = 500
KEY = "forkstage/terraform.tfstate"
BUCKET = "forkstage-state"


def state(serial: int, resources: int) -> bytes:
    doc = {
        "version": 4,
        "terraform_version": "1.15.5",
        "serial": serial,
        "lineage": str(uuid.uuid4()),
        "outputs": {"worker_url": {"value": "https://w.example", "type": "string"}}
        if resources
        else {},
        "resources": [
            {"mode": "managed", "type": "terraform_data", "name": f"r{i}", "instances": [{}]}
            for i in range(resources)
        ]
        + [{"mode": "data", "type": "terraform_remote_state", "name": "o", "instances": [{}]}],
    }
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox.create(tmp_path_factory.mktemp("listing"))
    done = box.forkstage("stages", "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    s3 = box.s3()

    def put(n: int) -> None:
        # pr-N: serial N, N % 4 resources (0: emptied by a plain destroy); every 100th locked
        s3.put_object(Bucket=BUCKET, Key=f"env:/pr-{n}/{KEY}", Body=state(n, n % 4))
        if n % 100 == 0:
            lock = {"ID": f"lock-{n}", "Who": f"ci@runner-{n}", "Operation": "OperationTypeApply"}
            s3.put_object(Bucket=BUCKET, Key=f"env:/pr-{n}/{KEY}.tflock", Body=json.dumps(lock))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(1, COUNT + 1)))
    s3.put_object(Bucket=BUCKET, Key=f"env:/staging/{KEY}", Body=state(7, 3))
    s3.put_object(Bucket=BUCKET, Key=f"env:/pr-empty-object/{KEY}", Body=b"")
    try:
        yield box
    finally:
        box.stop()


def listing(box: Sandbox, *args: str) -> list[dict[str, Any]]:
    done = box.forkstage("stages", "--json", *args, timeout=120)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def check_rows(rows: list[dict[str, Any]], changed: dict[int, int]) -> None:
    by_stage = {r["stage"]: r for r in rows}
    assert [r["stage"] for r in rows] == sorted(by_stage)
    assert len(rows) == COUNT + 2  # the PRs, staging, and a workspace with an empty object
    for n in range(1, COUNT + 1):
        row = by_stage[f"pr-{n}"]
        resources = n % 4
        assert row["kind"] == "referencing" and row["owner"] == "staging", row
        assert row["serial"] == changed.get(n, n), row
        assert row["resources"] == resources, row
        assert row["status"] == ("live" if resources else "empty"), row
        assert row["last_change"] is not None, row
        assert row["locked_by"] == (f"ci@runner-{n}" if n % 100 == 0 else None), row
        assert row["lock_id"] == (f"lock-{n}" if n % 100 == 0 else None), row
    assert by_stage["staging"]["kind"] == "owner" and by_stage["staging"]["serial"] == 7
    empty = by_stage["pr-empty-object"]
    assert (empty["status"], empty["serial"], empty["last_change"]) == ("empty", 0, None)


def test_stages_lists_500_stages_and_sees_each_change(sandbox: Sandbox) -> None:
    check_rows(listing(sandbox), {})
    # The second listing reads only what changed since the first: a new state, a new lock.
    s3 = sandbox.s3()
    s3.put_object(Bucket=BUCKET, Key=f"env:/pr-7/{KEY}", Body=state(1007, 3))
    lock = {"ID": "lock-8", "Who": "ci@runner-8", "Operation": "OperationTypeApply"}
    s3.put_object(Bucket=BUCKET, Key=f"env:/pr-8/{KEY}.tflock", Body=json.dumps(lock))
    rows = listing(sandbox, "--concurrency", "4")
    # A cache that is not there or not readable changes nothing but the time taken.
    cache = Path(sandbox.home) / "cache" / "stage-facts.json"
    assert cache.is_file() and "runner" not in cache.read_text()
    cache.write_text("{not json")
    again = listing(sandbox, "--concurrency", "1")
    assert [{**r, "age": ""} for r in again] == [{**r, "age": ""} for r in rows]
    by_stage = {r["stage"]: r for r in rows}
    assert by_stage["pr-8"]["locked_by"] == "ci@runner-8"
    by_stage["pr-8"]["locked_by"] = by_stage["pr-8"]["lock_id"] = None
    check_rows(rows, {7: 1007})
    bad = sandbox.forkstage("stages", "--concurrency", "0", timeout=60)
    assert bad.returncode == 2 and "--concurrency" in bad.stderr


def test_prune_picks_from_the_listing(sandbox: Sandbox) -> None:
    done = sandbox.forkstage(
        "prune", "--open", "pr-1,pr-2", "--dry-run", "--json", "--no-preflight", timeout=120
    )
    assert done.returncode == 0, done.stderr
    picked = json.loads(done.stdout)
    stages = {p["stage"] for p in picked}
    assert len(picked) == COUNT - 2 and "pr-1" not in stages and "staging" not in stages
    assert {p["reason"] for p in picked} == {"closed"}
    assert not any(p["destroyed"] for p in picked)
