"""The cdktf app (cdktf.json runs `python3 main.py`): the stage named in the environment.

`FORKSTAGE_STAGE` or `STAGE` names the stage, whose stack is then synthesized alone; with none,
the long-lived stages from forkstage.toml are. forkstage's ``run`` does the rest (the Worker
bundle, the prepared-shell gate, one-line errors): see forkstage/app.py.
"""

from forkstage.app import run

run("stacks.app:AppStack", __file__)
