"""Issue 12, items 1 and 2: every run says its target; the cloud target is preflighted.

Static checks refuse a cloud run without credentials (or with the placeholder account id, or the
embedded state server) before synth, init or any state; live checks call Neon and Cloudflare,
here local fakes on 127.0.0.1 answering as the real APIs do (the shapes quoted in the issue).
A cloud run that passes the preflight uses a real state server (`python -m backend serve`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from backend.s3.credentials import ensure_admin
from cdk.settings import Settings, load_settings
from forkstage.errors import BadInput, Failed
from forkstage.preflight import (
    check_cloudflare,
    check_hyperdrive_quota,
    check_live,
    check_neon,
    check_workers_subdomain,
    static_problems,
)
from forkstage.rehearse_fakes import (
    ACCOUNT,
    ACCOUNT_TOKEN,
    DISABLED_TOKEN,
    NEON_KEY,
    ORG,
    ORG_KEY,
    OTHER_ACCOUNT,
    USER_TOKEN,
    FakeApis,
)
from localcloud.net import free_port
from tests import procs
from tests.wrapper_env import REPO

# the fake Neon/Cloudflare APIs live in forkstage.rehearse_fakes (`forkstage ci rehearse` uses them)
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def apis() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApis)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def state_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real state server that is not the embedded one: the cloud target's S3 backend."""
    data = tmp_path_factory.mktemp("preflight-state") / "state"
    port = free_port()
    proc = procs.start(
        [sys.executable, "-m", "backend", "serve", "--port", str(port), "--data", str(data)],
        cwd=REPO,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "state server did not start"
            time.sleep(0.1)
    admin = ensure_admin(data)
    try:
        yield {
            "FORKSTAGE_BACKEND_KIND": "s3",
            # a loopback S3 endpoint on the cloud target is refused unless rehearsing
            "FORKSTAGE_REHEARSAL_STATE": "1",
            "FORKSTAGE_BACKEND_ENDPOINT": f"http://127.0.0.1:{port}",
            "FORKSTAGE_STATE_ACCESS_KEY_ID": admin.access_key_id,
            "FORKSTAGE_STATE_SECRET_ACCESS_KEY": admin.secret_access_key,
        }
    finally:
        proc.terminate()
        procs.wait(proc, timeout=10)


def bucket_keys(backend: dict[str, str]) -> list[str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=backend["FORKSTAGE_BACKEND_ENDPOINT"],
        aws_access_key_id=backend["FORKSTAGE_STATE_ACCESS_KEY_ID"],
        aws_secret_access_key=backend["FORKSTAGE_STATE_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    return [o["Key"] for o in s3.list_objects_v2(Bucket="forkstage-state").get("Contents", [])]


def forkstage(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this repository on the cloud target, with only the credentials in ``env``."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FORKSTAGE_", "AWS_", "TF_", "NEON_", "CLOUDFLARE_"))
    }
    clean.update(FORKSTAGE_HOME=str(home), FORKSTAGE_TARGET="cloud", PATH=os.environ["PATH"])
    clean.update(env)
    return procs.run([str(BIN / "forkstage"), *args], cwd=REPO, env=clean, timeout=60)


def good_env(apis: str, state: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **state,
        "NEON_API_KEY": NEON_KEY,
        "CLOUDFLARE_API_TOKEN": USER_TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
        "CLOUDFLARE_WORKERS_SUBDOMAIN": "acme",
        "FORKSTAGE_NEON_API_URL": f"{apis}/neon/api/v2",
        "FORKSTAGE_CLOUDFLARE_API_URL": f"{apis}/cf/client/v4",
        **extra,
    }


@pytest.mark.parametrize(
    "args",
    [
        ("deploy", "--stage", "staging"),
        ("plan", "--stage", "staging"),
        ("destroy", "--stage", "staging"),
        ("deploy", "--stage", "pr-147", "--no-preflight"),
        ("env", "--stage", "staging"),
    ],
)
def test_no_credentials_exits_2_at_once_naming_them(tmp_path: Path, args: tuple[str, ...]) -> None:
    home = tmp_path / "home"
    started = time.monotonic()
    done = forkstage(home, *args)
    assert done.returncode == 2, procs.failure(done)
    assert time.monotonic() - started < 10
    *said, error = done.stderr.splitlines()
    assert error.startswith("Error: the cloud target needs: set NEON_API_KEY")
    for name in (
        "NEON_API_KEY",
        "CLOUDFLARE_API_TOKEN",
        "CLOUDFLARE_ACCOUNT_ID",
        "CLOUDFLARE_WORKERS_SUBDOMAIN",
    ):
        assert name in error
    assert "FORKSTAGE_BACKEND_KIND=s3" in error  # the embedded server is refused on the cloud
    if args[0] != "env":  # env is quiet: its stdout is for eval
        assert said == [
            "target: cloud: Neon org personal account, "
            "Cloudflare account 00000000000000000000000000000000"
        ]
    # no state server started, no synth, no init: the home was never created
    assert not home.exists()
    assert done.stdout == ""


def test_placeholder_account_exits_2_and_writes_nothing(
    tmp_path: Path, apis: str, state_server: dict[str, str]
) -> None:
    home = tmp_path / "home"
    env = good_env(apis, state_server)
    del env["CLOUDFLARE_ACCOUNT_ID"]  # forkstage.toml's placeholder stays
    asked = len(FakeApis.seen)
    done = forkstage(home, "deploy", "--stage", "staging", "--json", **env)
    assert done.returncode == 2, procs.failure(done)
    doc = json.loads(done.stdout)
    assert doc == {
        "error": "the cloud target needs: set CLOUDFLARE_ACCOUNT_ID "
        "(your account id, not the placeholder 000...0)",
        "exit_code": 2,
    }
    assert len(FakeApis.seen) == asked  # static checks first: no API was called
    assert not home.exists()
    assert bucket_keys(state_server) == []
    missing_state_key = {k: v for k, v in env.items() if not k.startswith("FORKSTAGE_STATE_")}
    missing_state_key["CLOUDFLARE_ACCOUNT_ID"] = ACCOUNT
    done = forkstage(home, "plan", "--stage", "staging", **missing_state_key)
    assert done.returncode == 2
    assert "FORKSTAGE_STATE_ACCESS_KEY_ID and FORKSTAGE_STATE_SECRET_ACCESS_KEY" in done.stderr
    assert "NEON_API_KEY" not in done.stderr and not home.exists()


# (credentials changed from the good ones, exit code, words in the error)
LIVE_CASES = {
    "good": ({}, 0, ""),
    "account-owned token": ({"CLOUDFLARE_API_TOKEN": ACCOUNT_TOKEN}, 0, ""),
    "bad neon key": ({"NEON_API_KEY": "neon-nope"}, 2, "Neon refused the API key (HTTP 401"),
    "bad token": (
        {"CLOUDFLARE_API_TOKEN": "cf-nope"},
        2,
        "Cloudflare refused CLOUDFLARE_API_TOKEN (HTTP 401: Invalid API Token)",
    ),
    "inactive token": (
        {"CLOUDFLARE_API_TOKEN": DISABLED_TOKEN},
        2,
        "CLOUDFLARE_API_TOKEN is disabled, not active",
    ),
    "wrong account": (
        {"CLOUDFLARE_ACCOUNT_ID": OTHER_ACCOUNT},
        2,
        f"cannot access Cloudflare account {OTHER_ACCOUNT} (HTTP 403: Unauthorized to access",
    ),
    "typo'd workers.dev subdomain": (
        {"CLOUDFLARE_WORKERS_SUBDOMAIN": "acne"},
        2,
        "CLOUDFLARE_WORKERS_SUBDOMAIN is 'acne' but the account's workers.dev subdomain is "
        "'acme': set CLOUDFLARE_WORKERS_SUBDOMAIN=acme",
    ),
    "neon unreachable": (
        {"FORKSTAGE_NEON_API_URL": f"http://127.0.0.1:{free_port()}/api/v2"},
        1,
        "cannot reach the Neon API at http://127.0.0.1:",
    ),
    "cloudflare unreachable": (
        {"FORKSTAGE_CLOUDFLARE_API_URL": f"http://127.0.0.1:{free_port()}/client/v4"},
        1,
        "cannot reach the Cloudflare API at http://127.0.0.1:",
    ),
}


@pytest.mark.parametrize("case", list(LIVE_CASES))
def test_live_preflight_against_fake_apis(
    tmp_path: Path, apis: str, state_server: dict[str, str], case: str
) -> None:
    """A destroy of a stage without state: past the preflight it reads the real state server
    and is green ("nothing to destroy"); refused before it, it writes nothing."""
    changed, code, words = LIVE_CASES[case]
    home = tmp_path / "home"
    env = good_env(apis, state_server, NEON_ORG_ID=ORG, **changed)
    FakeApis.seen.clear()
    done = forkstage(home, "destroy", "--stage", "staging", "--json", **env)
    assert done.returncode == code, procs.failure(done)
    doc = json.loads(done.stdout)
    if code == 0:
        assert doc["nothing_to_destroy"] is True
        account = env["CLOUDFLARE_ACCOUNT_ID"]
        assert doc["target"] == f"cloud: Neon org {ORG}, Cloudflare account {account}"
        neon = [query for path, query in FakeApis.seen if path.endswith("/projects")]
        assert neon == [{"limit": ["1"], "org_id": [ORG]}]
        called = [path for path, _ in FakeApis.seen]
        assert f"/cf/client/v4/accounts/{ACCOUNT}" in called
        assert f"/cf/client/v4/accounts/{ACCOUNT}/workers/subdomain" in called
    else:
        assert words in doc["error"] and doc["exit_code"] == code
        assert doc["error"].startswith("preflight: ")
        for secret in (NEON_KEY, USER_TOKEN, "neon-nope", "cf-nope"):
            assert secret not in done.stdout + done.stderr
        assert not home.exists()
    assert bucket_keys(state_server) == []


def test_no_preflight_skips_the_api_calls(
    tmp_path: Path, apis: str, state_server: dict[str, str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    env = good_env(
        apis, state_server, FORKSTAGE_NEON_API_URL=closed, FORKSTAGE_CLOUDFLARE_API_URL=closed
    )
    home = tmp_path / "home"
    unreachable = forkstage(home, "destroy", "--stage", "pr-3", **env)
    assert unreachable.returncode == 1, procs.failure(unreachable)
    assert "cannot reach the Neon API" in unreachable.stderr
    done = forkstage(home, "destroy", "--stage", "pr-3", "--no-preflight", **env)
    assert done.returncode == 0, procs.failure(done)
    assert done.stdout == "nothing to destroy: stage pr-3 has no state\n"
    assert done.stderr.splitlines()[0] == (
        f"target: cloud: Neon org personal account, Cloudflare account {ACCOUNT}"
    )


def test_each_api_call_is_bounded() -> None:
    """An API that accepts the connection and never answers fails (exit 1) at the bound."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(Failed, match=r"cannot reach the Neon API .* within 1s"):
            check_neon({"NEON_API_KEY": NEON_KEY}, "", base=base, timeout=1)
        with pytest.raises(Failed, match="cannot reach the Cloudflare API"):
            check_cloudflare({"CLOUDFLARE_API_TOKEN": USER_TOKEN}, ACCOUNT, base=base, timeout=1)
        assert time.monotonic() - started < 5


def test_summary_says_the_target_without_secrets(
    tmp_path: Path, state_server: dict[str, str]
) -> None:
    """summary (and so the PR comment) names the target; it needs no Neon/Cloudflare secret."""
    state = {
        "version": 4,
        "serial": 3,
        "lineage": "l-1",
        "outputs": {"stage": {"value": "pr-9", "type": "string"}},
        "resources": [],
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=state_server["FORKSTAGE_BACKEND_ENDPOINT"],
        aws_access_key_id=state_server["FORKSTAGE_STATE_ACCESS_KEY_ID"],
        aws_secret_access_key=state_server["FORKSTAGE_STATE_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    key = "env:/pr-9/forkstage/terraform.tfstate"
    s3.put_object(Bucket="forkstage-state", Key=key, Body=json.dumps(state).encode())
    try:
        home = tmp_path / "home"
        env = {**state_server, "CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "NEON_ORG_ID": ORG}
        target = f"cloud: Neon org {ORG}, Cloudflare account {ACCOUNT}"
        as_json = forkstage(home, "summary", "--stage", "pr-9", "--format", "json", **env)
        assert as_json.returncode == 0, procs.failure(as_json)
        assert json.loads(as_json.stdout)["target"] == target
        markdown = forkstage(home, "summary", "--stage", "pr-9", **env).stdout
        assert f"| Target | {target} |" in markdown.splitlines()
        text = forkstage(home, "summary", "--stage", "pr-9", "--format", "text", **env).stdout
        assert text.splitlines()[:2] == ["stage pr-9", f"  target: {target}"]
        local = forkstage(
            home, "summary", "--stage", "pr-9", "--format", "json", FORKSTAGE_TARGET="local", **env
        )
        assert json.loads(local.stdout)["target"] == "local cloud"
    finally:
        s3.delete_object(Bucket="forkstage-state", Key=key)


def test_neon_org_hint_when_the_key_needs_an_org(apis: str) -> None:
    """Some key types need the org id: the error then says to set NEON_ORG_ID."""
    base = f"{apis}/neon/api/v2"
    with pytest.raises(BadInput, match=r"HTTP 401: authentication failed\): check NEON_API_KEY$"):
        check_neon({"NEON_API_KEY": "neon-nope"}, "", base=base)
    with pytest.raises(BadInput, match=r"org_id is required.*set NEON_ORG_ID"):
        check_neon({"NEON_API_KEY": ORG_KEY}, "", base=base)
    check_neon({"NEON_API_KEY": ORG_KEY}, ORG, base=base)


def test_local_target_says_so_and_needs_no_credentials(
    tmp_path: Path, state_server: dict[str, str]
) -> None:
    home = tmp_path / "home"
    done = forkstage(home, "destroy", "--stage", "pr-4", FORKSTAGE_TARGET="local", **state_server)
    assert done.returncode == 0, procs.failure(done)
    assert done.stderr.splitlines()[0] == "target: local cloud"
    doc = json.loads(
        forkstage(
            home, "destroy", "--stage", "pr-4", "--json", FORKSTAGE_TARGET="local", **state_server
        ).stdout
    )
    assert (doc["target"], doc["nothing_to_destroy"]) == ("local cloud", True)


def cloud_settings(**env: str) -> Settings:
    return load_settings(
        REPO, {"FORKSTAGE_TARGET": "cloud", "CLOUDFLARE_ACCOUNT_ID": ACCOUNT, **env}
    )


def test_a_loopback_s3_endpoint_on_the_cloud_target_is_a_static_problem() -> None:
    """Issue 20: kind s3 with the settings file's 127.0.0.1 endpoint (an AWS user who set no
    endpoint, or a forgotten FORKSTAGE_BACKEND_ENDPOINT) names what to set; the region is read
    from FORKSTAGE_BACKEND_REGION."""
    keys = {"FORKSTAGE_STATE_ACCESS_KEY_ID": "k", "FORKSTAGE_STATE_SECRET_ACCESS_KEY": "s"}
    env = {"FORKSTAGE_BACKEND_KIND": "s3", "FORKSTAGE_BACKEND_REGION": "eu-west-3", **keys}
    settings = cloud_settings(**env)
    assert settings.backend.region == "eu-west-3"
    [problem] = [p for p in static_problems(settings, env) if "BACKEND" in p]
    assert problem.startswith("FORKSTAGE_BACKEND_ENDPOINT (the state store's URL")
    assert "http://127.0.0.1:4599 is this machine" in problem
    assert 'for AWS S3, [backend] endpoint = "" (no endpoint)' in problem
    localhost = {**env, "FORKSTAGE_BACKEND_ENDPOINT": "https://localhost:9000"}
    assert any(
        "localhost:9000 is this machine" in p
        for p in static_problems(cloud_settings(**localhost), localhost)
    )
    r2 = {**env, "FORKSTAGE_BACKEND_ENDPOINT": f"https://{ACCOUNT}.r2.cloudflarestorage.com"}
    assert not [p for p in static_problems(cloud_settings(**r2), r2) if "BACKEND" in p]
    rehearsal = {**env, "FORKSTAGE_REHEARSAL_STATE": "1"}
    assert not [
        p for p in static_problems(cloud_settings(**rehearsal), rehearsal) if "BACKEND" in p
    ]


def hyperdrive(name: str, created: str) -> dict[str, Any]:
    return {"id": name[-8:], "name": name, "created_on": created, "origin": {"host": "h"}}


def test_the_hyperdrive_limit_is_checked_before_a_previews_first_deploy(apis: str) -> None:
    """Issue 20: one Hyperdrive per preview; at ``[cloudflare] hyperdrive_limit`` (default 10,
    Cloudflare Free) a new preview exits 2 naming the oldest previews to prune, while a preview
    that already has its configuration, or the owner stage, passes."""
    env = {"CLOUDFLARE_API_TOKEN": USER_TOKEN}
    base = f"{apis}/cf/client/v4"
    settings = cloud_settings()
    assert settings.hyperdrive_limit == 10
    others = [hyperdrive(f"shop-db-{i}", f"2026-11-0{i}T00:00:00Z") for i in range(1, 4)]
    previews = [
        hyperdrive(f"forkstage-hyperdrive-pr-{n}", f"2026-12-{day:02d}T00:00:00Z")
        for n, day in ((30, 5), (12, 1), (7, 3), (41, 2), (50, 4), (51, 6), (52, 7))
    ]
    FakeApis.hyperdrives = others + previews  # 10 configurations
    try:
        with pytest.raises(BadInput) as refused:
            check_hyperdrive_quota(env, settings, "pr-60", base=base)
        assert str(refused.value) == (
            f"preflight: Cloudflare account {ACCOUNT} holds 10 Hyperdrive configurations, the "
            "limit is 10 ([cloudflare] hyperdrive_limit): pr-60 needs one more; prune the "
            "oldest previews first (pr-12): forkstage destroy --stage <it>"
        )
        check_hyperdrive_quota(env, settings, "pr-30", base=base)  # redeploy: no new config
        FakeApis.hyperdrives = others + previews[:6]  # 9: room for one
        check_hyperdrive_quota(env, settings, "pr-60", base=base)
        lower = replace(settings, hyperdrive_limit=7)
        with pytest.raises(
            BadInput, match=r"prune the oldest previews first \(pr-12, pr-41, pr-7\)"
        ):
            check_hyperdrive_quota(env, lower, "pr-60", base=base)
        # check_live runs it only for a referencing stage being deployed
        full = {
            **env,
            "NEON_API_KEY": NEON_KEY,
            "CLOUDFLARE_WORKERS_SUBDOMAIN": "acme",
            "FORKSTAGE_NEON_API_URL": f"{apis}/neon/api/v2",
            "FORKSTAGE_CLOUDFLARE_API_URL": base,
        }
        check_live(replace(lower, cloudflare_workers_subdomain="acme"), full, deploying="staging")
        with pytest.raises(BadInput, match="holds 9 Hyperdrive configurations"):
            check_live(replace(lower, cloudflare_workers_subdomain="acme"), full, deploying="pr-60")
    finally:
        FakeApis.hyperdrives = []


def test_the_workers_subdomain_is_read_from_the_account(apis: str) -> None:
    env = {"CLOUDFLARE_API_TOKEN": USER_TOKEN}
    base = f"{apis}/cf/client/v4"
    check_workers_subdomain(env, ACCOUNT, "acme", base=base)
    with pytest.raises(
        BadInput, match="subdomain is 'acme': set CLOUDFLARE_WORKERS_SUBDOMAIN=acme"
    ):
        check_workers_subdomain(env, ACCOUNT, "acne", base=base)
    with pytest.raises(BadInput, match=r"cannot read the workers.dev subdomain .* \(HTTP 403"):
        check_workers_subdomain(env, OTHER_ACCOUNT, "acme", base=base)


def test_a_preview_deploy_over_the_hyperdrive_limit_exits_2_writing_nothing(
    tmp_path: Path, apis: str, state_server: dict[str, str]
) -> None:
    """The deploy command runs the count: the 11th preview is refused before synth or state."""
    FakeApis.hyperdrives = [
        hyperdrive(f"forkstage-hyperdrive-pr-{n}", f"2026-12-{n:02d}T00:00:00Z")
        for n in range(1, 11)
    ]
    try:
        home = tmp_path / "home"
        done = forkstage(home, "deploy", "--stage", "pr-60", **good_env(apis, state_server))
        assert done.returncode == 2, procs.failure(done)
        assert done.stderr.splitlines()[-1] == (
            f"Error: preflight: Cloudflare account {ACCOUNT} holds 10 Hyperdrive "
            "configurations, the limit is 10 ([cloudflare] hyperdrive_limit): pr-60 needs one "
            "more; prune the oldest previews first (pr-1): forkstage destroy --stage <it>"
        )
        assert bucket_keys(state_server) == []
    finally:
        FakeApis.hyperdrives = []
