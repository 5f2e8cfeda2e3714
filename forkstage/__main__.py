"""``python -m forkstage``: the same CLI as the ``forkstage`` script."""

from forkstage.cli import main

main()
