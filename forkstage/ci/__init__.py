"""CI pipelines that give every pull request its own preview stage.

``render`` is pure (options in, file contents out) so the command, the tests and anyone
scripting forkstage get byte-identical pipelines.
"""

from __future__ import annotations

from forkstage.ci.options import CiOptionError, CiOptions
from forkstage.ci.render import MARKER, TARGETS, UnknownTarget, is_generated, render

__all__ = [
    "MARKER",
    "TARGETS",
    "CiOptionError",
    "CiOptions",
    "UnknownTarget",
    "is_generated",
    "render",
]
