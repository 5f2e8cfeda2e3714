"""The CDK core types (``App``, ``TerraformStack``, ``TerraformOutput``, ``Fn``, ...) of the
runtime the app runs on: cdktf 0.21 or CDK Terrain (cdktn 0.24).

Apps and forkstage's constructs import them from here (``from cdk.core import App``), never
from cdktf or cdktn directly, so the same code runs on either; cdk/runtime.py says which one
(``[app] cdk`` in forkstage.toml, cdktf by default). Every public name of cdktf is here (cdktn
has them all, and a few more: those are here too when it runs); ``RUNTIME`` names the runtime.
Type checkers see cdktf's types: the two runtimes' classes have the same members.
"""

from typing import TYPE_CHECKING

from cdk.runtime import chosen

RUNTIME = chosen()

if TYPE_CHECKING or RUNTIME == "cdktf":
    from cdktf import *  # noqa: F403
else:
    from cdktn import *  # noqa: F403
