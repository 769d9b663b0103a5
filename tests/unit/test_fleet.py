"""Membership and liveness (core/fleet) on a real SQLite: the host row at
start, drained kept across restarts, overlapping guest subnets refused, the
heartbeat's down/up transitions, and what the compute side makes of them
(own containers only, "unknown" for a down host's)."""
from __future__ import annotations

import asyncio
import time

import pytest

from appliance.config import Config
from appliance.core.auth import users
from appliance.core.compute import service as compute
from appliance.core.compute.models import Container
from appliance.core.db import open_database
from appliance.core.fleet import membership
from appliance.core.fleet.heartbeat import Heartbeat
from appliance.core.fleet.models import DRAINED, Host
from appliance.drivers.base import GuestSpec
from appliance.drivers.fake import FakeDriver


@pytest.fixture
def db(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return tmp_path


def cfg(tmp_path, name, subnet, **kw):
    return Config(data_dir=str(tmp_path), host_name=name, guest_subnet=subnet, heartbeat_seconds=1,
                  host_dead_seconds=3, **kw)


def test_join_writes_the_row_and_keeps_drained_across_restarts(db):
    a = cfg(db, "a", "10.217.1.0/24", host_cpus=3, host_memory_mb=2048, cluster_advertise="10.0.0.1:7443")
    membership.join(a)
    row = Host.get(Host.name == "a")
    assert (row.address, row.guest_subnet, row.cpus, row.memory_mb, row.state) == \
        ("10.0.0.1:7443", "10.217.1.0/24", 3.0, 2048, "active")
    assert time.time() - row.heartbeat_at < 5
    Host.update(state=DRAINED).where(Host.name == "a").execute()
    membership.join(cfg(db, "a", "10.217.1.0/24", host_cpus=5))   # restarted with other settings
    row = Host.get(Host.name == "a")
    assert (row.state, row.cpus) == (DRAINED, 5.0)
    assert row.memory_mb == membership.machine_memory_mb() > 0      # 0 = the machine's


def test_an_overlapping_guest_subnet_is_refused(db):
    membership.join(cfg(db, "a", "10.217.1.0/24"))
    with pytest.raises(membership.MembershipError, match=r"overlaps host 'a'.*10\.217\.1\.0/24"):
        membership.join(cfg(db, "b", "10.217.0.0/16"))
    assert [h.name for h in Host.select()] == ["a"]
    membership.join(cfg(db, "b", "10.217.2.0/24"))
    membership.join(cfg(db, "a", "10.217.1.0/24"))                  # its own row is no conflict


def test_a_host_name_in_use_by_a_live_core_elsewhere_is_refused(db):
    membership.join(cfg(db, "a", "10.217.1.0/24", cluster_advertise="10.0.0.1:7443"))
    with pytest.raises(membership.MembershipError, match=r"'a' is in use by a live core at 10\.0\.0\.1:7443"):
        membership.join(cfg(db, "a", "10.217.2.0/24", cluster_advertise="10.0.0.2:7443"))
    assert Host.get(Host.name == "a").address == "10.0.0.1:7443"
    membership.join(cfg(db, "a", "10.217.1.0/24", cluster_advertise="10.0.0.1:7443"))   # a restart: same address
    Host.update(heartbeat_at=time.time() - 10).where(Host.name == "a").execute()      # the old core is gone
    membership.join(cfg(db, "a", "10.217.1.0/24", cluster_advertise="10.0.0.2:7443"))   # the host moved
    assert Host.get(Host.name == "a").address == "10.0.0.2:7443"


def test_alive_is_a_heartbeat_within_host_dead_seconds():
    row = Host(name="x", heartbeat_at=100.0)
    assert membership.alive(row, 102.9, 3.0) and not membership.alive(row, 103.0, 3.0)


def test_the_heartbeat_reports_hosts_going_down_and_coming_back(db):
    a, b = cfg(db, "a", "10.217.1.0/24"), cfg(db, "b", "10.217.2.0/24")
    membership.join(a)
    membership.join(b)
    seen = []
    beat = Heartbeat(a, [lambda down, gone, back: seen.append((set(down), set(gone), set(back)))])
    t = time.time()
    beat.beat(t)
    beat.beat(t + 2)
    beat.beat(t + 4)                        # b silent for 4 s > 3
    beat.beat(t + 5)
    membership.beat(b, t + 5.5)
    beat.beat(t + 6)
    assert seen == [(set(), set(), set()), (set(), set(), set()), ({"b"}, {"b"}, set()),
                    ({"b"}, set(), set()), (set(), set(), {"b"})]
    assert Host.get(Host.name == "a").heartbeat_at == t + 6


def test_a_host_down_at_start_is_known_but_not_announced(db):
    a, b = cfg(db, "a", "10.217.1.0/24"), cfg(db, "b", "10.217.2.0/24")
    membership.join(b)
    membership.join(a)
    seen = []
    beat = Heartbeat(a, [lambda down, gone, back: seen.append((set(down), set(gone)))])
    beat.beat(time.time() + 10)
    assert seen == [({"b"}, set())] and beat.down == {"b"}


def test_compute_owns_its_rows_and_shows_a_down_hosts_containers_unknown(db):
    user = users.create_user("alice", "pw", password_hash="x")
    a = cfg(db, "a", "10.217.1.0/24", guest_driver="fake")

    def row(cid, host, n):
        return Container.create(public_id=cid, owner=user, name=cid, status="running", instance_type="nano",
                                memory_mb=512, cpus=0.5, storage_gb=1, ip=f"10.217.9.{n}", host=host,
                                provisioned=True)

    old, mine, theirs = row("oldrow01", "", 1), row("mine0001", "a", 2), row("theirs01", "b", 3)
    driver = FakeDriver()
    driver.spawn(GuestSpec(id=mine.public_id, ip=mine.ip, memory_mb=512, cpus=0.5, storage_gb=1))

    async def main():
        svc = compute.ComputeServicer(a, driver)
        await svc.startup()
        # "" is adopted; b's running row is not a's to judge (a's driver does not run it)
        assert {r.public_id: r.host for r in Container.select()} == \
            {old.public_id: "a", mine.public_id: "a", theirs.public_id: "b"}
        statuses = {r.public_id: r.status for r in Container.select()}
        assert statuses == {old.public_id: "stopped", mine.public_id: "running", theirs.public_id: "running"}
        assert (await svc._render(theirs)).status == "running"
        with svc.bus.subscribe(user.public_id) as sub:
            svc.hosts_changed(frozenset({"b"}), frozenset({"b"}), frozenset())
            event = await asyncio.wait_for(sub.__anext__(), 5)
            assert (event.container_id, event.status) == (theirs.public_id, "unknown")
            assert (await svc._render(theirs)).status == "unknown"
            assert (await svc._render(mine)).status == "running"
            assert Container.get(Container.public_id == theirs.public_id).status == "running"   # never stored
            svc.hosts_changed(frozenset(), frozenset(), frozenset({"b"}))
            event = await asyncio.wait_for(sub.__anext__(), 5)
            assert (event.container_id, event.status) == (theirs.public_id, "running")
        await svc.sweep()
        assert set(driver.guests) == {mine.public_id}
        await svc.close()
    asyncio.run(main())


def test_a_heartbeat_writes_a_missing_row_again(db):
    a = cfg(db, "a", "10.217.1.0/24", host_cpus=2, host_memory_mb=1024)
    membership.join(a)
    Host.delete().execute()
    membership.beat(a, time.time())
    assert Host.get(Host.name == "a").memory_mb == 1024
