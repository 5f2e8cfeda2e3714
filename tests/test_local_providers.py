"""The stand-in providers under the real Terraform engine, on real PostgreSQL servers.

One "staging" configuration (project, branch, endpoint, role password, Hyperdrive, Worker) is
applied once for the module; "PR stage" configurations fork from it and are destroyed again.
A plain apply leaves each Worker running (Miniflare), as Cloudflare serves an uploaded script;
every server and Worker started here is stopped by the module fixture's teardown.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from tf.types import Unknown

from cdk.providers.pins import CLOUDFLARE, NEON
from cdk.providers.schema import SCHEMAS_DIR, SchemaError, load
from forkstage.engine import run_terraform, terraform_env
from localcloud import live_workers
from localcloud.cloudflare import Account
from localcloud.cloudflare import NotFound as ScriptNotFound
from localcloud.neon import Conflict, ControlPlane, NotFound, PasswordNotStored
from localcloud.providers.cloudflare import HyperdriveConfig
from localcloud.providers.neon import standin as neon_standin
from localcloud.providers.standin import ProviderError
from localcloud.providers.values import mark_computed_unknown, normalize, resolve
from localcloud.registry import (
    LOCK_FILE,
    is_standin_lock,
    isolated_lock_file,
    launcher_path,
    package_hash,
    provider_installation,
)

pytestmark = pytest.mark.timeout(120)

ACCOUNT = "0123456789abcdef0123456789abcdef"
WORKER = "export default { async fetch(req, env) { return new Response('ok') } }\n"
WORKER_FILE = "src/worker.js"  # beside the config: relative to Terraform's working directory
WORKER_SHA256 = hashlib.sha256(WORKER.encode()).hexdigest()
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
REQUIRED = {
    "required_providers": {
        "neon": {"source": NEON.source, "version": NEON.version},
        "cloudflare": {"source": CLOUDFLARE.source, "version": CLOUDFLARE.version},
    }
}
PROVIDERS = {"neon": {}, "cloudflare": {"api_token": "not-used-locally"}}


def hyperdrive(name: str, stage: str, project: str) -> dict[str, Any]:
    """A Hyperdrive in front of ``stage``'s endpoint; ``project`` is where names come from."""
    return {
        "account_id": ACCOUNT,
        "name": name,
        "origin": {
            "scheme": "postgresql",
            "host": f"${{neon_endpoint.{stage}.host}}",
            "port": 5432,
            "database": f"${{{project}database_name}}",
            "user": f"${{{project}database_user}}",
            "password": f"${{data.neon_branch_role_password.{stage}.password}}",
        },
    }


def worker(name: str, stage: str, *, inline: bool = False) -> dict[str, Any]:
    """A Worker with its code in a file (as cdk.Worker synthesizes it), or inline."""
    code = (
        {"content": WORKER}
        if inline
        else {"content_file": WORKER_FILE, "content_sha256": WORKER_SHA256}
    )
    return {
        "account_id": ACCOUNT,
        "script_name": name,
        **code,
        "main_module": "worker.js",
        "compatibility_date": "2025-09-01",
        "compatibility_flags": ["nodejs_compat"],
        "bindings": [
            {
                "type": "hyperdrive",
                "name": "HYPERDRIVE",
                "id": f"${{cloudflare_hyperdrive_config.{stage}.id}}",
            }
        ],
    }


def staging_config() -> dict[str, Any]:
    """What the staging stack synthesizes, by hand: the project and staging's own branch."""
    return {
        "terraform": REQUIRED,
        "provider": PROVIDERS,
        "resource": {
            "neon_project": {
                "db": {
                    "name": "shop",
                    "region_id": "aws-us-east-2",
                    "pg_version": 16,
                    "history_retention_seconds": 21600,  # unset = 86400: Free plan refuses it
                    "store_password": "yes",
                    "branch": {"name": "main", "database_name": "app", "role_name": "app_owner"},
                }
            },
            "neon_branch": {
                "staging": {
                    "project_id": "${neon_project.db.id}",
                    "name": "staging",
                    "parent_id": "${neon_project.db.default_branch_id}",
                }
            },
            "neon_endpoint": {
                "staging": {
                    "project_id": "${neon_project.db.id}",
                    "branch_id": "${neon_branch.staging.id}",
                    "type": "read_write",
                }
            },
            "cloudflare_hyperdrive_config": {
                "staging": hyperdrive("shop-staging", "staging", "neon_project.db.")
            },
            "cloudflare_workers_script": {"staging": worker("shop-staging", "staging")},
        },
        "data": {
            "neon_branch_role_password": {
                "staging": {
                    "project_id": "${neon_project.db.id}",
                    "branch_id": "${neon_branch.staging.id}",
                    "role_name": "${neon_project.db.database_user}",
                }
            }
        },
        "output": {
            "project_id": {"value": "${neon_project.db.id}"},
            "default_branch_id": {"value": "${neon_project.db.default_branch_id}"},
            "database_name": {"value": "${neon_project.db.database_name}"},
            "database_user": {"value": "${neon_project.db.database_user}"},
            "connection_uri": {"value": "${neon_project.db.connection_uri}", "sensitive": True},
            "staging_branch_id": {"value": "${neon_branch.staging.id}"},
            "staging_host": {"value": "${neon_endpoint.staging.host}"},
            "hyperdrive_id": {"value": "${cloudflare_hyperdrive_config.staging.id}"},
        },
    }


def pr_config(number: int) -> dict[str, Any]:
    """A PR stage: its own branch, endpoint, Hyperdrive and Worker; the project is a variable."""
    var = {"type": "string"}
    name = f"shop-pr-{number}"
    return {
        "terraform": REQUIRED,
        "provider": PROVIDERS,
        "variable": {
            "project_id": var,
            "parent_branch_id": var,
            "database_name": var,
            "database_user": var,
        },
        "resource": {
            "neon_branch": {
                "pr": {
                    "project_id": "${var.project_id}",
                    "name": f"pr-{number}",
                    "parent_id": "${var.parent_branch_id}",
                }
            },
            "neon_endpoint": {
                "pr": {
                    "project_id": "${var.project_id}",
                    "branch_id": "${neon_branch.pr.id}",
                    "type": "read_write",
                }
            },
            "cloudflare_hyperdrive_config": {"pr": hyperdrive(name, "pr", "var.")},
            "cloudflare_workers_script": {"pr": worker(name, "pr", inline=number % 2 == 0)},
        },
        "data": {
            "neon_branch_role_password": {
                "pr": {
                    "project_id": "${var.project_id}",
                    "branch_id": "${neon_branch.pr.id}",
                    "role_name": "${var.database_user}",
                }
            }
        },
        "output": {
            "branch_id": {"value": "${neon_branch.pr.id}"},
            "host": {"value": "${neon_endpoint.pr.host}"},
            "hyperdrive_id": {"value": "${cloudflare_hyperdrive_config.pr.id}"},
            "password": {
                "value": "${data.neon_branch_role_password.pr.password}",
                "sensitive": True,
            },
        },
    }


class Terraform:
    """The pinned engine with the stand-ins installed, in one working directory."""

    def __init__(self, home: Path, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.workdir = workdir
        self.env = env or terraform_env(
            home,
            provider_installation=provider_installation(home),
            extra={"FORKSTAGE_HOME": str(home)},
        )

    def write(self, config: dict[str, Any]) -> None:
        (self.workdir / WORKER_FILE).parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / WORKER_FILE).write_text(WORKER)
        (self.workdir / "main.tf.json").write_text(json.dumps(config, indent=1))

    def run(self, *args: str, ok: bool = True, codes: tuple[int, ...] = (0,)) -> Any:
        done = run_terraform(
            [args[0], "-input=false", "-no-color", *args[1:]],
            cwd=self.workdir,
            env=self.env,
            timeout=100,
        )
        if ok:
            assert done.returncode in codes, done.stdout[-2000:] + done.stderr[-3000:]
        return done

    def outputs(self) -> dict[str, Any]:
        done = run_terraform(["output", "-json"], cwd=self.workdir, env=self.env, timeout=60)
        assert done.returncode == 0, done.stderr
        return {k: v["value"] for k, v in json.loads(done.stdout).items()}


def rows(url: str) -> list[str]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return [r[0] for r in conn.execute("SELECT note FROM items ORDER BY id").fetchall()]


def insert(url: str, note: str) -> None:
    with psycopg.connect(url, connect_timeout=5) as conn:
        conn.execute("INSERT INTO items (note) VALUES (%s)", (note,))


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def answer(home: Path, script: str) -> str:
    """What the script's running Worker answers on ``/`` (it must run)."""
    running = live_workers.attach(home, script)
    assert running is not None, f"no Worker runs for {script}"
    with _NO_PROXY.open(running.url, timeout=15) as response:
        return str(response.read().decode())


def _live(pid: int) -> bool:
    """Running, not a zombie (PID 1 here may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def postgres_processes(home: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-af", str(home)], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "postgres" in line]


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    # PostgreSQL may run as the postgres user (we may be root): it must traverse to its data.
    path = Path(tempfile.mkdtemp(prefix="fs-local-"))
    path.chmod(0o711)
    yield path
    live_workers.stop_all(path)
    ControlPlane(path).stop_all()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def staging(home: Path) -> Iterator[tuple[Terraform, dict[str, Any]]]:
    tf = Terraform(home, home / "work" / "staging")
    tf.write(staging_config())
    tf.run("init")
    tf.run("apply", "-auto-approve")
    yield tf, tf.outputs()
    state = tf.workdir / "terraform.tfstate"
    if state.exists() and json.loads(state.read_text()).get("resources"):
        tf.run("destroy", "-auto-approve", ok=False)


def apply_pr(home: Path, number: int, out: dict[str, Any]) -> Terraform:
    tf = Terraform(home, home / "work" / f"pr-{number}")
    tf.write(pr_config(number))
    tf.run("init")
    tf.run("apply", "-auto-approve", *pr_vars(out))
    return tf


def pr_vars(out: dict[str, Any]) -> list[str]:
    return [
        f"-var=project_id={out['project_id']}",
        f"-var=parent_branch_id={out['default_branch_id']}",
        f"-var=database_name={out['database_name']}",
        f"-var=database_user={out['database_user']}",
    ]


# -- schema and installation -----------------------------------------------------------------------
@pytest.mark.slow
def test_terraform_sees_exactly_the_snapshot_schemas(home: Path) -> None:
    tf = Terraform(home, home / "work" / "schema")
    tf.write({"terraform": REQUIRED, "provider": PROVIDERS})
    tf.run("init")
    done = run_terraform(["providers", "schema", "-json"], cwd=tf.workdir, env=tf.env, timeout=60)
    assert done.returncode == 0, done.stderr
    served = json.loads(done.stdout)["provider_schemas"]
    for name in ("neon", "cloudflare"):
        path = Path(__file__).parents[1] / "cdk" / "providers" / "schemas" / f"{name}.json"
        for address, schema in json.loads(path.read_text())["provider_schemas"].items():
            expected = {k: v for k, v in schema.items() if v != {}}
            assert served[address] == expected, address


@pytest.mark.slow
def test_lock_file_of_a_local_run_never_meets_a_real_one(home: Path) -> None:
    tf = Terraform(home, home / "work" / "lock")
    tf.write({"terraform": REQUIRED, "provider": PROVIDERS})
    real = (
        '# real run\nprovider "registry.terraform.io/kislerdm/neon" {\n  version = "0.15.0"\n'
        '  hashes = [\n    "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",\n'
        '    "zh:0000000000000000000000000000000000000000000000000000000000000000",\n  ]\n}\n'
    )
    lock = tf.workdir / LOCK_FILE
    lock.write_text(real)
    assert not is_standin_lock(lock, home)
    assert tf.run("init", ok=False).returncode == 1  # a real lock file breaks a local init...
    with isolated_lock_file(tf.workdir, home):
        tf.run("init")  # ...so a local run sets it aside
        made = lock.read_text()
        assert package_hash(launcher_path(home, NEON)) in made
        assert package_hash(launcher_path(home, CLOUDFLARE)) in made
        assert is_standin_lock(lock, home)
        tf.run("plan")
    assert lock.read_text() == real


def test_a_lock_file_from_an_older_launcher_is_still_recognised(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_FILE
    entry = 'provider "{}" {{\n  version = "{}"\n  hashes = [\n{}  ]\n}}\n'
    lock.write_text(entry.format(NEON.fqn, NEON.version, '    "h1:b2xk=",\n'))
    assert is_standin_lock(lock, tmp_path)  # mirror installs record no zh: hashes
    lock.write_text(entry.format(NEON.fqn, NEON.version, '    "h1:b2xk=",\n    "zh:00",\n'))
    assert not is_standin_lock(lock, tmp_path)


def test_installation_answers_only_for_the_pinned_sources(home: Path) -> None:
    block = provider_installation(home)
    assert f'include = ["{NEON.fqn}", "{CLOUDFLARE.fqn}"]' in block
    assert f'exclude = ["{NEON.fqn}", "{CLOUDFLARE.fqn}"]' in block
    launcher = launcher_path(home, NEON)
    assert launcher.name == f"terraform-provider-neon_v{NEON.version}"
    assert os.access(launcher, os.X_OK)
    before = package_hash(launcher)
    provider_installation(home)  # idempotent: the locked hash must not move
    assert package_hash(launcher) == before
    by_hand = subprocess.run([str(launcher)], capture_output=True, text=True, timeout=30)
    assert by_hand.returncode == 1
    assert "not meant to be run by hand" in by_hand.stderr


@pytest.mark.slow
def test_without_forkstage_home_the_provider_says_what_to_do(home: Path) -> None:
    env = terraform_env(home, provider_installation=provider_installation(home))
    env.pop("FORKSTAGE_HOME", None)
    tf = Terraform(home, home / "work" / "no-home", env=env)
    tf.write(
        {
            "terraform": REQUIRED,
            "provider": PROVIDERS,
            "resource": {"neon_project": {"p": {"name": "x"}}},
        }
    )
    tf.run("init")
    done = tf.run("plan", ok=False)
    assert done.returncode == 1
    assert "FORKSTAGE_HOME is not set" in done.stderr


def test_a_missing_or_short_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"neon\.json is missing"):
        neon_standin(tmp_path).load_schema()
    snapshot = json.loads((SCHEMAS_DIR / "neon.json").read_text())
    del snapshot["provider_schemas"][NEON.fqn]["resource_schemas"]["neon_endpoint"]
    (tmp_path / "neon.json").write_text(json.dumps(snapshot))
    with pytest.raises(SchemaError, match="lacks neon_endpoint"):
        neon_standin(tmp_path).load_schema()


# -- value handling --------------------------------------------------------------------------------
def test_create_plan_marks_nested_computed_attributes_unknown_and_apply_fills_them() -> None:
    block = load(CLOUDFLARE).resources["cloudflare_workers_script"].block
    config = {"script_name": "w", "bindings": [{"type": "hyperdrive", "name": "H", "id": "x"}]}
    planned = mark_computed_unknown(block, normalize(block, config) or {})
    assert planned["id"] is Unknown and planned["etag"] is Unknown
    assert planned["bindings"][0]["class_name"] is Unknown  # optional+computed, left null
    assert planned["bindings"][0]["id"] == "x"
    assert planned["content"] is None  # optional only: stays null
    state = resolve(planned, {"id": "w", "etag": "e", "bindings": []})
    assert state["id"] == "w" and state["etag"] == "e"
    binding = state["bindings"][0]
    assert (binding["id"], binding["class_name"], binding["namespace_id"]) == ("x", None, None)
    assert binding["outbound"] is None and state["placement"] is None
    assert state["handlers"] is None


# -- Terraform end to end ----------------------------------------------------------------------
@pytest.mark.slow
def test_staging_applies_and_replans_with_no_changes(staging: tuple[Terraform, Any]) -> None:
    tf, out = staging
    assert out["database_name"] == "app" and out["database_user"] == "app_owner"
    assert out["staging_host"].startswith("ep-") and out["staging_host"].endswith(".neon.localhost")
    assert out["default_branch_id"].startswith("br-")
    plan = tf.run("plan", "-detailed-exitcode")
    assert plan.returncode == 0
    assert "Warning" not in plan.stdout + plan.stderr  # e.g. no state upgrade warnings


@pytest.mark.slow
def test_staging_outputs_reach_real_servers(staging: tuple[Terraform, Any], home: Path) -> None:
    _, out = staging
    with psycopg.connect(out["connection_uri"], connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "app_owner",
            "app",
        )
    account = Account(home)
    url = account.hyperdrive_local_url(out["hyperdrive_id"])
    with psycopg.connect(url, connect_timeout=5) as conn:  # staging's own branch, via its host
        assert conn.execute("SELECT current_user").fetchone() == ("app_owner",)
    wrong = url.replace(url.split("//")[1].split("@")[0], "app_owner:wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)
    script = account.get_script(ACCOUNT, "shop-staging")
    assert Path(script["path"]).read_text() == WORKER  # read from its content_file
    assert script["bindings"][0]["id"] == out["hyperdrive_id"]
    state = (home / "local" / "neon" / "state.json").stat()
    assert state.st_mode & 0o077 == 0  # it holds passwords


@pytest.mark.slow
def test_a_plain_apply_leaves_the_worker_running(
    staging: tuple[Terraform, Any], home: Path
) -> None:
    # no wrapper here: the stand-in started the Worker when the apply uploaded the script
    assert answer(home, "shop-staging") == "ok"
    running = live_workers.attach(home, "shop-staging")
    assert running is not None and running.processes()
    assert os.getpid() not in running.processes()  # detached: it outlived the provider


@pytest.mark.slow
def test_worker_code_as_a_file_is_checked_as_the_real_provider_checks_it(home: Path) -> None:
    tf = Terraform(home, home / "work" / "code-file")
    script = worker("shop-code", "x")
    del script["bindings"]
    tf.write({"terraform": REQUIRED, "provider": PROVIDERS})
    tf.run("init")

    def plan(**attrs: Any) -> subprocess.CompletedProcess[str]:
        config = {**script, **attrs}
        tf.write(
            {
                "terraform": REQUIRED,
                "provider": PROVIDERS,
                "resource": {"cloudflare_workers_script": {"w": config}},
            }
        )
        done: subprocess.CompletedProcess[str] = tf.run("plan", ok=False)
        return done

    wrong = plan(content_sha256="0" * 64)
    assert wrong.returncode == 1
    assert "SHA-256 Hash Mismatch" in wrong.stderr
    assert f"does not match the actual hash '{WORKER_SHA256}'" in " ".join(wrong.stderr.split())
    missing = plan(content_file="src/gone.js")
    assert "Hash Calculation Error" in missing.stderr and "src/gone.js" in missing.stderr
    unpaired = plan(content_sha256=None)
    assert 'Attribute "content_sha256" must be specified' in " ".join(unpaired.stderr.split())
    both = plan(content=WORKER)
    assert "cannot be specified when" in " ".join(both.stderr.split())

    shown = plan()  # what `cdktf diff` shows: a path and a hash, never the code
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf'content_sha256 += "{WORKER_SHA256}"', shown.stdout), shown.stdout
    assert re.search(rf'content_file += "{WORKER_FILE}"', shown.stdout)
    assert "new Response" not in shown.stdout


@pytest.mark.slow
def test_pr_stage_forks_an_isolated_copy_and_destroy_removes_it(
    staging: tuple[Terraform, Any], home: Path
) -> None:
    _, out = staging
    parent = out["connection_uri"]
    with psycopg.connect(parent) as conn:
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, note text NOT NULL)")
        conn.execute("CREATE TABLE __migrations (name text PRIMARY KEY)")
        conn.execute("INSERT INTO __migrations VALUES ('0000_init')")
    insert(parent, "before-fork")

    pr = apply_pr(home, 1, out)
    pr_out = pr.outputs()
    assert answer(home, "shop-pr-1") == "ok"
    worker = live_workers.attach(home, "shop-pr-1")
    assert worker is not None
    cp = ControlPlane(home)
    branch = cp.get_branch(out["project_id"], pr_out["branch_id"])
    assert branch.parent_id == out["default_branch_id"] and branch.name == "pr-1"
    parent_password = cp.role_password(out["project_id"], out["default_branch_id"], "app_owner")
    assert pr_out["password"] == parent_password  # inherited, as on Neon
    child = Account(home).hyperdrive_local_url(pr_out["hyperdrive_id"])
    assert rows(child) == ["before-fork"]
    with psycopg.connect(child) as conn:
        assert conn.execute("SELECT name FROM __migrations").fetchall() == [("0000_init",)]

    insert(child, "child-only")
    insert(parent, "parent-after")
    assert rows(child) == ["before-fork", "child-only"]
    assert rows(parent) == ["before-fork", "parent-after"]
    assert pr.run("plan", "-detailed-exitcode", *pr_vars(out)).returncode == 0

    _, port = cp.resolve_host(pr_out["host"])
    data_dir = cp.data_dir(pr_out["branch_id"])
    assert data_dir.is_dir() and accepts(port)
    pr.run("destroy", "-auto-approve", *pr_vars(out))
    assert not data_dir.exists()
    assert not accepts(port)
    assert not [p for p in postgres_processes(home) if pr_out["branch_id"] in p]
    with pytest.raises(NotFound):
        cp.get_branch(out["project_id"], pr_out["branch_id"])
    with pytest.raises(ScriptNotFound):
        Account(home).get_script(ACCOUNT, "shop-pr-1")
    assert live_workers.attach(home, "shop-pr-1") is None  # deleting the script stopped it
    assert not accepts(int(urlsplit(worker.url).port or 0))  # the host serves staging's only
    assert rows(parent) == ["before-fork", "parent-after"]


@pytest.mark.slow
def test_branch_deleted_behind_terraforms_back_is_recreated(
    staging: tuple[Terraform, Any], home: Path
) -> None:
    _, out = staging
    pr = apply_pr(home, 2, out)
    first = pr.outputs()
    before = live_workers.attach(home, "shop-pr-2")
    assert before is not None
    cp = ControlPlane(home)
    cp.delete_branch(out["project_id"], first["branch_id"])  # takes its endpoint with it

    plan = pr.run("plan", "-detailed-exitcode", *pr_vars(out), codes=(2,))
    assert "neon_branch.pr will be created" in plan.stdout
    assert "neon_endpoint.pr will be created" in plan.stdout
    pr.run("apply", "-auto-approve", *pr_vars(out))
    second = pr.outputs()
    assert second["branch_id"] != first["branch_id"]
    assert (
        cp.get_branch(out["project_id"], second["branch_id"]).parent_id
        == (out["default_branch_id"])
    )
    with psycopg.connect(Account(home).hyperdrive_local_url(second["hyperdrive_id"])) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # the Hyperdrive config changed origin in place: its Worker was restarted onto it
    after = live_workers.attach(home, "shop-pr-2")
    assert after is not None and after.generation != before.generation
    assert answer(home, "shop-pr-2") == "ok"
    assert pr.run("plan", "-detailed-exitcode", *pr_vars(out)).returncode == 0
    pr.run("destroy", "-auto-approve", *pr_vars(out))
    assert live_workers.attach(home, "shop-pr-2") is None


@pytest.mark.slow
def test_hyperdrive_refuses_an_origin_that_rejects_its_credentials(
    staging: tuple[Terraform, Any], home: Path
) -> None:
    _, out = staging
    handler = HyperdriveConfig(Account(home))
    origin = {
        "scheme": "postgresql",
        "host": out["staging_host"],
        "port": 5432,
        "database": "app",
        "user": "app_owner",
        "password": "not-the-password",
    }
    with pytest.raises(ProviderError, match="Failed to connect") as failure:
        handler.create({"account_id": ACCOUNT, "name": "bad", "origin": origin})
    assert "not-the-password" not in failure.value.detail


# -- control plane rules ---------------------------------------------------------------------------
def test_control_plane_follows_neon_rules(home: Path) -> None:
    cp = ControlPlane(home)
    project = cp.create_project(name="rules", store_password=False)
    try:
        assert project.database_name == "neondb" and project.role_name == "neondb_owner"
        assert project.id.count("-") == 2 and project.id.split("-")[2].isdigit()
        main = project.default_branch_id
        url = cp.branch_url(project.id, main)
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE t (v int)")
            conn.execute("INSERT INTO t VALUES (1)")
        # A branch with no endpoint keeps its data but runs nothing; its children copy files.
        quiet = cp.create_branch(project.id, name="quiet")
        grandchild = cp.create_branch(project.id, parent_id=quiet.id)
        endpoint = cp.create_endpoint(project.id, grandchild.id)
        with psycopg.connect(cp.branch_url(project.id, grandchild.id)) as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [(1,)]
        with pytest.raises(Conflict, match="already has a read_write endpoint"):
            cp.create_endpoint(project.id, grandchild.id)
        with pytest.raises(Conflict, match="child branches"):
            cp.delete_branch(project.id, quiet.id)
        with pytest.raises(Conflict, match="default branch"):
            cp.delete_branch(project.id, main)
        with pytest.raises(PasswordNotStored):
            cp.role_password(project.id, main, "neondb_owner")
        cp.set_store_password(project.id, True)
        with pytest.raises(NotFound, match="role nobody"):
            cp.role_password(project.id, main, "nobody")
        assert cp.resolve_host(endpoint.host)[1] == endpoint.port
        cp.stop_all()  # a reboot, say: data stays, endpoints wake when next read
        assert not accepts(endpoint.port)
        cp.wake(endpoint.id)
        with psycopg.connect(cp.branch_url(project.id, grandchild.id)) as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [(1,)]
        cp.delete_endpoint(project.id, endpoint.id)
        assert not accepts(endpoint.port)
        assert cp.data_dir(grandchild.id).is_dir()  # the branch keeps its data
    finally:
        cp.delete_project(project.id)
    with pytest.raises(NotFound):
        cp.get_project(project.id)
    assert not cp.data_dir(main).exists()


@pytest.mark.slow
def test_destroying_staging_stops_every_server(staging: tuple[Terraform, Any], home: Path) -> None:
    tf, _ = staging
    tf.run("destroy", "-auto-approve")
    state = json.loads((home / "local" / "neon" / "state.json").read_text())
    assert state["projects"] == {} and state["branches"] == {} and state["endpoints"] == {}
    assert postgres_processes(home) == []
    assert live_workers.running(home) == []
    assert json.loads((home / "local" / "cloudflare" / "state.json").read_text()) == {
        "hyperdrive": {},
        "workers": {},
    }
