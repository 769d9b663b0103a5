"""A gRPC servicer that answers GetSession with a constant and checks nothing:
the floor of the gateway -> gRPC hop, measured beside the real core. It serves
GetSession both as a plain unary RPC and over the call multiplexer, as the
core does."""
import asyncio
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from appliance.core.multiplexer import CallMultiplexerServicer
from appliance.v1 import auth_pb2, auth_pb2_grpc, mux_pb2_grpc

USER = auth_pb2.User(username="admin", display_name="admin", user_id="AbC123", is_admin=True)


class Constant(auth_pb2_grpc.AuthServiceServicer):
    async def GetSession(self, request, context):
        return USER


async def main(socket_path: str) -> None:
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(Constant(), server)
    handler = grpc.unary_unary_rpc_method_handler(
        Constant().GetSession, request_deserializer=auth_pb2.GetSessionRequest.FromString,
        response_serializer=auth_pb2.User.SerializeToString)
    mux_pb2_grpc.add_CallMultiplexerServicer_to_server(
        CallMultiplexerServicer({"/appliance.v1.AuthService/GetSession": handler}), server)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_insecure_port(f"unix:{socket_path}")
    await server.start()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
