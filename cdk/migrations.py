"""Run a stage's migrations on its own branch as part of ``terraform apply``.

A builtin ``terraform_data`` resource whose ``local-exec`` provisioner runs ``forkstage migrate``.
It is replaced, so the migrations run again, when the folder's content hash (computed at synth)
or the endpoint host changes; the runner itself is idempotent, so a re-run only applies what is
new. Hyperdrive and the Worker should depend on ``.resource`` so they never see an old schema.

No secret reaches cdk.tf.json: the URL is assembled by Terraform from references (the password is
the branch role password data source) and handed to the command in an environment variable that
``forkstage migrate --database-url-env`` reads; neither command line nor output contains it.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from pathlib import Path

from constructs import Construct

from cdk.core import (
    AssetType,
    ITerraformDependable,
    LocalExecProvisioner,
    TerraformAsset,
)
from cdk.postgres import url_expression
from cdk.stack import FormerScope
from cdk.terraform_data import TerraformData

URL_ENV = "FORKSTAGE_MIGRATE_DATABASE_URL"


def directory_digest(directory: Path) -> str:
    """sha256 over the folder's files (sorted relative paths and contents; dotfiles skipped)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"migrations folder {directory} does not exist")
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    for path in files:
        content = path.read_bytes()
        rel = path.relative_to(directory).as_posix().encode()
        digest.update(b"%d:%s\0%d:" % (len(rel), rel, len(content)))
        digest.update(content)
    return digest.hexdigest()


class BranchMigrations(Construct):
    """Apply ``directory`` to one branch database whenever its content or endpoint changes.

    ``former_scope``: where this step lived before it moved (see ``ForkstageStack.former_scope``);
    its step and its copy of the folder keep the addresses they had there, so a deployed stage
    neither re-runs its migrations nor plans a change.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        host: str,
        database: str,
        role: str,
        password: str,
        directory: Path,
        port: int | str = 5432,
        sslmode: str = "require",
        depends_on: Sequence[ITerraformDependable] | None = None,
        executable: str = "forkstage",
        former_scope: FormerScope | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.directory = Path(directory).resolve()
        self.content_hash = directory_digest(self.directory)
        # Copied into the synthesized stack (assets/...), so the config runs wherever it is
        # applied: the provisioner's working directory is the stack's folder.
        # The asset's folder (assets/<its logical id>/<hash>) is named after its place in the tree.
        self.asset = TerraformAsset(
            former_scope.scope if former_scope else self,
            "files",
            path=str(self.directory),
            type=AssetType.DIRECTORY,
        )
        url = url_expression(
            host=host, database=database, role=role, password=password, port=port, sslmode=sslmode
        )
        command = " ".join(
            [
                shlex.quote(executable),
                "migrate",
                "--database-url-env",
                URL_ENV,
                "--dir",
                shlex.quote(self.asset.path),
            ]
        )
        self.resource = TerraformData(
            self,
            "run",
            triggers_replace=[self.content_hash, host],
            provisioners=[
                LocalExecProvisioner(type="local-exec", command=command, environment={URL_ENV: url})
            ],
            depends_on=depends_on,
        )
        if former_scope is not None:
            self.resource.override_logical_id(former_scope.logical_id("run"))
