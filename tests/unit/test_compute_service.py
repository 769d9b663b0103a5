"""ComputeServicer in-process on the fake driver: the paths a REST test cannot
provoke (failed starts, crashes, a core restart mid-start, orphans, a lagging
status stream, a broken backend)."""
from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from appliance.config import Config
from appliance.core import context as ctx
from appliance.core.auth import users
from appliance.core.auth.identity import Principal
from appliance.core.compute import service as compute
from appliance.core.compute.models import Container, SshKey
from appliance.core.db import open_database
from appliance.drivers.base import GuestSpec
from appliance.drivers.fake import FakeDriver
from appliance.errors import TooManyRequests
from appliance.v1 import compute_pb2


@pytest.fixture
def env(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    user = users.create_user("alice", "pw", password_hash="x")
    key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return Config(data_dir=str(tmp_path), guest_driver="fake"), user, key


def run(coro_fn):
    return asyncio.run(asyncio.wait_for(coro_fn(), 20))


class Harness:
    def __init__(self, config, user, driver=None, booted=True):
        """``booted``: as if the core's start-up had reconciled (tests of a
        restart pass False and call startup() themselves)."""
        self.driver = driver or FakeDriver()
        self.svc = compute.ComputeServicer(config, self.driver)
        if booted:
            self.svc.booted.set()
        self.user = user
        self.principal = Principal(user=user, kind="session")

    def __enter__(self):
        self.tokens = ctx.bind(self.principal, "")
        return self

    def __exit__(self, *exc):
        ctx.reset(self.tokens)

    async def close(self):
        await self.svc.close()

    async def key(self, public):
        return (await self.svc.CreateSshKey(compute_pb2.CreateSshKeyRequest(name="k", public_key=public), None)).id

    async def create(self, key_id, **kw):
        req = compute_pb2.CreateContainerRequest(name="box", ssh_key_ids=[key_id], **kw)
        return (await self.svc.CreateContainer(req, None)).id

    async def get(self, cid):
        return await self.svc.GetContainer(compute_pb2.ContainerRef(id=cid), None)

    async def settle(self):
        while self.svc.tasks:
            await asyncio.gather(*self.svc.tasks, return_exceptions=True)


def test_failed_start_shows_the_reason_and_can_be_retried(env):
    config, user, key = env

    async def main():
        with Harness(config, user) as h:
            h.driver.fail_next_start = "no space left"
            cid = await h.create(await h.key(key))
            await h.settle()
            c = await h.get(cid)
            assert c.status == "error" and "no space left" in c.error
            await h.svc.StartContainer(compute_pb2.ContainerRef(id=cid), None)
            await h.settle()
            c = await h.get(cid)
            assert c.status == "running" and not c.HasField("error")
            await h.close()
    run(main)


def test_a_crash_is_noticed_and_published(env):
    config, user, key = env

    async def main():
        with Harness(config, user) as h:
            cid = await h.create(await h.key(key))
            await h.settle()
            with h.svc.bus.subscribe(user.public_id) as sub:
                h.driver.crash(cid)
                await h.svc.reconcile()
                event = await sub.__anext__()
            assert (event.container_id, event.status) == (cid, "stopped")
            assert (await h.get(cid)).status == "stopped"
            await h.close()
    run(main)


def test_core_restart_keeps_running_marks_dead_resumes_interrupted_and_sweeps_orphans(env):
    config, user, key = env
    driver = FakeDriver()

    async def first():
        with Harness(config, user, driver) as h:
            kid = await h.key(key)
            keep, dead = await h.create(kid), await h.create(kid)
            await h.settle()
            await h.close()
            return keep, dead, kid

    keep, dead, kid = run(first)
    driver.crash(dead)
    # a create the core accepted but never started (it stopped first)
    interrupted = Container.create(public_id="intrupt1", owner=user, name="x", status="initializing",
                                   instance_type="nano", memory_mb=512, cpus=0.5, storage_gb=1,
                                   ip="10.217.0.99")
    driver.spawn(GuestSpec(id="orphan01", ip="10.217.0.98", memory_mb=64, cpus=1, storage_gb=1))

    async def second():
        with Harness(config, user, driver, booted=False) as h:
            await h.svc.startup()
            await h.settle()
            await h.svc.sweep()
            states = {cid: (await h.get(cid)).status for cid in (keep, dead, interrupted.public_id)}
            await h.close()
            return states

    assert run(second) == {keep: "running", dead: "stopped", interrupted.public_id: "running"}
    assert "orphan01" not in driver.guests
    assert driver.guests[keep].starts == 1  # kept, not restarted


def test_after_the_whole_host_went_down_a_read_before_the_boot_pass_does_not_keep_guests_stopped(env):
    """A client asking for a container between the core's start and its
    first reconciliation saw the dead guest marked stopped, and the boot pass
    then left it stopped (a CI failure)."""
    config, user, key = env
    driver = FakeDriver()

    async def first():
        with Harness(config, user, driver) as h:
            cid = await h.create(await h.key(key))
            await h.settle()
            await h.close()
            return cid

    cid = run(first)
    driver.crash(cid)   # every guest gone: the host went down

    async def second():
        with Harness(config, user, driver, booted=False) as h:
            reading = asyncio.create_task(h.get(cid))   # asked before the boot pass: it waits for it
            await asyncio.sleep(0.1)
            assert not reading.done()
            await h.svc.startup()
            seen = (await reading).status
            await h.settle()
            after = (await h.get(cid)).status
            await h.close()
            return seen, after

    seen, after = run(second)
    assert seen in ("pending", "initializing", "running") and after == "running"
    assert driver.guests[cid].starts == 2


def test_user_deletion_destroys_guests_and_keys(env):
    config, user, key = env

    async def main():
        with Harness(config, user) as h:
            cid = await h.create(await h.key(key))
            await h.settle()
            await users.delete_user(user)
            assert cid not in h.driver.guests
            assert Container.select().count() == 0 and SshKey.select().count() == 0
            await h.close()
    run(main)


def test_a_lagging_status_stream_is_ended_with_an_error(env):
    config, user, key = env

    async def main():
        with Harness(config, user) as h:
            kid = await h.key(key)
            stream = h.svc.WatchContainers(compute_pb2.WatchContainersRequest(), None)
            first = await stream.__anext__()
            assert first.type == "containers"
            cid = await h.create(kid)
            await h.settle()
            row = Container.get(Container.public_id == cid)
            for _ in range(300):  # more than the queue holds, nobody reading
                h.svc._publish(row)
            with pytest.raises(TooManyRequests):
                while True:
                    await stream.__anext__()
            await h.close()
    run(main)


class BrokenHost(FakeDriver):
    def prepare_host(self, build_image=False):
        raise RuntimeError("libvirtd does not answer on lxc:///")


def test_a_broken_backend_is_reported_not_fatal(env):
    config, user, key = env

    async def main():
        with Harness(config, user, BrokenHost()) as h:
            cid = await h.create(await h.key(key))
            await h.settle()
            c = await h.get(cid)
            assert c.status == "error" and "libvirtd does not answer" in c.error
            listed = await h.svc.ListContainers(compute_pb2.ListContainersRequest(), None)
            assert [x.id for x in listed.containers] == [cid]
            await h.close()
    run(main)


def test_stopping_a_container_that_never_ran_on_a_broken_backend_works(env):
    config, user, key = env

    async def main():
        with Harness(config, user, BrokenHost()) as h:
            cid = await h.create(await h.key(key))
            await h.settle()
            c = await h.svc.StopContainer(compute_pb2.ContainerRef(id=cid), None)
            assert c.status == "stopped"
            await h.close()
    run(main)


def test_create_beyond_the_host_disk_is_refused_and_nothing_is_made(env):
    """Volumes are sparse: without a reservation one user could be granted
    more storage than the host has. The create beyond it is 409 (Conflict),
    with no row, no guest and no reservation left."""
    from appliance.errors import Conflict
    config, user, key = env

    async def main():
        with Harness(config, user) as h:
            h.driver.disk_bytes = 12 << 30
            kid = await h.key(key)
            await h.create(kid, storage_gb=5)
            await h.create(kid, storage_gb=5)    # 10 of 12 GB promised
            with pytest.raises(Conflict) as e:
                await h.create(kid, storage_gb=5)
            assert "not enough disk" in e.value.message
            assert Container.select().count() == 2 and len(h.driver.reserved) == 2
            await h.settle()
            assert len(h.driver.guests) == 2
            await h.create(kid, storage_gb=2)    # what still fits is accepted
            await h.settle()
            await h.close()
    run(main)


# -- red team round 3: volume reservations (moved from tests/integration/test_redteam_guest.py:
# it needs no root, so it runs in every unit run) ----------------------------------------


def test_a_refused_create_leaves_no_disk_reservation_behind(tmp_path):
    """``CreateContainer`` reserves the volume's disk and then, in the same
    transaction, inserts the ingress rules: a rule on a port another
    container already forwards raises Conflict *after* the reservation, the
    row is rolled back, the reservation stays (``VolumeStore`` keeps it
    ``RESERVATION_SECONDS`` = 600 s). One tenant repeating that request
    (each refused, so never counted against its container limit) promises
    the whole host disk to nothing: every other tenant's create is refused
    with "not enough disk" for the next ten minutes, and again after."""
    import asyncio

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from appliance.config import Config
    from appliance.core import context as ctx
    from appliance.core.auth import users
    from appliance.core.auth.identity import Principal
    from appliance.core.compute import service as compute
    from appliance.core.db import open_database
    from appliance.drivers.fake import FakeDriver
    from appliance.errors import Conflict
    from appliance.v1 import compute_pb2

    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    config = Config(data_dir=str(tmp_path), guest_driver="fake")
    driver = FakeDriver()
    driver.disk_bytes = 12 << 30
    key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    alice = users.create_user("alice", "pw", password_hash="x")
    bob = users.create_user("bob", "pw", password_hash="x")
    svc = compute.ComputeServicer(config, driver)

    async def as_user(user, coro_fn):
        tokens = ctx.bind(Principal(user=user, kind="session"), "")
        try:
            return await coro_fn()
        finally:
            ctx.reset(tokens)

    key_ids = {}

    async def create(user, storage, ports=()):
        async def go():
            if user.id not in key_ids:
                key_ids[user.id] = (await svc.CreateSshKey(
                    compute_pb2.CreateSshKeyRequest(name="k", public_key=key), None)).id
            kid = key_ids[user.id]
            rules = [compute_pb2.IngressRuleSpec(port=p) for p in ports]
            req = compute_pb2.CreateContainerRequest(name="box", ssh_key_ids=[kid], storage_gb=storage,
                                                     ingress_rules=rules)
            return (await svc.CreateContainer(req, None)).id
        return await as_user(user, go)

    async def main():
        await create(alice, 1, ports=(8123,))          # alice forwards port 8123
        refused = 0
        for _ in range(3):                             # the same port again: refused each time
            try:
                await create(alice, 5, ports=(8123,))
            except Conflict as e:
                assert "port 8123" in e.message or "not enough disk" in e.message, e.message
                refused += 1
        while svc.tasks:
            await asyncio.gather(*svc.tasks, return_exceptions=True)
        try:
            await create(bob, 5)
            bob_result = "created"
        except Conflict as e:
            bob_result = f"refused: {e.message}"
        while svc.tasks:
            await asyncio.gather(*svc.tasks, return_exceptions=True)
        await svc.close()
        return refused, bob_result

    refused, bob_result = asyncio.run(asyncio.wait_for(main(), 20))
    orphans = {k: v for k, v in driver.reserved.items() if k not in driver.guests}
    print(f"\nalice's refused creates: {refused}; reservations without a container: "
          f"{sum(orphans.values()) / 2**30:g} GB; bob's 5 GB create: {bob_result}")
    assert refused == 3
    assert not orphans, f"refused creates left {sum(orphans.values()) / 2**30:g} GB reserved"
    assert bob_result == "created", f"another tenant was refused by reservations of nothing: {bob_result}"


def test_forwarding_follows_running_containers_through_the_drivers_applier(env):
    """The fake driver's applier gets what an LXC host would forward: the
    rules of running containers only, re-applied at every status change."""
    import socket

    from appliance.drivers.base import IngressRoute
    config, user, key = env
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = 8000 + s.getsockname()[1] % 1000
    while port in config_ports(config):
        port += 1

    async def main():
        with Harness(config, user) as h:
            req = compute_pb2.CreateContainerRequest(
                name="box", ssh_key_ids=[await h.key(key)],
                ingress_rules=[compute_pb2.IngressRuleSpec(port=port, target_port=22),
                               compute_pb2.IngressRuleSpec(port=80)])
            cid = (await h.svc.CreateContainer(req, None)).id
            await h.settle()
            await h.svc.ingress.sync()
            ip = (await h.get(cid)).external_ip
            assert sorted(h.driver.ingress.routes, key=lambda r: r.port) == [
                IngressRoute(cid, ip, 80, 80), IngressRoute(cid, ip, port, 22)]
            assert h.driver.ingress.proxy_running and h.driver.ingress.running_addresses == {ip}
            await h.svc.StopContainer(compute_pb2.ContainerRef(id=cid), None)
            await h.svc.ingress.sync()
            assert h.driver.ingress.routes == [] and not h.driver.ingress.proxy_running
            await h.close()
    run(main)


def config_ports(config):
    from appliance.core.compute import hostports
    return hostports.reserved(config) | hostports.bound_ports()
