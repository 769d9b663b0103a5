"""The real gateway app whose unary calls are answered in-process at once (no
core, no gRPC): the ceiling of any core behind this gateway, measured beside
the baseline. Not a way to run the appliance."""
import asyncio
import sys
import tempfile

import grpc

from appliance.config import Config
from appliance.http.server import listen
from appliance.v1 import auth_pb2

USER = auth_pb2.User(username="admin", display_name="admin", user_id="AbC123", is_admin=True)


class Instant:
    """Stands in for appliance.http.multiplexed.Multiplexer."""

    def unary(self, method):
        async def call(request, metadata=(), timeout=None):
            await asyncio.sleep(0)  # a real upstream answers later, never inline
            return USER
        return call


async def main(port: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        channel = grpc.aio.insecure_channel(f"unix:{tmp}/no-core.sock")  # streaming routes only; unused here
        listen(Config(data_dir=tmp), channel, port=port, multiplexer=Instant())
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
