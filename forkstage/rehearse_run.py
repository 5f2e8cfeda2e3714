"""The rehearsal's local pieces: the TLS state server, the fake APIs, the stand-in providers'
CLI config, the job environment; and the run over the rendered pipeline's jobs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from forkstage.engine import REHEARSAL_PROVIDERS_HOOK
from forkstage.preflight import LOOPBACK_STATE_HOOK
from forkstage.rehearse import Result, github_jobs, gitlab_jobs, run_job
from forkstage.rehearse_fakes import ACCOUNT, NEON_KEY, ORG, USER_TOKEN, serve_fake_apis

BUCKET = "forkstage-rehearsal"
REGION = "us-east-1"
SUBDOMAIN = "acme"


@dataclass
class Rehearsal:
    results: list[Result] = field(default_factory=list)
    comment: str = ""
    url: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.code == 0 for r in self.results)


def tls_files(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA: the venv trusts it by AWS_CA_BUNDLE)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@contextmanager
def state_server(work: Path) -> Iterator[dict[str, str]]:
    """`python -m backend serve` over TLS on 127.0.0.1: the pipeline's "remote" S3."""
    from backend.s3.credentials import ensure_admin

    cert, key = tls_files(work / "tls")
    data = work / "state"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "backend", "serve", "--quiet", "--port", str(port)]
    argv += ["--data", str(data), "--tls-cert", str(cert), "--tls-key", str(key)]
    argv += ["--bucket", BUCKET, "--region", REGION]
    log = (work / "state-server.log").open("w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no state server: see {work}/state-server.log") from None
                time.sleep(0.1)
        admin = ensure_admin(data)
        yield {
            "FORKSTAGE_BACKEND_ENDPOINT": f"https://127.0.0.1:{port}",
            "FORKSTAGE_STATE_ACCESS_KEY_ID": admin.access_key_id,
            "FORKSTAGE_STATE_SECRET_ACCESS_KEY": admin.secret_access_key,
            # one credential plays both roles here (the pipeline passes the PR-scoped one to PRs)
            "FORKSTAGE_PR_STATE_ACCESS_KEY_ID": admin.access_key_id,
            "FORKSTAGE_PR_STATE_SECRET_ACCESS_KEY": admin.secret_access_key,
            "AWS_CA_BUNDLE": str(cert),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def providers_config(home: Path) -> Path:
    """A Terraform CLI config whose provider_installation is the local cloud's stand-ins."""
    from localcloud.registry import provider_installation

    path = home / "rehearsal-terraform.rc"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by forkstage ci rehearse\n" + provider_installation(home))
    return path


def read_env_file(path: Path | None) -> dict[str, str]:
    found: dict[str, str] = {}
    if path is None:
        return found
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            found[key.strip()] = value.strip().strip('"')
    return found


def rehearse(
    target: str,
    *,
    files: dict[str, str],
    repo: Path,
    app_rel: str,
    work: Path,
    pr: int,
    pr_only: bool,
    env_file: Path | None,
    report: Callable[[Result], None],
) -> Rehearsal:
    """Run the rendered pipeline's jobs in CI's order; stop at the first failing step."""
    (text,) = files.values()
    doc = yaml.safe_load(text)
    jobs = (
        github_jobs(doc, pr_only=pr_only)
        if target == "github"
        else gitlab_jobs(doc, pr_only=pr_only)
    )
    outcome = Rehearsal()
    home = work / "home"
    with serve_fake_apis() as apis, state_server(work) as state:
        secrets = {
            "NEON_API_KEY": NEON_KEY,
            "NEON_ORG_ID": ORG,
            "CLOUDFLARE_API_TOKEN": USER_TOKEN,
            "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
            "CLOUDFLARE_WORKERS_SUBDOMAIN": SUBDOMAIN,
            "FORKSTAGE_BACKEND_BUCKET": BUCKET,
            "FORKSTAGE_BACKEND_REGION": REGION,
            **state,
        }
        secrets.update(read_env_file(env_file))
        runner_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "TF_", "FORKSTAGE_", "CDKTF_", "NEON_", "CLOUDFLARE_"))
            and k not in ("VIRTUAL_ENV", "PYTHONPATH", "STAGE")
        }
        runner_env.update(
            {
                "HOME": str(work / "runner-home"),
                "FORKSTAGE_HOME": str(home),
                REHEARSAL_PROVIDERS_HOOK: str(providers_config(home)),
                LOOPBACK_STATE_HOOK: "1",
                "FORKSTAGE_NEON_API_URL": f"{apis}/neon/api/v2",
                "FORKSTAGE_CLOUDFLARE_API_URL": f"{apis}/cf/client/v4",
                "AWS_CA_BUNDLE": state["AWS_CA_BUNDLE"],
                # forkstage's own S3 reads use Python's default TLS context: the same CA
                "SSL_CERT_FILE": state["AWS_CA_BUNDLE"],
                "PIP_NO_INDEX": "1",
                "PIP_NO_DEPS": "1",
                # forkstage itself is visible through the .pth: install the job's own anyway
                "PIP_IGNORE_INSTALLED": "1",
                "PIP_NO_BUILD_ISOLATION": "false",  # pip reads the negated option reversed
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            }
        )
        for key in ("PIP_FIND_LINKS",):
            if key in os.environ:
                runner_env[key] = os.environ[key]
        (work / "runner-home").mkdir(parents=True, exist_ok=True)
        ctx = {**secrets, "PR": str(pr), "COMMENT_FILE": str(work / "comment.md"), "OPEN_PRS": ""}
        # GitLab reads the variables straight from the environment (CI/CD variables)
        if target == "gitlab":
            runner_env.update(secrets)
        for job in jobs:
            job.env.update({k: v for k, v in job.env.items()})
            for result in run_job(
                job,
                target=target,
                repo=repo,
                app_rel=app_rel,
                work=work,
                ctx=ctx,
                runner_env=runner_env,
                report=report,
            ):
                outcome.results.append(result)
                if result.code != 0:
                    return outcome
                for line in result.output.splitlines():
                    if "worker_url" in line.lower() and "http" in line and not outcome.url:
                        outcome.url = line.split("=", 1)[-1].strip()
            summary = work / job.name / "checkout" / app_rel / "summary.md"
            if target == "gitlab" and job.name == "deploy-preview" and summary.exists():
                (work / "comment.md").write_text(
                    "<!-- forkstage-preview -->\n" + summary.read_text()
                )
            comment = work / "comment.md"
            if job.name == "deploy-preview" and comment.exists():
                outcome.comment = comment.read_text()  # the PR-opened comment is the one shown
            outputs = work / job.name / "github_output.txt"
            if job.name == "deploy-preview" and outputs.exists():
                for line in outputs.read_text().splitlines():
                    if line.startswith("worker_url="):
                        outcome.url = line.split("=", 1)[1]
            env_out = work / job.name / "checkout" / app_rel / "deploy.env"
            if job.name == "deploy-preview" and env_out.exists():
                for line in env_out.read_text().splitlines():
                    if line.startswith("WORKER_URL="):
                        outcome.url = line.split("=", 1)[1]
    return outcome
