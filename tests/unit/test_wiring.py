"""The core's wiring: build_server() registers every service of the contract,
each method behind its guard, with nothing registering itself on import."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from appliance import contract
from appliance.config import Config
from appliance.core.guard import GuardedServer
from appliance.core.handlers import method_handlers
from appliance.core.server import build_server
from appliance.v1 import auth_pb2, compute_pb2, sshgw_pb2, storage_pb2


def run(coro_fn):
    return asyncio.run(asyncio.wait_for(coro_fn(), 30))


@pytest.fixture
def config():
    # A short directory: the core's Unix socket path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="wiring") as data:
        yield Config(data_dir=data, guest_driver="fake", admin_password="pw-wiring-1")


def test_build_server_answers_every_service_each_behind_its_guard(config):
    async def scenario():
        core = build_server(config)
        await core.start()
        try:
            async with grpc.aio.insecure_channel(core.addresses[0]) as channel:
                async def code(method: str, request) -> grpc.StatusCode:
                    call = channel.unary_unary(method, request_serializer=type(request).SerializeToString,
                                               response_deserializer=lambda b: b)
                    try:
                        await call(request)
                    except grpc.aio.AioRpcError as e:
                        return e.code()
                    return grpc.StatusCode.OK

                # Each registered service refuses an anonymous caller: it is reached, and guarded.
                assert await code("/appliance.v1.AuthService/GetSession",
                                  auth_pb2.GetSessionRequest()) == grpc.StatusCode.UNAUTHENTICATED
                assert await code("/appliance.v1.ComputeService/ListContainers",
                                  compute_pb2.ListContainersRequest()) == grpc.StatusCode.UNAUTHENTICATED
                assert await code("/appliance.v1.StorageService/CreateNamespace",
                                  storage_pb2.CreateNamespaceRequest()) == grpc.StatusCode.UNAUTHENTICATED
                assert await code("/appliance.v1.SshGatewayService/Authorize",
                                  sshgw_pb2.AuthorizeRequest()) == grpc.StatusCode.UNAUTHENTICATED
                # A service not in the contract is not served.
                assert await code("/appliance.v1.Nothing/Here",
                                  auth_pb2.GetSessionRequest()) == grpc.StatusCode.UNIMPLEMENTED
                health = health_pb2_grpc.HealthStub(channel)
                for service in contract.SERVICES:
                    reply = await health.Check(health_pb2.HealthCheckRequest(service=service.full_name))
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await core.stop(grace=0)

    run(scenario)


def test_the_multiplexer_carries_every_unary_method_of_the_guarded_services(config):
    async def scenario():
        server = grpc.aio.server()
        guarded = GuardedServer(server, tokens=None)

        class Stub:
            def __getattr__(self, name):
                async def behavior(request, context):
                    return None
                return behavior

        for service in (contract.AUTH, contract.COMPUTE, contract.STORAGE, contract.CLUSTER, contract.METRICS,
                        contract.SSH_GATEWAY):
            guarded.add(service, Stub())
        unary = {m.path for m in contract.METHODS.values()
                 if m.descriptor.containing_service is not contract.MULTIPLEXER
                 and not m.client_streaming and not m.server_streaming}
        assert set(guarded.unary) == unary
        await server.stop(None)

    run(scenario)


def test_a_servicer_missing_a_method_of_its_service_fails_at_registration():
    class Partial:
        async def Login(self, request, context):
            return None

    with pytest.raises(TypeError, match="lacks GetSession of appliance.v1.AuthService"):
        method_handlers(contract.AUTH, Partial())


def test_importing_a_servicer_registers_nothing_and_needs_no_server():
    # The servicers do not import the server module (no registry filled on import, no cycle).
    code = ("import sys\n"
            "import appliance.core.compute.service, appliance.core.compute.sshgw, appliance.core.storage.servicer\n"
            "import appliance.core.auth.servicer, appliance.core.multiplexer\n"
            "print('appliance.core.server' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
