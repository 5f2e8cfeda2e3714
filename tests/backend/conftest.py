"""Fixtures for the state-server tests: a real server on loopback, boto3 clients, real Terraform."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from backend.s3 import credentials
from backend.s3.credentials import Credential
from backend.server import StateServer, make_server, serve_in_thread
from forkstage.engine import run_terraform, terraform_env
from localcloud.net import free_port as free_port  # re-exported: the tests import it from here

BUCKET = "forkstage-state"
STATE_KEY = "forkstage/terraform.tfstate"


@dataclass
class Running:
    server: StateServer
    data_dir: Path
    admin: Credential
    ca_bundle: Path | None = None

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def client(self, cred: Credential | None = None, **config: Any) -> Any:
        cred = cred or self.admin
        return s3_client(self.endpoint, cred, ca_bundle=self.ca_bundle, **config)

    def issue(self, **kwargs: Any) -> Credential:
        return credentials.issue(self.data_dir, **kwargs)


def s3_client(endpoint: str, cred: Credential, *, ca_bundle: Path | None = None, **cfg: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=cred.access_key_id,
        aws_secret_access_key=cred.secret_access_key,
        region_name="us-east-1",
        verify=str(ca_bundle) if ca_bundle else None,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            **cfg,
        ),
    )


def _start(data_dir: Path, **kwargs: Any) -> Iterator[Running]:
    server = make_server(data_dir=data_dir, **kwargs)
    thread = serve_in_thread(server)
    try:
        yield Running(server, data_dir, credentials.ensure_admin(data_dir))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def state_server(tmp_path: Path) -> Iterator[Running]:
    yield from _start(tmp_path / "state")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (the one `ci rehearse` serves)."""
    from forkstage.rehearse_run import tls_files as make_tls_files

    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(tmp_path: Path, tls_files: tuple[Path, Path]) -> Iterator[Running]:
    cert, key = tls_files
    for running in _start(tmp_path / "state-tls", certfile=cert, keyfile=key):
        running.ca_bundle = cert
        yield running


# -- Terraform --------------------------------------------------------------------------------


def backend_block(endpoint: str, *, key: str = STATE_KEY) -> str:
    return f"""
  backend "s3" {{
    bucket                      = "{BUCKET}"
    key                         = "{key}"
    region                      = "us-east-1"
    endpoints                   = {{ s3 = "{endpoint}" }}
    use_path_style              = true
    use_lockfile                = true
    skip_credentials_validation = true
    skip_requesting_account_id  = true
  }}
"""


@dataclass
class TerraformDir:
    path: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_terraform(list(args), cwd=self.path, env=self.env, timeout=timeout)

    def ok(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, (
            f"terraform {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        )
        return result


@pytest.fixture
def terraform_dir(tmp_path: Path) -> Callable[..., TerraformDir]:
    """Make a Terraform working directory whose credentials come only from the environment."""
    counter = iter(range(1000))

    def make(
        config: str,
        cred: Credential,
        *,
        ca_bundle: Path | None = None,
        extra: dict[str, str] | None = None,
    ) -> TerraformDir:
        folder = tmp_path / f"tf{next(counter)}"
        folder.mkdir()
        (folder / "main.tf").write_text(config)
        assert cred.secret_access_key not in config
        env_extra = {
            "AWS_ACCESS_KEY_ID": cred.access_key_id,
            "AWS_SECRET_ACCESS_KEY": cred.secret_access_key,
            "AWS_EC2_METADATA_DISABLED": "true",
            "TF_PLUGIN_CACHE_DIR": "",
        }
        if ca_bundle:
            env_extra["AWS_CA_BUNDLE"] = str(ca_bundle)
        env_extra.update(extra or {})
        env = terraform_env(tmp_path / "home", extra=env_extra)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
            env.pop(name, None)
        return TerraformDir(folder, env)

    return make


# -- subprocess server (for kill -9) -------------------------------------------------------------


def start_cli_server(data_dir: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    """``forkstage backend serve`` as a child process; returns once it accepts connections."""
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "forkstage"),
            "backend",
            "serve",
            "--port",
            str(port),
            "--data",
            str(data_dir),
            "--quiet",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return wait_listening(proc, port)


def wait_listening(proc: subprocess.Popen[str], port: int) -> subprocess.Popen[str]:
    """The server process, once its port accepts connections (RuntimeError if it exits)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


# -- raw signed requests (for what boto3 will not send) -----------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str:
        import re

        found = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return found.group(1).decode() if found else ""


def sign_headers(
    method: str,
    url: str,
    cred: Credential | None,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    when: dt.datetime | None = None,
    payload_hash: str | None = None,
) -> dict[str, str]:
    """SigV4-sign with botocore, optionally at another time (to test clock skew)."""
    import hashlib

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    hdrs = dict(headers or {})
    hdrs.setdefault("x-amz-content-sha256", payload_hash or hashlib.sha256(body).hexdigest())
    if cred is None:
        return hdrs
    request = AWSRequest(method=method, url=url, headers=hdrs, data=body)
    signer = S3SigV4Auth(Credentials(cred.access_key_id, cred.secret_access_key), "s3", "us-east-1")
    stamp = (when or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = stamp
    signer._modify_request_before_signing(request)
    del request.headers["x-amz-content-sha256"]
    request.headers["x-amz-content-sha256"] = hdrs["x-amz-content-sha256"]
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    signer._inject_signature_to_request(request, signature)
    return dict(request.headers.items())


def raw_request(
    endpoint: str,
    method: str,
    path: str,
    cred: Credential | None,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    when: dt.datetime | None = None,
    payload_hash: str | None = None,
    send_headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> RawResponse:
    """One request on its own connection; ``path`` is already percent-encoded."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    signed = sign_headers(
        method,
        endpoint + path,
        cred,
        headers=headers,
        body=body,
        when=when,
        payload_hash=payload_hash,
    )
    signed.update(send_headers or {})
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if not any(k.lower() == "host" for k in signed):
            conn.putheader("Host", parts.netloc)
        for k, v in signed.items():
            conn.putheader(k, v)
        if body and not any(k.lower() == "content-length" for k in signed):
            conn.putheader("Content-Length", str(len(body)))
        # the server may answer early and stop reading: its answer is still there to read
        with contextlib.suppress(OSError):
            conn.endheaders(body if body else None)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


# -- raw sockets and the module server (connections, malformed heads) ---------------------------


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def read_response(sock: socket.socket) -> RawResponse | None:
    """One HTTP response from a raw socket (None if the server closed without answering)."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            chunk = b""
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawResponse(int(lines[0].split(" ")[1]), headers, body[:length])


def raw_exchange(endpoint: str, payload: bytes, *, timeout: float = 10) -> RawResponse | None:
    """Send raw bytes on a fresh connection and read one answer."""
    with socket.create_connection(("127.0.0.1", port_of(endpoint)), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(payload)
        return read_response(sock)


def signed_head(
    endpoint: str,
    method: str,
    path: str,
    cred: Credential,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    payload_hash: str | None = None,
    wire_path: str | None = None,
) -> bytes:
    """A request head signed for ``path`` (sent as ``wire_path`` if given), for raw sockets."""
    signed = sign_headers(
        method, endpoint + path, cred, headers=headers, body=body, payload_hash=payload_hash
    )
    if not any(k.lower() == "host" for k in signed):
        signed["Host"] = endpoint.split("//", 1)[1]
    lines = [f"{method} {wire_path or path} HTTP/1.1"] + [f"{k}: {v}" for k, v in signed.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def start_module_server(
    data_dir: Path, port: int, *extra: str, preexec_fn: Callable[[], None] | None = None
) -> subprocess.Popen[str]:
    """``python -m backend serve`` as a child process; returns once it accepts connections."""
    command = [sys.executable, "-m", "backend", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--data", str(data_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    return wait_listening(proc, port)


def proc_status(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` value in kB (VmHWM, VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
