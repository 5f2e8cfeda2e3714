"""CDKTF entry point (`npx cdktf synth` runs this): the stage named in the environment.

`FORKSTAGE_STAGE` (falling back to `STAGE`) names the stage; the long-lived stages from
forkstage.toml are synthesized too, unless `FORKSTAGE_SYNTH_ONLY=1` (the wrapper's deploys).
"""

import os
import sys
from pathlib import Path

from cdk.settings import SettingsError, load_settings
from cdk.stage import StageError
from stacks.app import build_app


def main() -> int:
    stage = os.environ.get("FORKSTAGE_STAGE") or os.environ.get("STAGE") or None
    only = os.environ.get("FORKSTAGE_SYNTH_ONLY") == "1"
    try:
        build_app(load_settings(Path(__file__).resolve().parent), stage, only=only).synth()
    except (StageError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
