"""Which database a run goes to, and how to reach it: the caller says, the migrator does not look.

The migrator knows URLs and libpq, nothing of stages, state backends or the local cloud. A caller
that can name a database by stage, or that serves hosts libpq cannot reach as they are, passes a
``Resolver`` (the wrapper's is ``forkstage.databases.ProjectDatabases``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Protocol

from forkstage.errors import BadInput

# libpq keyword overrides for one URL (e.g. hostaddr, port, sslmode); {} for an ordinary host.
ConnectOptions = Callable[[str], Mapping[str, str]]


class Resolver(Protocol):
    """How to reach a stage's database: what a caller tells the migrator."""

    def stage_url(self, stage: str) -> str:
        """postgresql:// URL of ``stage``'s database; raises BadInput when it has none."""
        ...

    def connect_options(self, url: str) -> Mapping[str, str]:
        """libpq keyword overrides needed to reach ``url`` ({} for ordinary hosts)."""
        ...


def choose_url(
    *,
    database_url: str | None,
    url_env: str | None,
    stage: str | None,
    resolver: Resolver | None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The one database URL given as a URL, an environment variable's name or a stage.

    Exactly one must be given; an empty variable or a stage without a resolver is bad input.
    """
    given = [v for v in (database_url, url_env, stage) if v]
    if not given:
        raise BadInput(
            "no database given: pass --database-url-env NAME, --database-url URL or --stage STAGE"
        )
    if len(given) > 1:
        raise BadInput("pass only one of --database-url, --database-url-env and --stage")
    if url_env:
        env = os.environ if environ is None else environ
        url = env.get(url_env, "").strip()
        if not url:
            raise BadInput(
                f"environment variable {url_env} is not set or empty: put the database URL in it"
            )
        return url
    if stage:
        if resolver is None:
            raise BadInput(f"cannot find stage {stage}'s database here: pass its URL instead")
        return resolver.stage_url(stage)
    assert database_url is not None
    return database_url
