"""Terraform's builtin ``terraform_data`` resource.

Not cdktf's ``DataResource``: that class adds a validation that runs ``$TERRAFORM_BINARY_NAME
version`` once per stack on every synth (to check for Terraform >= 1.4, which the pinned engine
always is) — a process start per stack, most of a synth's time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from constructs import Construct

from cdk.core import ITerraformDependable, LocalExecProvisioner, TerraformResource


class TerraformData(TerraformResource):
    """``terraform_data`` with the arguments forkstage uses: input, triggers, provisioners."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        input_: Mapping[str, str] | None = None,
        triggers_replace: Sequence[str] | None = None,
        provisioners: Sequence[LocalExecProvisioner] | None = None,
        depends_on: Sequence[ITerraformDependable] | None = None,
    ) -> None:
        super().__init__(
            scope,
            id_,
            terraform_resource_type="terraform_data",
            provisioners=list(provisioners) if provisioners else None,
            depends_on=list(depends_on) if depends_on else None,
        )
        self._attributes: dict[str, Any] = {}
        if input_ is not None:
            self._attributes["input"] = dict(input_)
        if triggers_replace is not None:
            self._attributes["triggers_replace"] = list(triggers_replace)

    def _synthesize_attributes(self) -> Mapping[str, Any]:
        return self._attributes

    @property
    def id(self) -> str:
        return self.get_string_attribute("id")
