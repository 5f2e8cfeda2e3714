"""Run a stand-in as a provider plugin that Terraform starts like any provider binary.

Terraform talks to a provider over gRPC after a go-plugin handshake line on stdout; this module
does the handshake, the controller and stdio services go-plugin expects, and the shutdown. The
tfplugin6 service itself is ``localcloud.providers.servicer``.
"""

from __future__ import annotations

import base64
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from tf.gen import grpc_controller_pb2 as controller_pb
from tf.gen import grpc_controller_pb2_grpc as controller_rpc
from tf.gen import grpc_stdio_pb2_grpc as stdio_rpc
from tf.gen import tfplugin_pb2_grpc as rpc

from localcloud.providers.servicer import Servicer
from localcloud.providers.standin import StandIn
from localcloud.providers.tls import tls_cache_path, tls_material

# go-plugin's handshake for Terraform providers (public constants of the plugin protocol).
MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"


class _Controller(controller_rpc.GRPCControllerServicer):
    def __init__(self, on_stop: Callable[[], None]) -> None:
        self.on_stop = on_stop

    def Shutdown(self, request: Any, context: Any) -> Any:
        self.on_stop()
        return controller_pb.Empty()


class _Stdio(stdio_rpc.GRPCStdioServicer):
    def StreamStdio(self, request: Any, context: Any) -> Any:
        return iter(())


def serve(standin: StandIn) -> None:
    """Run as a Terraform provider plugin until Terraform shuts us down."""
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        print(
            f"This is forkstage's local stand-in for the Terraform provider {standin.address}.\n"
            "Terraform starts it; it is not meant to be run by hand.",
            file=sys.stderr,
        )
        raise SystemExit(1)
    # Terraform forwards Ctrl-C to the whole process group and then stops us through the
    # protocol; dying on SIGINT mid-apply would leave half-made resources.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())

    key_pem, cert_pem, der = tls_material(tls_cache_path())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    rpc.add_ProviderServicer_to_server(Servicer(standin), server)
    controller_rpc.add_GRPCControllerServicer_to_server(_Controller(stopped.set), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(_Stdio(), server)
    with tempfile.TemporaryDirectory(prefix="forkstage-tfplugin-") as tmp:
        address = f"{tmp}/plugin.sock"
        server.add_secure_port(
            f"unix:{address}",
            grpc.ssl_server_credentials([(key_pem, cert_pem)], require_client_auth=False),
        )
        server.start()
        cert_b64 = base64.b64encode(der).decode().rstrip("=")
        sys.stdout.write(f"1|6|unix|{address}|grpc|{cert_b64}\n")
        sys.stdout.flush()
        parent = os.getppid()
        # Also stop if Terraform died without telling us (we get re-parented).
        while not stopped.wait(0.5):
            if os.getppid() != parent:
                break
        server.stop(grace=1).wait()
