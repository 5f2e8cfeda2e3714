"""Shared set-up for tests that run the wrapper on the fixture app against a real state server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from localcloud.net import free_port
from tests import procs

if TYPE_CHECKING:
    from backend.s3.credentials import Credential

REPO = Path(__file__).resolve().parent.parent
FIXTURE_APP = Path(__file__).resolve().parent / "fixture_app"
BIN = Path(sys.executable).parent


@dataclass
class Sandbox:
    """A copy of the fixture app with its own FORKSTAGE_HOME and state server port."""

    app: Path
    home: Path
    endpoint: str

    @classmethod
    def create(cls, tmp: Path) -> Sandbox:
        app = tmp / "app"
        shutil.copytree(FIXTURE_APP, app, ignore=shutil.ignore_patterns("cdktf.out", "__pycache__"))
        (app / "node_modules").symlink_to(REPO / "node_modules")
        return cls(app=app, home=tmp / "home", endpoint=f"http://127.0.0.1:{free_port()}")

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "TF_", "FORKSTAGE_", "CDKTF_")) and k != "STAGE"
        }
        env.update(
            {
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "FORKSTAGE_HOME": str(self.home),
                "FORKSTAGE_BACKEND_ENDPOINT": self.endpoint,
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            }
        )
        env.update(extra)
        return env

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """A command in the app folder with the sandbox's environment (never hangs: timeout)."""
        return procs.run(argv, cwd=self.app, env=self.env(), timeout=timeout)

    def forkstage(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return self.run([str(BIN / "forkstage"), *args], timeout)

    def bash(self, script: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """A shell line as a person would type it in the app folder."""
        return self.run(["bash", "-c", script], timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return procs.start([str(BIN / "forkstage"), *args], cwd=self.app, env=self.env())

    def admin_credential(self) -> Credential:
        from backend.s3.credentials import ensure_admin

        return ensure_admin(self.home / "state")

    def s3(self) -> Any:
        cred = self.admin_credential()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=cred.access_key_id,
            aws_secret_access_key=cred.secret_access_key,
            config=Config(s3={"addressing_style": "path"}),
        )

    def object_keys(self) -> list[str]:
        page = self.s3().list_objects_v2(Bucket="forkstage-state")
        return sorted(o["Key"] for o in page.get("Contents", []))

    def state(self, stage: str) -> dict[str, Any]:
        body = (
            self.s3()
            .get_object(Bucket="forkstage-state", Key=f"env:/{stage}/forkstage/terraform.tfstate")[
                "Body"
            ]
            .read()
        )
        state: dict[str, Any] = json.loads(body)
        return state

    def stop(self) -> None:
        self.forkstage("backend", "stop", timeout=30)
