"""The rehearsal's local pieces: the TLS state server, the fake APIs, the stand-in providers'
CLI config, the job environment; and the run over the rendered pipeline's jobs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from forkstage.engine import REHEARSAL_PROVIDERS_HOOK
from forkstage.preflight import LOOPBACK_STATE_HOOK
from forkstage.rehearse import Result, github_jobs, gitlab_jobs, run_job
from forkstage.rehearse_fakes import (
    ACCOUNT,
    GITLAB_TOKEN,
    NEON_KEY,
    ORG,
    USER_TOKEN,
    notes_of,
    serve_fake_apis,
)

BUCKET = "forkstage-rehearsal"
REGION = "us-east-1"
SUBDOMAIN = "acme"


@dataclass
class Rehearsal:
    """Each step's result (and the rehearsal's own checks, job ``rehearsal``), the PR-opened
    comment, the environment URL, what the preview Worker answered and staging's serials."""

    results: list[Result] = field(default_factory=list)
    comment: str = ""
    comment_file: str = ""
    url: str = ""
    worker: dict[str, Any] = field(default_factory=dict)
    staging_serial: dict[str, int | None] = field(default_factory=dict)

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


def state_serial(secrets: dict[str, str], stage: str) -> int | None:
    """The serial of ``stage``'s state in the rehearsal's S3 (None: no state), read over TLS
    with the owner's credential, as any S3 client would."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=secrets["FORKSTAGE_BACKEND_ENDPOINT"],
        region_name=secrets["FORKSTAGE_BACKEND_REGION"],
        aws_access_key_id=secrets["FORKSTAGE_STATE_ACCESS_KEY_ID"],
        aws_secret_access_key=secrets["FORKSTAGE_STATE_SECRET_ACCESS_KEY"],
        verify=secrets["AWS_CA_BUNDLE"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )
    bucket = secrets["FORKSTAGE_BACKEND_BUCKET"]
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"env:/{stage}/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(".tfstate"))
    if not keys:
        return None
    raw = client.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    return int(json.loads(raw)["serial"])


def _script_of(url: str) -> str:
    """The Worker script behind a workers.dev URL: its host's first label
    (``<script>.<subdomain>.workers.dev``)."""
    return (urlsplit(url).hostname or "").split(".")[0]


def probe_worker(home: Path, url: str) -> tuple[Result, dict[str, Any]]:
    """GET /health of the preview Worker the local cloud runs for the environment URL."""
    from localcloud import live_workers

    started = time.monotonic()
    script = _script_of(url)
    name = f"the preview Worker answers: GET {url}/health"
    worker = live_workers.attach(home, script) if script else None
    if worker is None:
        why = f"no Worker {script!r} runs in the local cloud" if script else "no environment URL"
        return Result("rehearsal", name, 1, 0.0, why), {"url": url, "error": why}
    local = str(worker.url).rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(local, timeout=30) as answer:  # loopback only
            status, text = answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        status, text = 0, str(exc)
    seen = {"url": url, "local_url": local, "status": status, "body": text[:2000]}
    code = 0 if status == 200 else 1
    out = f"{local} (stands in for {url}): {status} {text[:500]}"
    return Result("rehearsal", name, code, time.monotonic() - started, out), seen


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
    owner: str = "staging",
) -> Rehearsal:
    """Run the rendered pipeline's jobs in CI's order; stop at the first failing step.

    Between jobs the rehearsal checks what CI cannot show: after the PR-opened job the preview
    Worker answers; after the PR-closed job staging's state serial is what it was before the
    pull request's jobs and the preview Worker is gone. Its local cloud stops at the end."""
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
            **({"FORKSTAGE_GITLAB_TOKEN": GITLAB_TOKEN} if target == "gitlab" else {}),
            **state,
        }
        secrets.update(read_env_file(env_file))
        runner_env = _runner_env(work, home, apis, state)
        ctx = {**secrets, "PR": str(pr), "OPEN_PRS": "", "GITLAB_API": f"{apis}/gitlab/api/v4"}
        # GitLab reads the variables straight from the environment (CI/CD variables)
        if target == "gitlab":
            runner_env.update(secrets)
        try:
            for job in jobs:
                if job.name == "deploy-preview":
                    outcome.staging_serial["before"] = state_serial(secrets, owner)
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
                checks = _after(
                    job.name, target, outcome, work, app_rel, apis, secrets, owner, str(pr)
                )
                for check in checks:
                    report(check)
                    outcome.results.append(check)
                    if check.code != 0:
                        return outcome
        finally:
            _stop_local_cloud(home)
    return outcome


def _after(
    job: str,
    target: str,
    outcome: Rehearsal,
    work: Path,
    app_rel: str,
    apis: str,
    secrets: dict[str, str],
    owner: str,
    pr: str,
) -> list[Result]:
    """What the rehearsal keeps of a job (comment, URL) and checks after it."""
    root = work / job
    if job == "deploy-preview":
        comment = root / "comment.md"
        if target == "gitlab":  # the note the job's own script posted to the GitLab stand-in
            posted = notes_of(apis, pr)
            if posted:
                comment.write_text(posted[-1]["body"])
        if comment.exists():
            outcome.comment, outcome.comment_file = comment.read_text(), str(comment)
        outcome.url = _environment_url(root, app_rel) or outcome.url
        check, outcome.worker = probe_worker(work / "home", outcome.url)
        return [check]
    if job == "destroy-preview" and "before" in outcome.staging_serial:
        before = outcome.staging_serial["before"]
        after = outcome.staging_serial["after"] = state_serial(secrets, owner)
        name = f"the pull request's jobs left {owner} unchanged: serial {before} -> {after}"
        same = Result("rehearsal", name, 0 if before == after and before is not None else 1, 0.0)
        script = _script_of(outcome.url)
        from localcloud import live_workers

        alive = bool(script) and live_workers.attach(work / "home", script) is not None
        gone = Result("rehearsal", f"the preview Worker {script} is gone", int(alive), 0.0)
        return [same, gone]
    return []


def _environment_url(root: Path, app_rel: str) -> str:
    """GitHub: the outputs step's worker_url; GitLab: the dotenv report's WORKER_URL."""
    for path, key in (
        (root / "github_output.txt", "worker_url="),
        (root / "checkout" / app_rel / "deploy.env", "WORKER_URL="),
    ):
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith(key):
                    return line.split("=", 1)[1]
    return ""


def _runner_env(work: Path, home: Path, apis: str, state: dict[str, str]) -> dict[str, str]:
    """The runner's environment: this one without forkstage's, Terraform's or the clouds'
    variables, plus the three local pieces and an offline pip."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TF_", "FORKSTAGE_", "CDKTF_", "NEON_", "CLOUDFLARE_"))
        and k not in ("VIRTUAL_ENV", "PYTHONPATH", "STAGE")
    }
    env.update(
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
    if "PIP_FIND_LINKS" in os.environ:
        env["PIP_FIND_LINKS"] = os.environ["PIP_FIND_LINKS"]
    (work / "runner-home").mkdir(parents=True, exist_ok=True)
    return env


def _stop_local_cloud(home: Path) -> None:
    """The rehearsal's Workers and PostgreSQL servers (its own home): nothing outlives it."""
    from localcloud import live_workers
    from localcloud.neon import ControlPlane

    live_workers.stop_all(home)
    ControlPlane(home).stop_all()
