"""Which database a stage's migrations go to.

For now a stage resolves to ``$FORKSTAGE_DATABASE_URL``. This module is the one place to replace
when stage -> Neon branch endpoint resolution is wired (staging's outputs + the pr-N branch).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from forkstage.migrator.errors import BadInput

STAGE_URL_ENV = "FORKSTAGE_DATABASE_URL"
_STAGE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def resolve_stage_database_url(stage: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if not _STAGE.fullmatch(stage):
        raise BadInput(f"stage name {stage!r} is not valid: use lowercase letters, digits and -")
    url = env.get(STAGE_URL_ENV, "").strip()
    if not url:
        raise BadInput(
            f"cannot find the database of stage {stage}: set {STAGE_URL_ENV} "
            "or pass --database-url-env NAME"
        )
    return url
