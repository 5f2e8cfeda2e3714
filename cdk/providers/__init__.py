"""Typed provider bindings rendered from schema snapshots kept in the repo.

The prebuilt CDKTF provider packages cost seconds of import per synth and ``cdktf get`` needs the
registry; small generated classes on the runtime's base classes (cdktf's or cdktn's, through
cdk.core) give the same typed surface for free.
"""
