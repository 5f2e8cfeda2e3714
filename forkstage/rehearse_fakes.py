"""Local stand-ins for the Neon and Cloudflare HTTP APIs the preflight calls.

Used by `forkstage ci rehearse` (its preflight must not reach the real APIs) and by the tests.
They answer as the real APIs do for the calls the preflight makes (Neon ``/api/v2/projects``;
Cloudflare token verify, account, workers.dev subdomain, Hyperdrive list), under the path
prefixes ``/neon/api/v2`` and ``/cf/client/v4`` of one loopback server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ACCOUNT = "0123456789abcdef0123456789abcdef"
OTHER_ACCOUNT = "fedcba9876543210fedcba9876543210"
NEON_KEY = "neon-key-good"
ORG_KEY = "neon-key-of-an-org"  # a key type that needs org_id
ORG = "org-cool-sky-12345678"
# Cloudflare tokens the fake knows: user-owned active, account-owned active, user-owned disabled
USER_TOKEN, ACCOUNT_TOKEN, DISABLED_TOKEN = "cf-user", "cf-account", "cf-disabled"
BAD_TOKEN = {"code": 1000, "message": "Invalid API Token"}


class FakeApis(BaseHTTPRequestHandler):
    """Neon's ``/api/v2/projects`` and Cloudflare's token/account endpoints, as the issue quotes;
    the account's workers.dev subdomain and Hyperdrive list (issue 20, Cloudflare API v4)."""

    seen: list[tuple[str, dict[str, list[str]]]] = []
    subdomain = "acme"
    hyperdrives: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _cloudflare(self, ok: bool, result: Any, status: int = 200) -> None:
        errors = [] if ok else [BAD_TOKEN]
        self._send(status, {"success": ok, "errors": errors, "messages": [], "result": result})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        FakeApis.seen.append((url.path, parse_qs(url.query)))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if url.path == "/neon/api/v2/projects":
            if token == ORG_KEY and "org_id" not in url.query:
                self._send(400, {"code": "", "message": "org_id is required"})
            elif token not in (NEON_KEY, ORG_KEY):
                self._send(401, {"code": "", "message": "authentication failed"})
            else:
                self._send(200, {"projects": [], "pagination": {"cursor": ""}})
        elif url.path == "/cf/client/v4/user/tokens/verify":
            status = {USER_TOKEN: "active", DISABLED_TOKEN: "disabled"}.get(token)
            if status is None:
                self._cloudflare(False, None, 401)
            else:
                self._cloudflare(True, {"id": "t1", "status": status})
        elif url.path == f"/cf/client/v4/accounts/{ACCOUNT}/tokens/verify":
            if token == ACCOUNT_TOKEN:
                self._cloudflare(True, {"id": "t2", "status": "active"})
            else:
                self._cloudflare(False, None, 401)
        elif url.path == f"/cf/client/v4/accounts/{ACCOUNT}":
            self._cloudflare(True, {"id": ACCOUNT, "name": "Team"})
        elif url.path == f"/cf/client/v4/accounts/{ACCOUNT}/workers/subdomain":
            self._cloudflare(True, {"subdomain": FakeApis.subdomain})
        elif url.path == f"/cf/client/v4/accounts/{ACCOUNT}/hyperdrive/configs":
            self._cloudflare(True, FakeApis.hyperdrives)
        elif url.path.startswith("/cf/client/v4/accounts/"):
            self._send(
                403,
                {
                    "success": False,
                    "errors": [
                        {"code": 9109, "message": "Unauthorized to access requested resource"}
                    ],
                    "messages": [],
                    "result": None,
                },
            )
        else:
            self._send(404, {"message": "not found"})


@contextmanager
def serve_fake_apis() -> Iterator[str]:
    """Run the fakes on 127.0.0.1 (an ephemeral port); yields the server's base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApis)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
