"""What every rehearsed pipeline must show after its PR jobs (tests/test_rehearse_*.py): the
rehearsal's own checks between the jobs, the preview Worker answering behind its workers.dev URL,
the comment with its compared schema section, and the owner's state serial left as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

OWNER = "staging"
SCHEMA_HEADING = f"#### Schema changes against `{OWNER}`"
COMMENT_MARKER = "<!-- forkstage-preview -->"


def check_preview_outcome(outcome: dict[str, Any], *, app: str, pr: int) -> tuple[str, str]:
    """Assert the shared part of a passing rehearsal's ``--json`` outcome; return the preview's
    workers.dev URL and the comment body for the pipeline's own checks."""
    steps = outcome["steps"]
    url = f"https://{app}-api-pr-{pr}.acme.workers.dev"
    assert [s["step"] for s in steps if s["job"] == "rehearsal"] == [
        f"the preview Worker answers: GET {url}/health",
        f"the pull request's jobs left {OWNER} unchanged: serial "
        f"{outcome['staging_serial']['before']} -> {outcome['staging_serial']['after']}",
        f"the preview Worker {app}-api-pr-{pr} is gone",
    ]
    # the environment URL is the workers.dev one; the local cloud's Worker behind it answered
    assert outcome["environment_url"] == url
    worker = outcome["worker"]
    assert worker["status"] == 200, worker
    # the PR-opened comment: marker, summary, and the schema section compared (not an error)
    comment = str(outcome["comment"])
    assert Path(outcome["comment_file"]).read_text() == comment
    assert comment.startswith(COMMENT_MARKER + "\n"), comment
    assert f"### Preview `pr-{pr}`" in comment
    assert comment.split(SCHEMA_HEADING, 1)[1].strip() == "No schema changes.", comment
    # the destroy left the owner's state as the PR's deploy found it
    serial = outcome["staging_serial"]
    assert isinstance(serial["before"], int) and serial["before"] >= 1
    assert serial["after"] == serial["before"]
    return url, comment
