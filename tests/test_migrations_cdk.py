"""BranchMigrations: what it synthesizes, and (slow) a real apply that migrates a real database."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.pgfixture import Database

# pg_cluster: one PostgreSQL for the session; pg_db: a fresh database per test
pytest_plugins = ["tests.pgfixture"]


os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

URL_ENV = "FORKSTAGE_MIGRATE_DATABASE_URL"


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _synth(outdir: Path, build: Any) -> dict[str, Any]:
    from cdktf import App, LocalBackend, TerraformStack

    app = App(outdir=str(outdir))
    stack = TerraformStack(app, "pr")
    LocalBackend(stack, path=str(outdir.parent / "pr.tfstate"))
    build(stack)
    app.synth()
    return json.loads((outdir / "stacks" / "pr" / "cdk.tf.json").read_text())


def test_synth_has_terraform_data_with_hash_trigger_and_env_references(tmp_path: Path) -> None:
    from cdktf import TerraformDataSource, TerraformResource

    from cdk.migrations import BranchMigrations, directory_digest

    folder = _write(tmp_path / "migrations", {"0001_a.sql": "CREATE TABLE a (id int);"})
    made: dict[str, Any] = {}

    def build(stack: Any) -> None:
        endpoint = TerraformResource(stack, "ep", terraform_resource_type="neon_endpoint")
        password = TerraformDataSource(
            stack, "pw", terraform_resource_type="neon_branch_role_password"
        )
        password.add_override("role_name", "app_owner")
        made["m"] = BranchMigrations(
            stack,
            "migrations",
            host=endpoint.get_string_attribute("host"),
            database="app",
            role="app_owner",
            password=password.get_string_attribute("password"),
            directory=folder,
            depends_on=[endpoint],
        )
        # what the stack does with it: Hyperdrive waits for the schema
        TerraformResource(
            stack, "hd", terraform_resource_type="cloudflare_hyperdrive_config",
            depends_on=[made["m"].resource],
        )  # fmt: skip

    doc = _synth(tmp_path / "out", build)
    migrations = made["m"]
    assert migrations.content_hash == directory_digest(folder)

    [(name, data)] = doc["resource"]["terraform_data"].items()
    assert data["triggers_replace"] == [migrations.content_hash, "${neon_endpoint.ep.host}"]
    assert data["depends_on"] == ["neon_endpoint.ep"]
    [provisioner] = data["provisioner"]
    # the folder travels with the stack as a cdktf asset; local-exec runs in the stack's folder
    command = provisioner["local-exec"]["command"]
    prefix = f"forkstage migrate --database-url-env {URL_ENV} --dir assets/"
    assert command.startswith(prefix), command
    copied = tmp_path / "out" / "stacks" / "pr" / command.split(" --dir ")[1]
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name for p in folder.iterdir())
    assert provisioner["local-exec"]["environment"] == {
        URL_ENV: 'postgresql://${replace(urlencode("app_owner"), "+", "%20")}:'
        '${replace(urlencode(data.neon_branch_role_password.pw.password), "+", "%20")}'
        '@${neon_endpoint.ep.host}:5432/${replace(urlencode("app"), "+", "%20")}?sslmode=require'
    }
    hd = doc["resource"]["cloudflare_hyperdrive_config"]["hd"]
    assert hd["depends_on"] == [f"terraform_data.{name}"]
    # the password exists only as a reference: no attribute anywhere holds a value for it
    assert "password" not in doc["data"]["neon_branch_role_password"]["pw"]
    outside_references = re.sub(r"\$\{[^}]*\}", "", json.dumps(doc))
    assert "password" not in outside_references.replace("neon_branch_role_password", "")


def test_content_hash_follows_content_and_names_only(tmp_path: Path) -> None:
    from cdk.migrations import directory_digest

    folder = _write(tmp_path / "m", {"0001_a.sql": "A", "0002_b.sql": "B"})
    first = directory_digest(folder)
    os.utime(folder / "0001_a.sql", (1, 1))
    (folder / ".DS_Store").write_text("noise")
    assert directory_digest(folder) == first  # mtimes and dotfiles do not count
    (folder / "0002_b.sql").write_text("B2")
    edited = directory_digest(folder)
    assert edited != first
    (folder / "0002_b.sql").rename(folder / "0003_b.sql")
    assert directory_digest(folder) not in (first, edited)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        directory_digest(tmp_path / "absent")


@pytest.mark.slow
def test_terraform_apply_runs_migrations_on_the_branch(pg_db: Database, tmp_path: Path) -> None:
    """The real engine applies the stack; local-exec runs `forkstage migrate` on a real database."""
    from cdktf import TerraformVariable

    from cdk.migrations import BranchMigrations
    from forkstage.engine import run_terraform, terraform_env

    folder = _write(tmp_path / "migrations", {"0001_notes.sql": "CREATE TABLE notes (b text);"})

    def build(stack: Any) -> None:
        secret = TerraformVariable(stack, "db_password", type="string", sensitive=True)
        BranchMigrations(
            stack,
            "migrations",
            host="127.0.0.1",
            port=pg_db.cluster.port,
            database=pg_db.name,
            role="postgres",
            password=secret.string_value,
            directory=folder,
            sslmode="disable",
        )

    out = tmp_path / "out"
    password = pg_db.cluster.password or ""
    assert " " in password and "@" in password  # the URL must survive encoding
    env = terraform_env(tmp_path / "home", extra={"TF_VAR_db_password": password})
    stack_dir = out / "stacks" / "pr"

    def apply() -> str:
        done = run_terraform(["apply", "-auto-approve", "-input=false"], cwd=stack_dir, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert password not in done.stdout + done.stderr
        return done.stdout

    synth = _synth(out, build)
    assert password not in json.dumps(synth)
    init = run_terraform(["init", "-input=false"], cwd=stack_dir, env=env)
    assert init.returncode == 0, init.stdout + init.stderr
    apply()
    history = "SELECT name FROM forkstage.schema_migrations ORDER BY name"
    assert pg_db.query(history) == [("0001_notes.sql",)]
    assert "No changes." in apply()  # same folder, same host: nothing runs again

    _write(folder, {"0002_more.sql": "ALTER TABLE notes ADD COLUMN n int;"})
    _synth(out, build)
    assert "1 added, 0 changed, 1 destroyed" in apply()
    assert pg_db.query(history) == [("0001_notes.sql",), ("0002_more.sql",)]
    assert pg_db.query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'n'")[
        0
    ] == (1,)
