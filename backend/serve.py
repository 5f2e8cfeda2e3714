"""Run the state server in the foreground: check the options, listen, serve until SIGTERM/Ctrl-C.

Shared by ``python -m backend serve`` and ``forkstage backend serve`` so both validate and print
the same way. Refusals are ``ServeError`` with the exit code to use (2 bad option, 3 the data
directory is served already, 1 cannot listen); callers turn them into their own error style.
Every ``Limits`` field has an option (``LIMIT_OPTIONS``); ``limits_from_options`` turns their
text into a checked ``Limits``, naming the flag of the first bad value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import resource
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import S3Error
from backend.limits import DEFAULT_LIMITS, Limits
from backend.s3.sigv4 import DEFAULT_REGION, REGION_RE
from backend.server import DEFAULT_BUCKET, DiskFull, ServerBusy, make_server
from backend.store.store import validate_bucket_name

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4599
DEFAULT_RETAIN = DEFAULT_LIMITS.retain_versions
FD_MARGIN = 64  # descriptors beyond the connections: store, spool files, pool, listener


class ServeError(Exception):
    """The server did not start; ``exit_code`` says why (2 bad input, 3 busy, 1 failed)."""

    exit_code = 1


class BadOption(ServeError):
    exit_code = 2


class Busy(ServeError):
    exit_code = 3


@dataclass(frozen=True)
class LimitOption:
    flag: str  # "--max-connections"
    field: str  # the Limits field it sets
    kind: str  # "count", "seconds", "hours", "days" or "size"
    help: str

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    @property
    def metavar(self) -> str:
        return {"count": "N", "size": "SIZE", "seconds": "S", "hours": "H", "days": "D"}[self.kind]


LIMIT_OPTIONS = (
    LimitOption("--max-connections", "max_connections", "count", "Open client connections."),
    LimitOption(
        "--max-unauthenticated", "max_unauthenticated", "count", "Connections not yet signed."
    ),
    LimitOption(
        "--max-requests-per-credential",
        "max_requests_per_credential",
        "count",
        "Requests in flight per stage credential.",
    ),
    LimitOption("--header-timeout", "header_timeout", "seconds", "Seconds for a request head."),
    LimitOption("--idle-timeout", "idle_timeout", "seconds", "Keep-alive idle seconds."),
    LimitOption("--body-grace", "body_grace", "seconds", "Seconds before the minimum rate."),
    LimitOption("--body-min-rate", "body_min_rate", "size", "Minimum body bytes per second."),
    LimitOption("--max-object-size", "max_object_bytes", "size", "Largest object."),
    LimitOption("--stage-max-keys", "stage_max_keys", "count", "Keys per stage credential."),
    LimitOption("--stage-max-bytes", "stage_max_bytes", "size", "Bytes per stage credential."),
    LimitOption("--retain", "retain_versions", "count", "Versions kept per key."),
    LimitOption("--retain-days", "retain_days", "days", "Days old versions are kept."),
    LimitOption("--upload-expiry-hours", "upload_expiry_hours", "hours", "Unfinished uploads."),
    LimitOption("--disk-reserve", "disk_reserve_bytes", "size", "Free space kept for deletes."),
    LimitOption("--memory-body", "memory_body_bytes", "size", "Larger bodies are spooled."),
)
_MAY_BE_ZERO = {"body_grace", "disk_reserve_bytes", "memory_body_bytes"}
_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int:
    """Bytes from ``4096``, ``256KiB``, ``64MiB``, ``1GiB`` or ``1.5GiB``; ValueError otherwise."""
    found = _SIZE_RE.fullmatch(text)
    unit = _UNITS.get(found.group(2).lower()) if found else None
    if found is None or unit is None:
        raise ValueError(f"{text!r} is not a size (bytes, or a unit: 256KiB, 64MiB, 1GiB)")
    return int(float(found.group(1)) * unit)


def _value(option: LimitOption, raw: object) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ValueError(f"{raw!r} is not a number")
    if option.kind == "size":
        return parse_size(raw) if isinstance(raw, str) else int(raw)
    if option.kind == "count":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def limits_from_options(base: Limits = DEFAULT_LIMITS, **options: object) -> Limits:
    """A checked ``Limits`` from option values keyed by ``LimitOption.dest`` (``retain``,
    ``max_connections``, ...); None keeps the default. Raises BadOption naming the flag."""
    by_dest = {o.dest: o for o in LIMIT_OPTIONS}
    unknown = set(options) - set(by_dest)
    if unknown:
        raise TypeError(f"unknown limit options: {sorted(unknown)}")
    changes: dict[str, Any] = {}
    for dest, raw in options.items():
        if raw is None:
            continue
        option = by_dest[dest]
        try:
            value = _value(option, raw)
        except (TypeError, ValueError) as exc:
            raise BadOption(f"{option.flag}: {exc}") from None
        if option.field in _MAY_BE_ZERO:
            if value < 0:
                raise BadOption(f"{option.flag} must be 0 or more")
        elif value < 1 and option.kind in ("count", "size"):
            raise BadOption(f"{option.flag} must be at least 1")
        elif value <= 0:
            raise BadOption(f"{option.flag} must be greater than 0")
        changes[option.field] = value
    limits = dataclasses.replace(base, **changes)
    try:
        limits.check()
    except ValueError as exc:  # a rule check() knows and the table does not
        flags = [o.flag for o in LIMIT_OPTIONS if str(exc).startswith(o.field)]
        raise BadOption(f"{flags[0] if flags else 'limits'}: {exc}") from None
    return limits


def check_options(
    *,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    bucket: str,
    region: str = DEFAULT_REGION,
) -> None:
    """Refuse bad options before anything touches the data directory."""
    if not REGION_RE.fullmatch(region):
        raise BadOption(f"--region {region!r}: use a region name such as us-east-1")
    if (tls_cert is None) != (tls_key is None):
        raise BadOption("--tls-cert and --tls-key go together: give both or neither")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not path.is_file():
            raise BadOption(f"{flag} {path}: no such file")
    if not 0 <= port <= 65535:
        raise BadOption("--port must be between 0 and 65535")
    try:
        validate_bucket_name(bucket)
    except S3Error:
        raise BadOption(f"invalid bucket name {bucket!r}") from None


def _log(line: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    print(f"{stamp} {line}", file=sys.stderr, flush=True)


def _raise_fd_limit(limits: Limits) -> str | None:
    """Lift the soft descriptor limit to fit the connection cap; a warning if it cannot."""
    want = limits.max_connections + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return None
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < want:
        return (
            f"warning: the descriptor limit ({target}) is below --max-connections + "
            f"{FD_MARGIN}; new connections wait while it is exhausted"
        )
    return None


def run(
    *,
    data_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    limits: Limits | None = None,
    retain: int | None = None,
    bucket: str = DEFAULT_BUCKET,
    quiet: bool = False,
    region: str = DEFAULT_REGION,
) -> None:
    """Serve until SIGTERM or Ctrl-C; prints the endpoint and credentials file, never keys.

    ``retain`` overrides ``limits.retain_versions`` (the forkstage CLI's ``--retain``);
    ``region`` is the signing region clients must use (Terraform's backend ``region``).
    """
    limits = limits_from_options(limits or DEFAULT_LIMITS, retain=retain)
    check_options(port=port, tls_cert=tls_cert, tls_key=tls_key, bucket=bucket, region=region)
    log = None if quiet else _log
    try:
        server = make_server(
            host=host,
            port=port,
            data_dir=data_dir,
            certfile=tls_cert,
            keyfile=tls_key,
            bucket=bucket,
            limits=limits,
            log=log,
            region=region,
        )
    except ServerBusy as exc:
        raise Busy(str(exc)) from None
    except DiskFull as exc:
        raise ServeError(str(exc)) from None
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise BadOption(str(exc)) from None
    warning = _raise_fd_limit(limits)
    if warning:
        print(warning, file=sys.stderr, flush=True)

    def stop(signum: int, frame: Any) -> None:
        server.stop_soon()  # the loop winds down in order: no exception inside a request

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"forkstage state server listening on {server.endpoint} (bucket {bucket})")
    print(f"credentials file: {server.credentials_file}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("state server stopped", flush=True)
