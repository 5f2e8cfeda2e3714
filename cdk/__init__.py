"""CDK constructs for forkstage (on cdktf or cdktn, see cdk.core): stage model, provider
bindings, cross-stage refs, backend."""

import os

from cdk.kernel import use_fast_host

# jsii prints a large end-of-life banner for Node 20 on every import of cdktf or cdktn; it is
# noise in every synth and CI log, so silence it before anything imports the runtime.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# Also before anything imports the runtime: the jsii kernel starts on the first import.
use_fast_host()
