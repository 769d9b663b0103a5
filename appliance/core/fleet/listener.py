"""The cluster listener (``cluster_listen``): the core's services for the other
cores, over gRPC with mutual TLS (docs/cluster-peers.md).

A grpc.aio server of its own, so nothing of the Unix socket's (the call
multiplexer, the plaintext ``core_tcp``) is reachable here and its guard
knows every caller must be a peer: the handshake requires a client
certificate signed by the cluster CA (``require_client_auth``), and the guard
checks the verified identity again on every call (core/guard.py).
"""
from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from appliance.batching import MAX_MESSAGE
from appliance.config import Config, check_cluster
from appliance.core.fleet import membership
from appliance.core.guard import GuardedServer

SETTINGS = ("cluster_ca_file", "cluster_cert_file", "cluster_key_file")


class ClusterSettingsError(ValueError):
    pass


def tls_files(config: Config) -> tuple[bytes, bytes, bytes]:
    """(CA, certificate, key) PEM bytes; a clear error when one is not set or not readable."""
    try:
        check_cluster(config)
    except ValueError as e:
        raise ClusterSettingsError(str(e)) from None
    out = []
    for name in SETTINGS:
        path = Path(getattr(config, name))
        try:
            out.append(path.read_bytes())
        except OSError as e:
            raise ClusterSettingsError(f"{name}: cannot read {path}: {e.strerror}") from None
    return out[0], out[1], out[2]


def build(config: Config, guarded: GuardedServer, health_servicer: health.aio.HealthServicer) -> tuple[
        grpc.aio.Server, str]:
    """A server with every service ``guarded`` registered, bound (not started) on
    cluster_listen; returns it and its address."""
    ca, cert, key = tls_files(config)
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ])
    peers = GuardedServer(server, guarded.authenticate.tokens, cluster=membership.Members())
    for service, servicer in guarded.services:
        peers.add(service, servicer)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)
    try:
        port = server.add_secure_port(config.cluster_listen, credentials)
    except RuntimeError as e:
        raise ClusterSettingsError(f"cluster_listen: cannot listen on {config.cluster_listen}: {e}") from None
    return server, f"{config.cluster_listen.rsplit(':', 1)[0]}:{port}"
