"""Local stand-ins for the Neon and Cloudflare HTTP APIs the preflight calls, and for the
GitLab API the pipeline's note and prune scripts call.

Used by `forkstage ci rehearse` (its preflight must not reach the real APIs) and by the tests.
They answer as the real APIs do for the calls the preflight makes (Neon ``/api/v2/projects``;
Cloudflare token verify, account, workers.dev subdomain, Hyperdrive list), under the path
prefixes ``/neon/api/v2`` and ``/cf/client/v4`` of one loopback server; GitLab's merge request
notes (list, create, edit) and open merge requests under ``/gitlab/api/v4``.
"""

from __future__ import annotations

import json
import re
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
GITLAB_TOKEN = "gitlab-token-good"
GITLAB_PROJECT = "1"
_NOTES = re.compile(
    rf"/gitlab/api/v4/projects/{GITLAB_PROJECT}/merge_requests/(\d+)/notes(?:/(\d+))?"
)


class FakeApis(BaseHTTPRequestHandler):
    """Neon's ``/api/v2/projects`` and Cloudflare's token/account endpoints, as the issue quotes;
    the account's workers.dev subdomain and Hyperdrive list (issue 20, Cloudflare API v4)."""

    seen: list[tuple[str, dict[str, list[str]]]] = []
    subdomain = "acme"
    hyperdrives: list[dict[str, Any]] = []
    # GitLab: merge request iid -> its notes (one dict per server, see serve_fake_apis)
    notes: dict[str, list[dict[str, Any]]] = {}
    open_merge_requests: list[int] = []

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: dict[str, Any] | list[Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _cloudflare(self, ok: bool, result: Any, status: int = 200) -> None:
        errors = [] if ok else [BAD_TOKEN]
        self._send(status, {"success": ok, "errors": errors, "messages": [], "result": result})

    def _gitlab(self, method: str) -> None:
        """Notes of a merge request (GET list, POST a form ``body``, PUT one) and the open
        merge requests, as the GitLab REST API v4 answers them."""
        url = urlsplit(self.path)
        if self.headers.get("PRIVATE-TOKEN") != GITLAB_TOKEN:
            self._send(401, {"message": "401 Unauthorized"})
            return
        if method == "GET" and url.path.endswith(f"/projects/{GITLAB_PROJECT}/merge_requests"):
            query = parse_qs(url.query)
            if query.get("state") != ["opened"]:
                self._send(400, {"error": "state: the stand-in lists opened ones only"})
            else:
                self._send(200, [{"iid": n} for n in self.open_merge_requests])
            return
        found = _NOTES.fullmatch(url.path)
        if found is None:
            self._send(404, {"message": "404 Not Found"})
            return
        notes = self.notes.setdefault(found.group(1), [])
        if method == "GET" and found.group(2) is None:
            self._send(200, notes)
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
        body = form["body"][0] if "body" in form else None
        if body is None or method == "GET":
            self._send(400, {"error": "body is missing"})
        elif method == "POST" and found.group(2) is None:
            notes.append({"id": 100 + len(notes), "body": body})
            self._send(201, notes[-1])
        elif method == "PUT" and found.group(2) is not None:
            note = next((n for n in notes if str(n["id"]) == found.group(2)), None)
            if note is None:
                self._send(404, {"message": "404 Note Not Found"})
            else:
                note["body"] = body
                self._send(200, note)
        else:
            self._send(405, {"message": "405 Method Not Allowed"})

    def do_POST(self) -> None:
        self._gitlab("POST")

    def do_PUT(self) -> None:
        self._gitlab("PUT")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        FakeApis.seen.append((url.path, parse_qs(url.query)))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if url.path.startswith("/gitlab/"):
            self._gitlab("GET")
        elif url.path == "/neon/api/v2/projects":
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
    """Run the fakes on 127.0.0.1 (an ephemeral port); yields the server's base URL.

    The GitLab notes are this server's own: ``notes_of(server_url)`` reads them."""
    notes: dict[str, list[dict[str, Any]]] = {}
    handler = type("FakeApisServed", (FakeApis,), {"notes": notes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _SERVED[base] = notes
    try:
        yield base
    finally:
        _SERVED.pop(base, None)
        server.shutdown()
        server.server_close()


_SERVED: dict[str, dict[str, list[dict[str, Any]]]] = {}


def notes_of(base: str, merge_request: str) -> list[dict[str, Any]]:
    """The notes the running fake at ``base`` holds for a merge request (GitLab's shape)."""
    return list(_SERVED.get(base, {}).get(merge_request, []))
