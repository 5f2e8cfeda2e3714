"""Run the state server in the foreground: check the options, listen, serve until SIGTERM/Ctrl-C.

Shared by ``python -m backend serve`` and ``forkstage backend serve`` so both validate and print
the same way. Refusals are ``ServeError`` with the exit code to use (2 bad option, 3 the data
directory is served already, 1 cannot listen); callers turn them into their own error style.
"""

from __future__ import annotations

import datetime as dt
import signal
import sys
from pathlib import Path
from typing import Any

from backend.errors import S3Error
from backend.server import DEFAULT_BUCKET, ServerBusy, make_server
from backend.store import validate_bucket_name

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4599
DEFAULT_RETAIN = 100


class ServeError(Exception):
    """The server did not start; ``exit_code`` says why (2 bad input, 3 busy, 1 failed)."""

    exit_code = 1


class BadOption(ServeError):
    exit_code = 2


class Busy(ServeError):
    exit_code = 3


def check_options(
    *,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    retain: int,
    bucket: str,
) -> None:
    """Refuse bad options before anything touches the data directory."""
    if (tls_cert is None) != (tls_key is None):
        raise BadOption("--tls-cert and --tls-key go together: give both or neither")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not path.is_file():
            raise BadOption(f"{flag} {path}: no such file")
    if retain < 1:
        raise BadOption("--retain must be at least 1")
    if not 0 <= port <= 65535:
        raise BadOption("--port must be between 0 and 65535")
    try:
        validate_bucket_name(bucket)
    except S3Error:
        raise BadOption(f"invalid bucket name {bucket!r}") from None


def _log(line: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    print(f"{stamp} {line}", file=sys.stderr, flush=True)


def run(
    *,
    data_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    retain: int = DEFAULT_RETAIN,
    bucket: str = DEFAULT_BUCKET,
    quiet: bool = False,
) -> None:
    """Serve until SIGTERM or Ctrl-C; prints the endpoint and credentials file, never keys."""
    check_options(port=port, tls_cert=tls_cert, tls_key=tls_key, retain=retain, bucket=bucket)
    try:
        server = make_server(
            host=host,
            port=port,
            data_dir=data_dir,
            certfile=tls_cert,
            keyfile=tls_key,
            bucket=bucket,
            retain=retain,
            log=None if quiet else _log,
        )
    except ServerBusy as exc:
        raise Busy(str(exc)) from None
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise BadOption(str(exc)) from None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"forkstage state server listening on {server.endpoint} (bucket {bucket})")
    print(f"credentials file: {server.credentials_file}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("state server stopped", flush=True)
