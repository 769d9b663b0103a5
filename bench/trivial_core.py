"""A gRPC servicer that answers GetSession with a constant and checks nothing:
the floor of the gateway -> gRPC hop, measured beside the real core."""
import asyncio
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from appliance.v1 import auth_pb2, auth_pb2_grpc


class Constant(auth_pb2_grpc.AuthServiceServicer):
    async def GetSession(self, request, context):
        return auth_pb2.User(username="admin", display_name="admin", user_id="AbC123", is_admin=True)


async def main(socket_path: str) -> None:
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(Constant(), server)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_insecure_port(f"unix:{socket_path}")
    await server.start()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
