"""What a stand-in provider supplies: per-type handlers against its local control plane.

The protocol work is generic (``localcloud.providers.servicer``); a stand-in only says which
resource and data source types it serves, how each one creates/reads/updates/deletes, and how to
reach its backend from ``$FORKSTAGE_HOME``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from cdk.providers import schema as sch
from cdk.providers.pins import ProviderPin
from localcloud.providers.values import Value

HOME_ENV = "FORKSTAGE_HOME"
# Test setting: "neon_endpoint:create=4,cloudflare_workers_script:create=1" makes those steps
# take that many more seconds (after the work is done, like a provider waiting for the API's
# operation to finish), so an interrupt can be sent while a resource is being created.
DELAY_ENV = "FORKSTAGE_LOCAL_DELAY"


def step_delay(type_name: str, operation: str, environ: Mapping[str, str] | None = None) -> float:
    """Seconds ``DELAY_ENV`` adds to ``operation`` (create, update, delete) of ``type_name``."""
    text = (os.environ if environ is None else environ).get(DELAY_ENV, "")
    for item in text.split(","):
        key, _, seconds = item.strip().partition("=")
        if key.strip() == f"{type_name}:{operation}":
            try:
                return max(0.0, float(seconds))
            except ValueError:
                return 0.0
    return 0.0


class ProviderError(Exception):
    """A failure Terraform shows as an error diagnostic (summary, detail, attribute)."""

    def __init__(self, summary: str, detail: str = "", attribute: str | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail
        self.attribute = attribute


class Resource:
    """One resource type of a stand-in, bound to its local control plane."""

    replace_on: ClassVar[frozenset[str]] = frozenset()
    # Computed attributes a real in-place update changes (timestamps, etags): unknown in plans.
    recompute_on_update: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @classmethod
    def validate(cls, config: dict[str, Value]) -> None:
        """Raise ProviderError for a config the real provider rejects before any API call."""

    def create(self, planned: dict[str, Value]) -> dict[str, Value]:
        raise NotImplementedError

    def read(self, current: dict[str, Value]) -> dict[str, Value] | None:
        raise NotImplementedError

    def update(self, prior: dict[str, Value], planned: dict[str, Value]) -> dict[str, Value]:
        return planned

    def delete(self, prior: dict[str, Value]) -> None:
        raise NotImplementedError


class DataSource:
    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @classmethod
    def validate(cls, config: dict[str, Value]) -> None:
        """Raise ProviderError for a config the real provider rejects."""

    def read(self, config: dict[str, Value]) -> dict[str, Value]:
        raise NotImplementedError


class StandIn:
    """What one stand-in provider is: its pin (hence its snapshot), its handlers and how to
    reach its backend."""

    def __init__(
        self,
        *,
        pin: ProviderPin,
        resources: Mapping[str, type[Resource]],
        data_sources: Mapping[str, type[DataSource]],
        backend: Callable[[Path], Any],
        schema_dir: Path | None = None,
    ) -> None:
        self.pin = pin
        self.resources = dict(resources)
        self.data_sources = dict(data_sources)
        self.backend_factory = backend
        self.schema_dir = schema_dir

    @property
    def address(self) -> str:
        return self.pin.fqn

    def load_schema(self) -> sch.ProviderSchema:
        path = sch.snapshot_path(self.pin, self.schema_dir)
        schema = sch.load(self.pin, path)
        missing = [t for t in self.resources if t not in schema.resources]
        missing += [t for t in self.data_sources if t not in schema.data_sources]
        if missing:
            raise sch.SchemaError(
                f"schema snapshot {path.name} lacks {', '.join(missing)}: refresh it"
            )
        return schema
