"""`forkstage outputs` on the local cloud: what a pipeline hands to later steps.

One deployed staging + pr-147: plain `outputs` (and `summary`) print no secret; `--show-secrets`
adds the database URLs, which connect on this machine to pr-147's own branch; `--github-output`
appends every output to $GITHUB_OUTPUT after masking each secret; workers.dev is enabled for the
stage's Worker by the Cloudflare stand-in and `worker_url` is its workers.dev address.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from forkstage.views import github_output_text
from tests import procs
from tests.local_env import BIN, TIMEOUT, LocalCloud
from tests.wrapper_env import REPO

pytestmark = pytest.mark.slow

SUBDOMAIN = "acme-previews"


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCloud]:
    box = LocalCloud("forkstage-outputs-")
    try:
        box.ok("deploy", "--stage", "staging")
        box.ok("deploy", "--stage", "pr-147")
        yield box
    finally:
        box.discard()


def _forkstage(local: LocalCloud, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return procs.run(
        [str(BIN / "forkstage"), *args], cwd=REPO, env={**local.env(), **env}, timeout=TIMEOUT
    )


def _read_github_output(path: Path) -> dict[str, str]:
    """The file as the runner reads it: ``name=value`` lines and ``name<<DELIM`` blocks."""
    values: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            values[name] = "\n".join(body)
        else:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def test_outputs_hand_urls_and_masked_secrets_to_later_steps(
    local: LocalCloud, tmp_path: Path
) -> None:
    plain = json.loads(local.ok("outputs", "--stage", "pr-147", "--json"))
    script = plain["worker_name"]
    assert plain["worker_url"] == f"https://{script}.your-subdomain.workers.dev"  # placeholder
    assert plain["local_url"].startswith("http://127.0.0.1:")
    assert plain["neon_branch_id"] and plain["neon_endpoint_host"]
    assert "database_url" not in plain and "database_url_pooled" not in plain

    shown = json.loads(local.ok("outputs", "--stage", "pr-147", "--show-secrets", "--json"))
    direct, pooled = shown["database_url"], shown["database_url_pooled"]
    password = urlsplit(direct).password
    assert password and urlsplit(pooled).password == password
    assert {k: shown[k] for k in plain} == plain

    # no secret where it is not asked for
    printed = [
        local.ok("outputs", "--stage", "pr-147"),
        local.ok("outputs", "--stage", "pr-147", "--json"),
        *(local.ok("summary", "--stage", "pr-147", "--format", f) for f in ("markdown", "json")),
    ]
    for text in printed:
        assert password not in text and unquote(password) not in text
        assert "database_url" not in text

    # the URLs connect on this machine, to pr-147's own endpoint (pooler host included)
    from localcloud.neon import ControlPlane

    _, port = ControlPlane(local.home).resolve_host(plain["neon_endpoint_host"])
    for url in (direct, pooled):
        assert urlsplit(url).hostname == "127.0.0.1" and urlsplit(url).port == port
        with psycopg.connect(url, connect_timeout=10) as conn:
            assert conn.execute("select count(*) from notes").fetchone() is not None
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute("insert into notes (body) values ('written through database_url')")
    staging = json.loads(local.ok("outputs", "--stage", "staging", "--show-secrets", "--json"))
    assert staging["neon_branch_id"] != plain["neon_branch_id"]
    with psycopg.connect(staging["database_url"]) as conn:
        bodies = [r[0] for r in conn.execute("select body from notes")]
    assert "written through database_url" not in bodies  # a branch of its own

    # --github-output: masks first, then every output appended to the file
    target = tmp_path / "github_output"
    target.write_text("earlier=kept\n")
    proc = _forkstage(
        local, "outputs", "--stage", "pr-147", "--github-output", GITHUB_OUTPUT=str(target)
    )
    assert proc.returncode == 0, proc.stderr
    masks = [line.removeprefix("::add-mask::") for line in proc.stdout.splitlines()]
    masks = masks[: sum(1 for line in proc.stdout.splitlines() if line.startswith("::add-mask::"))]
    assert {direct, pooled, password} <= set(masks)
    for line in proc.stdout.splitlines():  # the secrets appear in mask commands only
        assert line.startswith("::add-mask::") or password not in line
    written = _read_github_output(target)
    assert written["earlier"] == "kept"  # appended, not overwritten
    assert written["database_url"] == direct and written["database_url_pooled"] == pooled
    for name in ("worker_url", "local_url", "neon_branch_id", "neon_endpoint_host", "stage"):
        assert written[name] == plain[name], name

    # the Cloudflare stand-in switched workers.dev on for the script, as the provider does
    from localcloud.cloudflare import Account

    account = next(s["account_id"] for s in Account(local.home).scripts())
    assert Account(local.home).get_subdomain(account, script)["enabled"] is True


def test_subdomain_setting_and_missing_github_output(local: LocalCloud, tmp_path: Path) -> None:
    out = _forkstage(
        local, "outputs", "--stage", "pr-147", "--json", CLOUDFLARE_WORKERS_SUBDOMAIN=SUBDOMAIN
    )
    # the URL is in the state: a new subdomain reaches it with the next deploy, not before
    assert ".your-subdomain.workers.dev" in json.loads(out.stdout)["worker_url"]
    synth = _forkstage(
        local,
        "synth",
        "--stage",
        "pr-147",
        "--out",
        str(tmp_path / "out"),
        CLOUDFLARE_WORKERS_SUBDOMAIN=SUBDOMAIN,
    )
    assert synth.returncode == 0, synth.stderr
    doc = json.loads((tmp_path / "out/stacks/stack-pr-147/cdk.tf.json").read_text())
    assert doc["output"]["worker_url"]["value"].endswith(f".{SUBDOMAIN}.workers.dev")
    assert "sensitive" not in doc["output"]["worker_url"]
    [subdomain] = doc["resource"]["cloudflare_workers_script_subdomain"].values()
    assert subdomain["enabled"] is True

    bad = _forkstage(
        local, "synth", "--stage", "pr-147", CLOUDFLARE_WORKERS_SUBDOMAIN="x.workers.dev"
    )
    assert bad.returncode == 2 and "workers_subdomain" in bad.stderr

    env = {k: v for k, v in local.env().items() if k != "GITHUB_OUTPUT"}
    proc = procs.run(
        [str(BIN / "forkstage"), "outputs", "--stage", "pr-147", "--github-output"],
        cwd=REPO,
        env=env,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 2 and "GITHUB_OUTPUT is not set" in proc.stderr
    assert "::add-mask::" not in proc.stdout


def test_github_output_text_is_multiline_safe() -> None:
    text = github_output_text({"note": "line one\nnote=forged\nline three", "plain": "a=b", "n": 3})
    lines = text.splitlines()
    assert lines[0] == "n=3"
    assert lines[1].startswith("note<<ghadelimiter_")
    delimiter = lines[1].split("<<", 1)[1]
    assert lines[2:6] == ["line one", "note=forged", "line three", delimiter]
    assert lines[6] == "plain=a=b"


def test_subdomain_standin_follows_the_provider(tmp_path: Path) -> None:
    """cloudflare/cloudflare v5.14.0 workers_script_subdomain: account_id and script_name
    replace, enabled updates in place; POST on a missing script is a 404; an upload keeps the
    setting; a read after the script is gone drops the resource; delete switches it off."""
    from localcloud.cloudflare import Account
    from localcloud.providers.cloudflare import WorkersScriptSubdomain
    from localcloud.providers.standin import ProviderError

    assert WorkersScriptSubdomain.replace_on == {"account_id", "script_name"}
    account = Account(tmp_path)
    handler = WorkersScriptSubdomain(account)
    planned = {"account_id": "acc", "script_name": "api", "enabled": True, "previews_enabled": None}
    with pytest.raises(ProviderError, match="not found"):
        handler.create(planned)
    account.put_script("acc", "api", content="export default {}", settings={})
    assert account.get_subdomain("acc", "api") == {"enabled": False, "previews_enabled": False}
    state = handler.create(planned)
    assert state["id"] == "api" and state["enabled"] is True
    assert state["previews_enabled"] is True  # unset: follows enabled
    account.put_script("acc", "api", content="export default {} // v2", settings={})
    assert handler.read(state) == state  # a new upload keeps workers.dev on
    off = handler.update(state, {**state, "enabled": False})
    assert handler.read(off) == {**state, "enabled": False, "previews_enabled": True}
    handler.delete(off)
    assert account.get_subdomain("acc", "api") == {"enabled": False, "previews_enabled": False}
    account.delete_script("acc", "api")
    assert handler.read(off) is None
    handler.delete(off)  # the script is gone: nothing to switch off
