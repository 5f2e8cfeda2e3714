"""``forkstage backend``: run the state server, hand out credentials, inspect and roll back state.

Every sub-command reads the backend the way ``deploy`` does: ``forkstage.toml`` ``[backend]``
with the ``FORKSTAGE_BACKEND_KIND|ENDPOINT|BUCKET`` overrides, and the credentials of
``forkstage.state.admin_env`` (the embedded admin key, or ``FORKSTAGE_STATE_ACCESS_KEY_ID`` /
``AWS_ACCESS_KEY_ID``). Flags only override single values. The server itself is the ``backend``
package (``python -m backend serve`` runs it without this CLI).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from cdk.settings import BackendSettings
from forkstage import embedded
from forkstage.context import Project
from forkstage.errors import BadInput, Failed, ForkstageError, Refused
from forkstage.state import backend_client
from forkstage.stateadmin import detached_target, health, open_admin, s3_failed, target_of

_SERVE_ERRORS: dict[int, type[ForkstageError]] = {2: BadInput, 3: Refused}


def _data_option(fn: Any) -> Any:
    return click.option(
        "--data",
        "data_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="State directory (default $FORKSTAGE_HOME/state, else .forkstage/state).",
    )(fn)


@click.group("backend")
def backend() -> None:
    """The Terraform state server (an S3-compatible backend) and its tools.

    Example: forkstage backend versions --stage staging
    """


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _limit_options(fn: Any) -> Any:
    """Every state-server limit as a flag, from the server's own table (one source of truth)."""
    from backend.limits import DEFAULT_LIMITS
    from backend.serve import LIMIT_OPTIONS

    for option in reversed(LIMIT_OPTIONS):
        default = getattr(DEFAULT_LIMITS, option.field)
        shown = (
            _size(default).replace(".0 ", "").replace(" ", "") if option.kind == "size" else default
        )
        fn = click.option(
            option.flag,
            option.dest,
            default=None,
            metavar=option.metavar,
            help=f"{option.help} [default: {shown}]",
        )(fn)
    return fn


@backend.command("serve")
@click.option("--host", default=None, help="Address to bind (default: the embedded endpoint's).")
@click.option("--port", default=None, type=int, help="Default: the embedded endpoint's; 0 picks.")
@_data_option
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--bucket", default=None, help="Bucket made at start (default: the settings').")
@click.option(
    "--region", default=None, help="Signing region clients must use (default: the settings')."
)
@click.option("--quiet", is_flag=True, help="Do not log one line per request.")
@_limit_options
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    bucket: str | None,
    region: str | None,
    quiet: bool,
    **limit_options: str | None,
) -> None:
    """Run the state server in the foreground until interrupted (where other commands look).

    Every limit (connections, deadlines, sizes, quotas, retention, disk reserve) has a flag;
    docs/state-server.md lists them with their defaults.

    Example: forkstage backend serve --port 4599 --max-connections 512 --max-object-size 128MiB
    """
    from backend.limits import DEFAULT_LIMITS
    from backend.serve import DEFAULT_HOST, DEFAULT_PORT, ServeError, limits_from_options, run

    project = Project.unless_given(data_dir is not None, flags="--data DIR")
    configured = project.settings.backend if project else BackendSettings()
    parts = urlsplit(configured.endpoint if configured.embedded else "")
    try:
        run(
            data_dir=data_dir or embedded.data_dir(Project.load().home),
            host=host or parts.hostname or DEFAULT_HOST,
            port=(parts.port or DEFAULT_PORT) if port is None else port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            limits=limits_from_options(DEFAULT_LIMITS, **limit_options),
            bucket=bucket or configured.bucket,
            quiet=quiet,
            region=region or configured.region,
        )
    except ServeError as exc:
        raise _SERVE_ERRORS.get(exc.exit_code, Failed)(str(exc)) from None


@backend.command("start")
def start() -> None:
    """Start the embedded state server in the background (no-op when it already answers).

    Example: forkstage backend start
    """
    project = Project.load()
    configured = project.settings.backend
    if not configured.embedded:
        raise BadInput(f"the configured backend is {configured.endpoint}, not the embedded server")
    embedded.ensure_running(configured, project.home)
    click.echo(f"state server: {configured.endpoint} (log: {embedded.log_file(project.home)})")


@backend.command("stop")
def stop() -> None:
    """Stop the embedded state server this project's commands started.

    Example: forkstage backend stop
    """
    if embedded.stop(Project.load().home):
        click.echo("state server stopped")
    else:
        click.echo("no state server was running")


@backend.command("status")
@click.option("--endpoint", default=None, help="State server URL (default: the settings').")
@click.option("--json", "as_json", is_flag=True, help="Print the health document as JSON.")
def status_cmd(endpoint: str | None, as_json: bool) -> None:
    """Whether the state server answers, its free disk space against the reserve, connections.

    Exit 1 when nothing answers or free space is below the reserve (writes are refused then).

    Example: forkstage backend status --json
    """
    project = Project.unless_given(bool(endpoint), flags="--endpoint URL")
    target = (
        target_of(project, endpoint=endpoint) if project else detached_target(endpoint=endpoint)
    )
    if not target.embedded and not endpoint:
        raise BadInput(
            f"the configured backend is {target.endpoint or 'AWS S3'}, not a forkstage state "
            "server; pass --endpoint of one to read its health"
        )
    doc = health(target.endpoint)
    low = int(doc.get("free_bytes", 0)) < int(doc.get("reserve_bytes", 0))
    if as_json:
        click.echo(json.dumps({"endpoint": target.endpoint, **doc}, indent=2))
    else:
        click.echo(f"state server: {target.endpoint}")
        below = ", BELOW: writes refused" if low else ""
        reserve = _size(int(doc["reserve_bytes"]))
        click.echo(f"free space: {_size(int(doc['free_bytes']))} (reserve {reserve}{below})")
        click.echo(f"connections: {doc['connections']} of {doc['max_connections']}")
    if low:
        raise Failed("free space is below the state server's reserve: free disk space")


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
    """Print (creating it once) the embedded server's credential for a policy, stage and reads.

    Example: forkstage backend credentials --policy stage --stage pr-147 --read-outputs staging
    """
    from backend.s3 import credentials

    reads = [r.strip() for item in read_outputs for r in item.split(",") if r.strip()]
    data = data_dir or embedded.data_dir(Project.load().home)
    try:
        cred = credentials.issue(data, policy=policy, stage=stage, read_outputs=reads)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if as_json:
        click.echo(json.dumps(cred.to_json(), indent=2))
        return
    click.echo(f"AWS_ACCESS_KEY_ID={cred.access_key_id}")
    click.echo(f"AWS_SECRET_ACCESS_KEY={cred.secret_access_key}")


def _s3_options(fn: Any) -> Any:
    fn = click.option("--region", default=None, help="Region (default: the settings').")(fn)
    fn = click.option("--key", default=None, help="State key (default: the settings').")(fn)
    fn = click.option("--bucket", default=None, help="Bucket (default: the settings').")(fn)
    return click.option(
        "--endpoint", default=None, help="S3 endpoint URL (default: the settings')."
    )(fn)


@backend.command("versions")
@click.option("--stage", required=True, help="Workspace whose state history to list.")
@_s3_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def versions_cmd(
    stage: str,
    endpoint: str | None,
    bucket: str | None,
    key: str | None,
    region: str | None,
    as_json: bool,
) -> None:
    """List the stored versions of a stage's Terraform state, newest first.

    Example: forkstage backend versions --stage staging --json
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from backend import history

    target, s3 = open_admin(endpoint=endpoint, bucket=bucket, key=key, region=region)
    state_key = history.state_key(stage, target.key)
    try:
        found = history.list_versions(s3, target.bucket, state_key)
    except (ClientError, BotoCoreError) as exc:
        raise s3_failed(exc, target) from None
    if as_json:
        payload = {"key": state_key, "versions": [v.to_json() for v in found]}
        click.echo(json.dumps(payload, indent=2))
        return
    if not found:
        click.echo(f"no versions of {state_key}")
        return
    click.echo(
        f"{'VERSION ID':<28} {'LAST MODIFIED (UTC)':<20} {'SIZE':>9} {'SERIAL':>6}  "
        f"{'KEPT UNTIL (UTC)':<22} LATEST"
    )
    for v in found:
        when = v.last_modified.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        size = "deleted" if v.deleted else str(v.size)
        serial = "" if v.serial is None else str(v.serial)
        latest = "*" if v.latest else ""
        click.echo(f"{v.version_id:<28} {when:<20} {size:>9} {serial:>6}  {_kept(v):<22} {latest}")


def _kept(v: Any) -> str:
    """Until when the server keeps a version: always for the newest, else date and writes."""
    if v.latest:
        return "always (newest)"
    if v.expires is None:
        return "-"  # the bucket's own lifecycle rules decide (AWS S3, R2)
    return f"{v.expires.astimezone(dt.UTC):%Y-%m-%d} or {v.writes_left} writes"


@backend.command("rollback")
@click.option("--stage", required=True, help="Workspace whose state to roll back.")
@click.option("--version", "version_id", required=True, help="Version id from `versions`.")
@_s3_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rollback_cmd(
    stage: str,
    version_id: str,
    endpoint: str | None,
    bucket: str | None,
    key: str | None,
    region: str | None,
    as_json: bool,
) -> None:
    """Restore an older state version as the newest one (refused while the stage is locked).

    Example: forkstage backend rollback --stage staging --version 0662a1b2c3d4e5f6a7b8c9d0
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from backend import history

    target, s3 = open_admin(endpoint=endpoint, bucket=bucket, key=key, region=region)
    state_key = history.state_key(stage, target.key)
    try:
        new_version, serial = history.rollback(s3, target.bucket, state_key, version_id)
    except history.Locked as exc:
        raise Refused(f"{exc}; wait for the running Terraform or force-unlock it") from None
    except (history.NotFound, history.NotAState) as exc:
        raise BadInput(f"{exc}; list versions with `forkstage backend versions`") from None
    except (ClientError, BotoCoreError) as exc:
        raise s3_failed(exc, target) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "key": state_key,
                    "restored": version_id,
                    "version_id": new_version,
                    "serial": serial,
                }
            )
        )
        return
    click.echo(f"restored {version_id} of {state_key} as version {new_version} (serial {serial})")


@backend.command("bootstrap")
@click.option("--bucket", default=None, help="Bucket to create or harden (default: the settings').")
@click.option("--endpoint", default=None, help="S3 endpoint URL (R2: the account endpoint).")
@click.option("--region", default=None, help="Region (default: the settings'; auto for R2).")
@click.option("--r2", is_flag=True, help="Cloudflare R2: skip what R2 does not support.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bootstrap_cmd(
    bucket: str | None, endpoint: str | None, region: str | None, r2: bool, as_json: bool
) -> None:
    """Create a real S3/R2 state bucket: versioning, encryption, no public access, TLS only.

    Defaults come from the settings when they name an S3 backend; the credentials are the
    caller's (FORKSTAGE_STATE_ACCESS_KEY_ID or AWS_ACCESS_KEY_ID), never the embedded server's.

    Example: forkstage backend bootstrap --bucket acme-tfstate --region eu-west-1
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from backend.bootstrap import bootstrap
    from backend.errors import S3Error
    from backend.store.store import validate_bucket_name

    project = Project.unless_given(bool(bucket), flags="--bucket")
    configured = project.settings.backend if project else BackendSettings()
    real = None if configured.embedded else configured
    bucket = bucket or (real.bucket if real else None)
    if not bucket:
        raise BadInput("--bucket is required: the configured backend is the embedded server")
    try:
        validate_bucket_name(bucket)
    except S3Error:
        raise BadInput(f"invalid bucket name {bucket!r}: 3-63 of a-z 0-9 . -") from None
    endpoint = endpoint or (real.endpoint if real else "")
    if r2 and not endpoint:
        raise BadInput("--r2 needs --endpoint https://<account-id>.r2.cloudflarestorage.com")
    region = region or ("auto" if r2 else real.region if real else "us-east-1")
    target = BackendSettings(kind="s3", endpoint=endpoint, bucket=bucket, region=region)
    s3 = backend_client(target, project.home if project else Path.cwd())  # s3: no home read
    try:
        steps = bootstrap(s3, bucket, region=region, r2=r2)
    except (ClientError, BotoCoreError) as exc:
        raise s3_failed(exc, target) from None
    from forkstage.ci.policies import render_policies, state_policies

    owner_stage = project.settings.owner_stage if project else "staging"
    names = dict(bucket=bucket, key=configured.key, owner_stage=owner_stage)
    if as_json:
        policies = {p.name: p.document or p.r2_scope for p in state_policies(**names)}
        steps_json = [s.to_json() for s in steps]
        click.echo(
            json.dumps({"bucket": bucket, "steps": steps_json, "policies": policies}, indent=2)
        )
        return
    for step in steps:
        click.echo(f"{step.name}: {step.status}" + (f" ({step.detail})" if step.detail else ""))
    click.echo("\nState credentials for the rendered pipelines:\n")
    click.echo(render_policies(**names, r2=r2), nl=False)
