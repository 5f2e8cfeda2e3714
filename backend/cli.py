"""``forkstage backend``: run the state server, hand out credentials, inspect and roll back state.

``serve`` and ``credentials`` work on the local data directory; ``versions``, ``rollback`` and
``bootstrap`` speak the plain S3 API through boto3 so they work against real S3 as well.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from forkstage.errors import BadInput, Failed, Refused

DEFAULT_PORT = 4599
DEFAULT_BUCKET = "forkstage-state"
_MARKERS = ("forkstage.toml", "cdktf.json")


def default_data_dir() -> Path:
    """``$FORKSTAGE_HOME/state``, else ``<project>/.forkstage/state``."""
    home = os.environ.get("FORKSTAGE_HOME")
    if home:
        return Path(home).resolve() / "state"
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if any((folder / m).is_file() for m in _MARKERS):
            return folder / ".forkstage" / "state"
    return here / ".forkstage" / "state"


def _data_option(fn: Any) -> Any:
    return click.option(
        "--data",
        "data_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="State directory (default $FORKSTAGE_HOME/state or .forkstage/state).",
    )(fn)


@click.group("backend")
def backend() -> None:
    """The Terraform state server (an S3-compatible backend) and its tools.

    Example: forkstage backend serve --port 4599
    """


@backend.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="0 picks one.")
@_data_option
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--retain", default=100, show_default=True, type=int, help="Versions kept per key.")
@click.option("--bucket", default=DEFAULT_BUCKET, show_default=True, help="Bucket made at start.")
@click.option("--quiet", is_flag=True, help="Do not log one line per request.")
def serve(
    host: str,
    port: int,
    data_dir: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    retain: int,
    bucket: str,
    quiet: bool,
) -> None:
    """Run the state server in the foreground until interrupted.

    Example: forkstage backend serve --port 4599 --data .forkstage/state
    """
    from backend.errors import S3Error
    from backend.server import ServerBusy, make_server
    from backend.store import validate_bucket_name

    if (tls_cert is None) != (tls_key is None):
        raise BadInput("--tls-cert and --tls-key go together: give both or neither")
    if retain < 1:
        raise BadInput("--retain must be at least 1")
    if not 0 <= port <= 65535:
        raise BadInput("--port must be between 0 and 65535")
    try:
        validate_bucket_name(bucket)
    except S3Error:
        raise BadInput(f"invalid bucket name {bucket!r}") from None
    data = data_dir or default_data_dir()

    def log(line: str) -> None:
        stamp = dt.datetime.now().strftime("%H:%M:%S.%f")[:-3]
        click.echo(f"{stamp} {line}", err=True)

    try:
        server = make_server(
            host=host,
            port=port,
            data_dir=data,
            certfile=tls_cert,
            keyfile=tls_key,
            bucket=bucket,
            retain=retain,
            log=None if quiet else log,
        )
    except ServerBusy as exc:
        raise Refused(str(exc)) from None
    except OSError as exc:
        raise Failed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise BadInput(str(exc)) from None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"forkstage state server listening on {server.endpoint} (bucket {bucket})")
    click.echo(f"credentials file: {server.credentials_file}")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    click.echo("state server stopped")


@backend.command("credentials")
@click.option("--policy", type=click.Choice(["admin", "stage"]), required=True)
@click.option("--stage", default=None, help="Workspace the credential owns (policy stage).")
@click.option(
    "--read-outputs",
    multiple=True,
    help="Workspace whose non-sensitive outputs it may read (repeat or comma-separate).",
)
@_data_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def credentials_cmd(
    policy: str,
    stage: str | None,
    read_outputs: tuple[str, ...],
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Print (creating it once) the credential for a policy, stage and read-outputs set.

    Example: forkstage backend credentials --policy stage --stage pr-147 --read-outputs staging
    """
    from backend import credentials

    reads = [r.strip() for item in read_outputs for r in item.split(",") if r.strip()]
    data = data_dir or default_data_dir()
    try:
        cred = credentials.issue(data, policy=policy, stage=stage, read_outputs=reads)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if as_json:
        click.echo(json.dumps(cred.to_json(), indent=2))
        return
    click.echo(f"AWS_ACCESS_KEY_ID={cred.access_key_id}")
    click.echo(f"AWS_SECRET_ACCESS_KEY={cred.secret_access_key}")


def _client(endpoint: str | None, data_dir: Path | None, region: str) -> Any:
    """boto3 S3 client: env credentials, else the embedded server's admin credential."""
    import boto3
    from botocore.config import Config

    from backend import credentials

    akid = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (akid and secret):
        data = data_dir or default_data_dir()
        admins = [c for c in _load(data) if c.policy == "admin"]
        if not admins:
            raise BadInput(
                f"no credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or start the "
                f"server once so {credentials.path_for(data)} exists"
            )
        akid, secret = admins[0].access_key_id, admins[0].secret_access_key
        endpoint = endpoint or f"http://127.0.0.1:{DEFAULT_PORT}"
    config = Config(
        s3={"addressing_style": "path"} if endpoint else {},
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN"),
        region_name=region,
        config=config,
    )


def _load(data: Path) -> list[Any]:
    from backend import credentials

    try:
        return credentials.load(data)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read {credentials.path_for(data)}: {exc}") from None


def _s3_options(fn: Any) -> Any:
    fn = click.option(
        "--endpoint",
        envvar="FORKSTAGE_STATE_ENDPOINT",
        default=None,
        help="S3 endpoint URL (default: the local server when using its credentials file).",
    )(fn)
    fn = click.option("--bucket", default=DEFAULT_BUCKET, show_default=True)(fn)
    fn = click.option("--region", default="us-east-1", show_default=True)(fn)
    return _data_option(fn)


def _failed(exc: Exception) -> Failed:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return Failed(f"S3 said {err.get('Code')}: {err.get('Message')}")
    return Failed(f"cannot reach the state store: {exc}")


@backend.command("versions")
@click.option("--stage", required=True, help="Workspace whose state history to list.")
@click.option("--key", default="forkstage/terraform.tfstate", show_default=True)
@_s3_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def versions_cmd(
    stage: str,
    key: str,
    endpoint: str | None,
    bucket: str,
    region: str,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """List the stored versions of a stage's Terraform state, newest first.

    Example: forkstage backend versions --stage staging --json
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from backend import history

    s3 = _client(endpoint, data_dir, region)
    target = history.state_key(stage, key)
    try:
        found = history.list_versions(s3, bucket, target)
    except (ClientError, BotoCoreError) as exc:
        raise _failed(exc) from None
    if as_json:
        payload = {"key": target, "versions": [v.to_json() for v in found]}
        click.echo(json.dumps(payload, indent=2))
        return
    if not found:
        click.echo(f"no versions of {target}")
        return
    click.echo(f"{'VERSION ID':<28} {'LAST MODIFIED (UTC)':<20} {'SIZE':>9} {'SERIAL':>6}  LATEST")
    for v in found:
        when = v.last_modified.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        size = "deleted" if v.deleted else str(v.size)
        serial = "" if v.serial is None else str(v.serial)
        latest = "*" if v.latest else ""
        click.echo(f"{v.version_id:<28} {when:<20} {size:>9} {serial:>6}  {latest}")


@backend.command("rollback")
@click.option("--stage", required=True, help="Workspace whose state to roll back.")
@click.option("--version", "version_id", required=True, help="Version id from `versions`.")
@click.option("--key", default="forkstage/terraform.tfstate", show_default=True)
@_s3_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rollback_cmd(
    stage: str,
    version_id: str,
    key: str,
    endpoint: str | None,
    bucket: str,
    region: str,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Restore an older state version as the newest one (refused while the stage is locked).

    Example: forkstage backend rollback --stage staging --version 0662a1b2c3d4e5f6a7b8c9d0
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from backend import history

    s3 = _client(endpoint, data_dir, region)
    target = history.state_key(stage, key)
    try:
        new_version, serial = history.rollback(s3, bucket, target, version_id)
    except history.Locked as exc:
        raise Refused(f"{exc}; wait for the running Terraform or force-unlock it") from None
    except (history.NotFound, history.NotAState) as exc:
        raise BadInput(f"{exc}; list versions with `forkstage backend versions`") from None
    except (ClientError, BotoCoreError) as exc:
        raise _failed(exc) from None
    if as_json:
        click.echo(
            json.dumps(
                {"key": target, "restored": version_id, "version_id": new_version, "serial": serial}
            )
        )
        return
    click.echo(f"restored {version_id} of {target} as version {new_version} (serial {serial})")


@backend.command("bootstrap")
@click.option("--bucket", required=True, help="Bucket to create or harden.")
@click.option("--endpoint", default=None, help="S3 endpoint URL (R2: the account endpoint).")
@click.option("--region", default=None, help="Region (default us-east-1; auto for R2).")
@click.option("--r2", is_flag=True, help="Cloudflare R2: skip what R2 does not support.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bootstrap_cmd(
    bucket: str, endpoint: str | None, region: str | None, r2: bool, as_json: bool
) -> None:
    """Create a real S3/R2 state bucket: versioning, encryption, no public access, TLS only.

    Example: forkstage backend bootstrap --bucket acme-tfstate --region eu-west-1
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from backend.bootstrap import bootstrap
    from backend.errors import S3Error
    from backend.store import validate_bucket_name

    try:
        validate_bucket_name(bucket)
    except S3Error:
        raise BadInput(f"invalid bucket name {bucket!r}: 3-63 of a-z 0-9 . -") from None
    if r2 and not endpoint:
        raise BadInput("--r2 needs --endpoint https://<account-id>.r2.cloudflarestorage.com")
    region = region or ("auto" if r2 else "us-east-1")
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"} if endpoint else {},
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )
    try:
        steps = bootstrap(s3, bucket, region=region, r2=r2)
    except NoCredentialsError:
        raise BadInput(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except (ClientError, BotoCoreError) as exc:
        raise _failed(exc) from None
    if as_json:
        click.echo(json.dumps({"bucket": bucket, "steps": [s.to_json() for s in steps]}, indent=2))
        return
    for step in steps:
        click.echo(f"{step.name}: {step.status}" + (f" ({step.detail})" if step.detail else ""))
