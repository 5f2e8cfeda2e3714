"""The README's main command: the seed story on one machine, embedded state server + local cloud.

staging (owns the project, seed rows) -> pr-147 (forks staging's branch, its own write through
its Worker) -> destroy pr-147 -> staging's project, branch, rows and state serial untouched.
Everything runs through `forkstage` exactly as CI would call it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FORKSTAGE = str(Path(sys.executable).parent / "forkstage")


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def fs(*args: str, capture: bool = False) -> str:
    proc = subprocess.run(
        [FORKSTAGE, *args],
        cwd=REPO,
        text=True,
        check=False,
        stdout=subprocess.PIPE if capture else None,
    )
    if proc.returncode != 0:
        raise SystemExit(f"forkstage {' '.join(args)} failed with exit code {proc.returncode}")
    return proc.stdout or ""


def http(method: str, url: str, body: str | None = None) -> object:
    request = urllib.request.Request(url, method=method, data=body.encode() if body else None)
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def rows(stage: str) -> list[tuple[int, str]]:
    import psycopg

    from forkstage.databases import ProjectDatabases

    databases = ProjectDatabases(environ={})
    url = databases.stage_url(stage)
    with psycopg.connect(url, **databases.connect_options(url)) as conn:
        return [
            (int(r[0]), str(r[1])) for r in conn.execute("select id, body from notes order by id")
        ]


def project_home() -> Path:
    from forkstage.engine import forkstage_home

    return forkstage_home(REPO)


def main() -> None:
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    from localcloud.neon import ControlPlane

    step("deploy staging: owns the Neon project; its branch runs the migrations (with seed rows)")
    fs("deploy", "--stage", "staging")
    staging_serial = json.loads(fs("stages", "--json", capture=True))
    staging_rows = rows("staging")
    print(f"staging rows: {staging_rows}")

    step("deploy pr-147: references staging's project, forks staging's branch")
    fs("plan", "--stage", "pr-147")
    fs("deploy", "--stage", "pr-147")
    fs("migrations", "--stage", "pr-147")

    step("call pr-147's Worker (Miniflare, Hyperdrive binding -> pr-147's branch)")
    base = json.loads(fs("outputs", "--stage", "pr-147", "--json", capture=True))["local_url"]
    print(f"GET  {base}/notes ->", http("GET", f"{base}/notes"))
    print(f"POST {base}/notes ->", http("POST", f"{base}/notes", "written by pr-147"))
    print(f"GET  {base}/notes ->", http("GET", f"{base}/notes"))
    staging_url = json.loads(fs("outputs", "--stage", "staging", "--json", capture=True))[
        "local_url"
    ]
    print(
        f"POST {staging_url}/notes (staging) ->",
        http("POST", f"{staging_url}/notes", "written by staging"),
    )
    seen = [n["body"] for n in http("GET", f"{base}/notes")]  # type: ignore[union-attr]
    assert "written by staging" not in seen, seen
    print(f"pr-147 does not see staging's write: {seen}")
    staging_rows = rows("staging")
    assert all(body != "written by pr-147" for _, body in staging_rows), staging_rows
    print(f"staging rows (without pr-147's write): {rows('staging')}")

    step("destroy pr-147: its branch, endpoint, Hyperdrive and Worker go; the project stays")
    pr_branch = json.loads(fs("outputs", "--stage", "pr-147", "--json", capture=True))[
        "neon_branch_id"
    ]
    fs("destroy", "--stage", "pr-147")
    plane = ControlPlane(project_home())
    assert all(e.branch_id != pr_branch for e in plane.endpoints())
    assert not plane.branch_dir(pr_branch).exists()
    print(f"pr-147's endpoint is stopped and its branch data ({pr_branch}) removed")
    assert not answers(base), base  # the stand-in stopped the Worker with its script
    print(f"pr-147's Worker stopped with its script ({base} refuses connections)")
    after = rows("staging")
    assert after == staging_rows, (after, staging_rows)
    serial = {r["stage"]: r["serial"] for r in json.loads(fs("stages", "--json", capture=True))}
    before = {r["stage"]: r["serial"] for r in staging_serial}
    print(f"staging rows: {after} (unchanged)")
    print(f"staging state serial: {before['staging']} -> {serial['staging']}")
    fs("stages")

    if "--keep" not in sys.argv:
        step("clean up: destroy staging, stop the local cloud")
        fs("destroy", "--stage", "staging")
        fs("local", "down")
    print("\ndemo finished")


if __name__ == "__main__":
    main()
