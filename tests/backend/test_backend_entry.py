"""The state server's own entry point, and ``forkstage backend`` on the backend ``deploy`` uses.

``python -m backend serve`` must run without any of the wrapper: every module it imports is named
by ``-X importtime``. ``forkstage backend versions|rollback`` must read the FORKSTAGE_BACKEND_*
settings and FORKSTAGE_STATE_* key CI pipelines set, with no flag of their own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BUCKET, Running, s3_client
from test_state_cli import NO_AWS_ENV

from backend.s3 import credentials
from forkstage.cli import main
from forkstage.context import Project
from forkstage.state import StateReader
from localcloud.net import free_port

REPO = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = {"forkstage", "cdk", "localcloud", "stacks"}


def _wait_listening(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the server did not listen within 20s")


def test_module_serves_without_project_packages_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ)
    env["FORKSTAGE_HOME"] = str(tmp_path / "home")  # no --data: $FORKSTAGE_HOME/state
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "backend", "serve", "--port", str(port)],
        cwd=REPO,  # where forkstage, cdk and localcloud would be importable
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    data = tmp_path / "home" / "state"
    try:
        _wait_listening(proc, port)
        # one signed request through the whole request path (lazy imports included)
        s3 = s3_client(f"http://127.0.0.1:{port}", credentials.load(data)[0])
        s3.put_object(Bucket=BUCKET, Key="env:/staging/x", Body=b"1")
        assert s3.get_object(Bucket=BUCKET, Key="env:/staging/x")["Body"].read() == b"1"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err[-2000:]
    assert out.splitlines() == [
        f"forkstage state server listening on http://127.0.0.1:{port} (bucket {BUCKET})",
        f"credentials file: {data / 'credentials.json'}",
        "state server stopped",
    ]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in err.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "backend.server" in imported and "backend.serve" in imported
    leaked = sorted(m for m in imported if m.split(".")[0] in PROJECT_PACKAGES)
    assert leaked == []
    assert 'PUT "/forkstage-state/env:/staging/x" 200' in err  # target quoted (issue #13)


def _env(**extra: str) -> dict[str, str | None]:
    return {**NO_AWS_ENV, **extra}


def test_versions_and_rollback_use_the_deploy_settings(
    state_server: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI job's settings (kind s3, endpoint, FORKSTAGE_STATE_* key) and no flag at all."""
    key = "env:/staging/forkstage/terraform.tfstate"
    s3 = state_server.client()
    ids = [
        s3.put_object(
            Bucket=BUCKET,
            Key=key,
            Body=json.dumps(
                {"version": 4, "serial": n, "lineage": f"L{n}", "outputs": {}}
            ).encode(),
        )["VersionId"]
        for n in (1, 2)
    ]
    env = _env(
        FORKSTAGE_BACKEND_KIND="s3",
        FORKSTAGE_BACKEND_ENDPOINT=state_server.endpoint,
        FORKSTAGE_STATE_ACCESS_KEY_ID=state_server.admin.access_key_id,
        FORKSTAGE_STATE_SECRET_ACCESS_KEY=state_server.admin.secret_access_key,
        FORKSTAGE_HOME=str(tmp_path / "home"),  # empty: no embedded credential to fall back on
    )
    monkeypatch.chdir(REPO)
    runner = CliRunner()

    listed = runner.invoke(main, ["backend", "versions", "--stage", "staging", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [v["version_id"] for v in json.loads(listed.output)["versions"]] == ids[::-1]

    done = runner.invoke(
        main, ["backend", "rollback", "--stage", "staging", "--version", ids[0], "--json"], env=env
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["serial"] == 3
    restored = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert (restored["lineage"], restored["serial"]) == ("L1", 3)

    # deploy's guards read the same backend through the same settings
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    project = Project.load()
    state = StateReader(project.settings.backend, project.home).state("staging")
    assert state is not None and (state.serial, state.lineage) == (3, "L1")
    assert not (tmp_path / "home").exists()  # no embedded server was started or asked

    wrong = runner.invoke(
        main,
        ["backend", "versions", "--stage", "staging"],
        env={**env, "FORKSTAGE_STATE_SECRET_ACCESS_KEY": "not-the-secret"},
    )
    assert wrong.exit_code == 1 and "SignatureDoesNotMatch" in wrong.output


def test_embedded_backend_starts_as_module_and_stops(tmp_path: Path) -> None:
    """With the embedded backend, ``versions`` starts ``python -m backend serve`` by itself."""
    port = free_port()
    home = tmp_path / "home"
    env = _env(FORKSTAGE_HOME=str(home), FORKSTAGE_BACKEND_ENDPOINT=f"http://127.0.0.1:{port}")
    runner = CliRunner()
    try:
        listed = runner.invoke(
            main, ["backend", "versions", "--stage", "staging", "--json"], env=env
        )
        assert listed.exit_code == 0, listed.output
        assert json.loads(listed.output)["versions"] == []
        pid = int((home / "backend.pid").read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[1:5] == [b"-P", b"-m", b"backend", b"serve"]
        assert argv[argv.index(b"--region") + 1] == b"us-east-1"
        assert argv[argv.index(b"--port") + 1] == str(port).encode()
        assert argv[argv.index(b"--data") + 1] == str(home / "state").encode()
        started = runner.invoke(main, ["backend", "start"], env=env)
        assert started.exit_code == 0
        assert started.output == (
            f"state server: http://127.0.0.1:{port} (log: {home / 'logs' / 'backend.log'})\n"
        )
    finally:
        stopped = runner.invoke(main, ["backend", "stop"], env=env)
    assert stopped.output == "state server stopped\n"
    assert runner.invoke(main, ["backend", "stop"], env=env).output == (
        "no state server was running\n"
    )
