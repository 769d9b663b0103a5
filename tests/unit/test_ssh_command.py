"""The host a container's ssh_command names is the public host, whatever
address the SSH gateway listens on (the playbook's config: listen on every
address, tell users the host's public name)."""
from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from appliance import config as config_mod
from appliance.core import context as ctx
from appliance.core.auth import users
from appliance.core.auth.identity import Principal
from appliance.core.compute.service import ComputeServicer
from appliance.core.db import open_database
from appliance.drivers.fake import FakeDriver
from appliance.v1 import compute_pb2

# What playbooks/roles/appliance_config renders for an inventory host
# cloud.example (tests/install/test_static.py renders the real template).
ANSIBLE_STYLE = """\
http_host = "0.0.0.0"
http_port = 8080
public_host = "cloud.example"
ssh_listen = "0.0.0.0"
ssh_port = 2222
compute_domain = "compute.cloud.example"
guest_driver = "fake"
"""


def test_ssh_command_names_the_public_host_not_the_listen_address(tmp_path):
    toml = tmp_path / "appliance.toml"
    toml.write_text(ANSIBLE_STYLE + f'data_dir = "{tmp_path}"\n')
    config = config_mod.load(toml, env={})
    open_database(config.database_url)
    user = users.create_user("alice", "pw", password_hash="x")
    key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()

    async def main():
        servicer = ComputeServicer(config, FakeDriver())
        bound = ctx.bind(Principal(user=user, kind="session"), "")
        try:
            kid = (await servicer.CreateSshKey(compute_pb2.CreateSshKeyRequest(name="k", public_key=key), None)).id
            created = await servicer.CreateContainer(
                compute_pb2.CreateContainerRequest(name="box", ssh_key_ids=[kid]), None)
            got = await servicer.GetContainer(compute_pb2.ContainerRef(id=created.id), None)
            listed = await servicer.ListContainers(compute_pb2.ListContainersRequest(), None)
        finally:
            ctx.reset(bound)
            await asyncio.gather(*servicer.tasks, return_exceptions=True)
            await servicer.close()
        return created, got, listed

    created, got, listed = asyncio.run(asyncio.wait_for(main(), 20))
    expected = f"ssh {created.id}@cloud.example -p 2222"
    assert created.ssh_command == got.ssh_command == expected
    assert [c.ssh_command for c in listed.containers] == [expected]
