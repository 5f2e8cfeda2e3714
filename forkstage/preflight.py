"""Preflight for the cloud target: refuse a run that cannot work before synth, init or state.

Without it a cloud run with no credentials synthesizes, runs ``terraform init``, downloads the
real providers and only then fails; the placeholder account id would go into the config
unchecked, and the embedded state server would keep the cloud's state on a CI runner that is
about to vanish. Two steps, both before anything is written:

- static: the variables the run needs are set, one line naming every one that is missing;
- live (``--no-preflight`` skips it): one call per API, each bounded to ``TIMEOUT`` seconds,
  proving the credentials are accepted. Refused credentials exit 2, an API that cannot be
  reached exits 1.

Plain HTTPS through urllib: the Neon provider has no base-URL override (``provider/provider.go``
of kislerdm/neon v0.15.0 hard-codes the SDK's public API), so the check needs its own client, and
urllib keeps the CLI's start-up free of an SDK import. ``FORKSTAGE_NEON_API_URL`` and
``FORKSTAGE_CLOUDFLARE_API_URL`` point it elsewhere (tests use local fakes).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdk.settings import PLACEHOLDER_WORKERS_SUBDOMAIN, Settings
from forkstage.engine import REHEARSAL_PROVIDERS_HOOK
from forkstage.errors import BadInput, Failed
from forkstage.tooling import check_tooling

NEON_API_URL = "https://console.neon.tech/api/v2"
CLOUDFLARE_API_URL = "https://api.cloudflare.com/client/v4"
TIMEOUT = 10.0
# Cloudflare account ids are 32 hex digits; forkstage.toml ships all zeros as a placeholder.
_ACCOUNT_ID = re.compile(r"[0-9a-f]{32}")
PLACEHOLDER_ACCOUNT_ID = "0" * 32
# Set only by `forkstage ci rehearse` (its "remote" state server runs on 127.0.0.1): a loopback
# S3 endpoint on the cloud target is otherwise the settings file's local default, left by mistake.
LOOPBACK_STATE_HOOK = "FORKSTAGE_REHEARSAL_STATE"
# Credentials Terraform's S3 backend and boto3 find without forkstage's help.
_AWS_AMBIENT = ("AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def target_line(settings: Settings) -> str:
    """What a run acts on, said first by every deploy/plan/destroy and in every summary."""
    if settings.target == "local":
        return "local cloud"
    org = settings.neon_org_id.strip() or "personal account"
    account = settings.cloudflare_account_id or "(not set)"
    line = f"cloud: Neon org {org}, Cloudflare account {account}"
    hook = os.environ.get(REHEARSAL_PROVIDERS_HOOK)
    if hook:  # `forkstage ci rehearse`: the local cloud's stand-in providers, said plainly
        line += f" (rehearsal: stand-in providers via {REHEARSAL_PROVIDERS_HOOK}={hook})"
    return line


def static_problems(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """What the cloud target still needs set, as short phrases naming the variable."""
    env = os.environ if environ is None else environ
    problems = [
        f"{name} ({what})"
        for name, what in (
            ("NEON_API_KEY", "a Neon API key"),
            ("CLOUDFLARE_API_TOKEN", "a Cloudflare API token"),
        )
        if not env.get(name, "").strip()
    ]
    account = settings.cloudflare_account_id.strip()
    if not account:
        problems.append("CLOUDFLARE_ACCOUNT_ID (your account id; none is set)")
    elif account == PLACEHOLDER_ACCOUNT_ID:
        problems.append("CLOUDFLARE_ACCOUNT_ID (your account id, not the placeholder 000...0)")
    elif not _ACCOUNT_ID.fullmatch(account):
        problems.append(f"CLOUDFLARE_ACCOUNT_ID (32 hex digits, not {account!r})")
    if settings.cloudflare_workers_subdomain == PLACEHOLDER_WORKERS_SUBDOMAIN:
        problems.append(
            "CLOUDFLARE_WORKERS_SUBDOMAIN (your account's <name>.workers.dev, for the preview URL)"
        )
    backend = settings.backend
    if backend.embedded:
        problems.append(
            "FORKSTAGE_BACKEND_KIND=s3 with FORKSTAGE_BACKEND_ENDPOINT and "
            "FORKSTAGE_BACKEND_BUCKET (a state bucket that outlives the run; the embedded "
            "server's state would die with the CI runner)"
        )
        return problems
    if backend.endpoint:
        parts = urllib.parse.urlsplit(backend.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(
                f"FORKSTAGE_BACKEND_ENDPOINT (an http(s) URL, not {backend.endpoint!r})"
            )
        elif _loopback(parts.hostname) and not env.get(LOOPBACK_STATE_HOOK):
            problems.append(
                f"FORKSTAGE_BACKEND_ENDPOINT (the state store's URL, e.g. R2's "
                f"https://<account id>.r2.cloudflarestorage.com; {backend.endpoint} is this "
                'machine) or, for AWS S3, [backend] endpoint = "" (no endpoint) with '
                "FORKSTAGE_BACKEND_REGION"
            )
    if not backend.bucket.strip():
        problems.append("FORKSTAGE_BACKEND_BUCKET (the state bucket)")
    pairs = (
        ("FORKSTAGE_STATE_ACCESS_KEY_ID", "FORKSTAGE_STATE_SECRET_ACCESS_KEY"),
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    )
    keyed = any(env.get(key) and env.get(secret) for key, secret in pairs)
    if not keyed and not any(env.get(name) for name in _AWS_AMBIENT):
        problems.append(
            "FORKSTAGE_STATE_ACCESS_KEY_ID and FORKSTAGE_STATE_SECRET_ACCESS_KEY "
            "(the state bucket's credentials; or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        )
    return problems


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_static(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """BadInput (exit 2), one line naming everything to set; nothing has run yet."""
    problems = static_problems(settings, environ)
    if problems:
        raise BadInput("the cloud target needs: set " + "; ".join(problems))


@dataclass
class Answer:
    """One API answer: HTTP status and the decoded JSON body (empty when it was not JSON)."""

    status: int
    body: dict[str, Any]

    def message(self) -> str:
        """The API's own error text (Cloudflare ``errors[].message``, Neon ``message``)."""
        errors = self.body.get("errors")
        if isinstance(errors, list) and errors:
            texts = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
            return "; ".join(texts)
        return str(self.body.get("message", "")) or f"HTTP {self.status}"


def _get(api: str, url: str, token: str, timeout: float) -> Answer:
    """GET with a Bearer token; Failed (exit 1) naming ``api`` when it cannot be reached."""
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Failed(
            f"preflight: cannot reach the {api} API at {url.split('?')[0]} "
            f"within {timeout:.0f}s: {reason}"
        ) from None
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    return Answer(status, body if isinstance(body, dict) else {})


def _unavailable(api: str, answer: Answer) -> Failed:
    return Failed(f"preflight: the {api} API answered HTTP {answer.status}: {answer.message()}")


def check_neon(
    environ: Mapping[str, str], org_id: str, *, base: str, timeout: float = TIMEOUT
) -> None:
    """``GET /projects?limit=1`` (with ``org_id`` when set): the key is accepted."""
    query = {"limit": "1", **({"org_id": org_id} if org_id else {})}
    url = f"{base.rstrip('/')}/projects?{urllib.parse.urlencode(query)}"
    answer = _get("Neon", url, environ.get("NEON_API_KEY", ""), timeout)
    if answer.status == 200:
        return
    if answer.status >= 500:
        raise _unavailable("Neon", answer)
    hint = "check NEON_API_KEY"
    if "org" in answer.message().lower():
        hint = "check NEON_API_KEY and set NEON_ORG_ID (or [neon] org_id)"
    raise BadInput(
        f"preflight: Neon refused the API key (HTTP {answer.status}: {answer.message()}): {hint}"
    )


def check_cloudflare(
    environ: Mapping[str, str], account_id: str, *, base: str, timeout: float = TIMEOUT
) -> None:
    """The token is active (user token, else account-owned token), then the account is
    reachable with it (``GET /accounts/{id}``)."""
    base, token = base.rstrip("/"), environ.get("CLOUDFLARE_API_TOKEN", "")
    answer = _get("Cloudflare", f"{base}/user/tokens/verify", token, timeout)
    if not _succeeded(answer) and answer.status < 500:
        # an account-owned token is verified under its account
        answer = _get("Cloudflare", f"{base}/accounts/{account_id}/tokens/verify", token, timeout)
    if answer.status >= 500:
        raise _unavailable("Cloudflare", answer)
    if not _succeeded(answer):
        raise BadInput(
            f"preflight: Cloudflare refused CLOUDFLARE_API_TOKEN "
            f"(HTTP {answer.status}: {answer.message()}): check the token"
        )
    result = answer.body.get("result")
    status = result.get("status") if isinstance(result, dict) else None
    if status != "active":
        raise BadInput(
            f"preflight: CLOUDFLARE_API_TOKEN is {status or 'of unknown status'}, not active: "
            "use an active token"
        )
    account = _get("Cloudflare", f"{base}/accounts/{account_id}", token, timeout)
    if account.status >= 500:
        raise _unavailable("Cloudflare", account)
    if not _succeeded(account):
        raise BadInput(
            f"preflight: CLOUDFLARE_API_TOKEN cannot access Cloudflare account {account_id} "
            f"(HTTP {account.status}: {account.message()}): check CLOUDFLARE_ACCOUNT_ID and "
            "the token's account permissions"
        )


def check_workers_subdomain(
    environ: Mapping[str, str],
    account_id: str,
    subdomain: str,
    *,
    base: str,
    timeout: float = TIMEOUT,
) -> None:
    """The account's workers.dev subdomain is the one configured (``GET /accounts/{id}/workers/
    subdomain``): a typo would otherwise deploy fine and post a dead preview URL."""
    url = f"{base.rstrip('/')}/accounts/{account_id}/workers/subdomain"
    answer = _get("Cloudflare", url, environ.get("CLOUDFLARE_API_TOKEN", ""), timeout)
    if answer.status >= 500:
        raise _unavailable("Cloudflare", answer)
    result = answer.body.get("result")
    actual = result.get("subdomain") if isinstance(result, dict) else None
    if not _succeeded(answer) or not actual:
        raise BadInput(
            f"preflight: cannot read the workers.dev subdomain of Cloudflare account "
            f"{account_id} (HTTP {answer.status}: {answer.message()}): register one in the "
            "dashboard (Workers & Pages) and give the token Workers Scripts read access"
        )
    if actual != subdomain:
        raise BadInput(
            f"preflight: CLOUDFLARE_WORKERS_SUBDOMAIN is {subdomain!r} but the account's "
            f"workers.dev subdomain is {actual!r}: set CLOUDFLARE_WORKERS_SUBDOMAIN={actual} "
            "(or [cloudflare] workers_subdomain)"
        )


def check_hyperdrive_quota(
    environ: Mapping[str, str],
    settings: Settings,
    stage: str,
    *,
    base: str,
    timeout: float = TIMEOUT,
) -> None:
    """Before a preview's first deploy (no Hyperdrive named ``<app>-*-<stage>`` yet), the
    account has room for one more configuration under ``[cloudflare] hyperdrive_limit``
    (Cloudflare's cap: 10 on Free, 25 on Paid); else exit 2 naming the oldest previews to
    prune, instead of failing halfway through the apply."""
    account_id = settings.cloudflare_account_id.strip()
    url = f"{base.rstrip('/')}/accounts/{account_id}/hyperdrive/configs"
    answer = _get("Cloudflare", url, environ.get("CLOUDFLARE_API_TOKEN", ""), timeout)
    if answer.status >= 500:
        raise _unavailable("Cloudflare", answer)
    if not _succeeded(answer) or not isinstance(answer.body.get("result"), list):
        raise BadInput(
            f"preflight: cannot list the Hyperdrive configurations of Cloudflare account "
            f"{account_id} (HTTP {answer.status}: {answer.message()}): give the token "
            "Hyperdrive read access"
        )
    configs = [c for c in answer.body["result"] if isinstance(c, dict)]
    names = [str(c.get("name", "")) for c in configs]
    prefix = f"{settings.app}-"
    if any(n.startswith(prefix) and n.endswith(f"-{stage}") for n in names):
        return  # deployed before: its configuration exists and is updated in place
    limit = settings.hyperdrive_limit
    if len(configs) < limit:
        return
    previews: dict[str, str] = {}
    for config in sorted(configs, key=lambda c: str(c.get("created_on", ""))):
        name = str(config.get("name", ""))
        if not name.startswith(prefix):
            continue
        preview = _preview_of(settings, name.removeprefix(prefix))
        if preview:
            previews.setdefault(preview, str(config.get("created_on", "")))
    need = len(configs) - limit + 1
    oldest = ", ".join(list(previews)[:need]) or "none of this app's previews"
    raise BadInput(
        f"preflight: Cloudflare account {account_id} holds {len(configs)} Hyperdrive "
        f"configurations, the limit is {limit} ([cloudflare] hyperdrive_limit): {stage} needs "
        f"one more; prune the oldest previews first ({oldest}): forkstage destroy --stage <it>"
    )


def _preview_of(settings: Settings, rest: str) -> str | None:
    """The referencing stage a ``<construct>-<stage>`` name ends with (shortest match)."""
    parts = rest.split("-")
    for k in range(1, len(parts)):
        candidate = "-".join(parts[-k:])
        try:
            if settings.parse_stage(candidate).is_referencing:
                return candidate
        except ValueError:
            continue
    return None


def _succeeded(answer: Answer) -> bool:
    return answer.status == 200 and answer.body.get("success") is True


def check_live(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    *,
    timeout: float = TIMEOUT,
    deploying: str | None = None,
) -> None:
    """Both APIs accept the credentials (run after ``check_static``), the workers.dev subdomain
    is the account's, and a referencing stage being deployed (``deploying``) fits under the
    Hyperdrive limit."""
    env = os.environ if environ is None else environ
    cloudflare_api = env.get("FORKSTAGE_CLOUDFLARE_API_URL") or CLOUDFLARE_API_URL
    check_neon(
        env,
        settings.neon_org_id.strip(),
        base=env.get("FORKSTAGE_NEON_API_URL") or NEON_API_URL,
        timeout=timeout,
    )
    account = settings.cloudflare_account_id.strip()
    check_cloudflare(env, account, base=cloudflare_api, timeout=timeout)
    check_workers_subdomain(
        env, account, settings.cloudflare_workers_subdomain, base=cloudflare_api, timeout=timeout
    )
    if deploying is not None and settings.parse_stage(deploying).is_referencing:
        check_hyperdrive_quota(env, settings, deploying, base=cloudflare_api, timeout=timeout)


def preflight(
    settings: Settings,
    *,
    live: bool = True,
    environ: Mapping[str, str] | None = None,
    cdktf: bool | str = False,
    deploying: str | None = None,
) -> None:
    """The whole preflight: the tooling the run needs, then on the cloud target the keys (the
    local cloud needs none); ``deploying``: the stage a deploy is about to apply."""
    check_tooling(settings, cdktf=cdktf, environ=environ)
    if settings.target != "cloud":
        return
    check_static(settings, environ)
    if live:
        check_live(settings, environ, deploying=deploying)
