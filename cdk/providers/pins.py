"""The one place provider sources, versions and the used resource types are pinned.

Switching a provider (another version, or another source such as ``neondatabase/neon``) is a
change here, then ``forkstage providers refresh <name>`` and ``make generate``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderPin:
    """A provider as Terraform addresses it, plus the part of its schema forkstage uses."""

    name: str
    source: str
    version: str
    resources: tuple[str, ...] = ()
    data_sources: tuple[str, ...] = ()
    hostname: str = "registry.terraform.io"
    # the source tag and commit the schema snapshot was transcribed from ("" = not recorded)
    tag: str = ""
    commit: str = ""

    @property
    def fqn(self) -> str:
        """Fully qualified address, the key of ``terraform providers schema -json``."""
        return f"{self.hostname}/{self.source}"

    @property
    def address(self) -> str:
        """``required_providers`` source: the short form on the public registry."""
        return self.source if self.hostname == "registry.terraform.io" else self.fqn

    @property
    def namespace(self) -> str:
        return self.source.split("/")[0]

    @property
    def type(self) -> str:
        return self.source.split("/")[1]


NEON = ProviderPin(
    name="neon",
    source="kislerdm/neon",
    version="0.15.0",
    resources=("neon_project", "neon_branch", "neon_endpoint"),
    data_sources=("neon_branch_role_password",),
)

# v5.22.0: the newest release tag in the provider repository's snapshot. From v5.17.0 (PR #6676,
# commit 8755bf9) hyperdrive_config's Read keeps what the API never returns (origin.password,
# defaults: internal/services/hyperdrive_config/custom.go), so an unchanged redeploy plans no
# update; v5.14.0-v5.16.x updated the Hyperdrive on every plan (issue #6650).
CLOUDFLARE = ProviderPin(
    name="cloudflare",
    source="cloudflare/cloudflare",
    version="5.22.0",
    tag="v5.22.0",
    commit="a2efdc5786ae9726d56928dbfe91933bd92404ca",
    resources=(
        "cloudflare_hyperdrive_config",
        "cloudflare_workers_script",
        "cloudflare_workers_script_subdomain",
    ),
)

PINS: dict[str, ProviderPin] = {pin.name: pin for pin in (NEON, CLOUDFLARE)}
