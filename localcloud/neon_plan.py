"""What the real Neon API refuses by plan, imitated by the stand-in: the Free plan unless
FORKSTAGE_LOCAL_NEON_PLAN names a paid one (launch, scale, business)."""

from __future__ import annotations

import os

from localcloud.neon_state import NeonError

PLAN_ENV = "FORKSTAGE_LOCAL_NEON_PLAN"
DEFAULT_RETENTION = 86400  # the provider's default when unset (kislerdm/neon resource_project.go)
RETENTION_CAP = {"free": 21600, "launch": 604800, "scale": 2592000, "business": 2592000}


def _plan() -> str:
    plan = os.environ.get(PLAN_ENV) or "free"
    return plan if plan in RETENTION_CAP else "free"


def retention_cap() -> int:
    return RETENTION_CAP[_plan()]


def check_retention(seconds: int) -> None:
    """Neon answers 400 for retention over the plan's cap (provider issue #176)."""
    plan, cap = _plan(), retention_cap()
    if seconds < 0 or seconds > cap:
        raise NeonError(
            f"history_retention_seconds {seconds} is not allowed on the {plan} plan "
            f"(at most {cap}); set history_retention_seconds <= {cap}"
        )
