"""``python -m backend serve``: the state server on its own, without the forkstage CLI.

Usage::

    python -m backend serve [--host 127.0.0.1] [--port 4599] [--data DIR]
                            [--tls-cert cert.pem --tls-key key.pem]
                            [--bucket forkstage-state] [--region us-east-1] [--quiet]
                            [LIMITS]

LIMITS are ``--max-connections N --max-unauthenticated N --max-requests-per-credential N
--header-timeout S --idle-timeout S --body-grace S
--body-min-rate SIZE --max-object-size SIZE --stage-max-keys N --stage-max-bytes SIZE
--retain N --retain-days D --upload-expiry-hours H --disk-reserve SIZE --memory-body SIZE``
(SIZE is bytes or ``256KiB``/``64MiB``/``1GiB``; defaults in ``backend/limits.py``).

``--data`` is required unless ``FORKSTAGE_HOME`` is set; then it defaults to
``$FORKSTAGE_HOME/state`` (where the forkstage CLI keeps the embedded server's data). No project
lookup happens here: this entry point imports only ``backend`` and the standard library (plus
botocore), so it starts fast and runs where the wrapper is not installed. The embedded server
that forkstage starts by itself is this process.

Exit codes: 0 stopped by SIGTERM or Ctrl-C, 2 bad option, 3 the data directory is already
served, 1 cannot listen. Errors are one ``error: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from backend.serve import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_REGION,
    LIMIT_OPTIONS,
    ServeError,
    limits_from_options,
    run,
)
from backend.server import DEFAULT_BUCKET


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backend", description="The forkstage Terraform state server."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="serve")
    serve = sub.add_parser("serve", help="Run the state server in the foreground.")
    serve.add_argument("--host", default=DEFAULT_HOST, help="Address to bind.")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks one.")
    serve.add_argument(
        "--data", type=Path, default=None, help="State directory (default $FORKSTAGE_HOME/state)."
    )
    serve.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate.")
    serve.add_argument("--tls-key", type=Path, default=None, help="PEM private key.")
    serve.add_argument("--bucket", default=DEFAULT_BUCKET, help="Bucket made at start.")
    serve.add_argument(
        "--region", default=DEFAULT_REGION, help="Signing region clients must use (us-east-1)."
    )
    serve.add_argument("--quiet", action="store_true", help="Do not log one line per request.")
    for option in LIMIT_OPTIONS:
        serve.add_argument(option.flag, default=None, metavar=option.metavar, help=option.help)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data: Path | None = args.data
    if data is None:
        home = os.environ.get("FORKSTAGE_HOME")
        if not home:
            print("error: --data is required (or set FORKSTAGE_HOME)", file=sys.stderr)
            return 2
        data = Path(home).resolve() / "state"
    try:
        limits = limits_from_options(**{o.dest: getattr(args, o.dest) for o in LIMIT_OPTIONS})
        run(
            data_dir=data,
            host=args.host,
            port=args.port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            limits=limits,
            bucket=args.bucket,
            quiet=args.quiet,
            region=args.region,
        )
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
