"""Stand-in Terraform providers: the real providers' schemas, served by local control planes.

``neon`` and ``cloudflare`` are started by Terraform (through launchers that
``localcloud.registry`` installs) under the real providers' source addresses, so the same
synthesized configuration deploys to the cloud or to this machine.
"""

import os

# The stand-ins start PostgreSQL binaries as another user (subprocess with user=, i.e. a real
# fork) from gRPC worker threads; gRPC's fork handlers then crash the child (SIGSEGV in initdb).
# It must be off before grpc is imported, hence here, in the package that imports it.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
