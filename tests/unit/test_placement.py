"""The placement scheduler (core/compute/placement.py) on a real SQLite:
filters (drained, down, capacity x overcommit), weights (free memory, then
CPU, then the name) and the 409 when no host fits."""
from __future__ import annotations

import itertools
import time
from dataclasses import replace

import pytest

from appliance.config import Config
from appliance.core.auth import users
from appliance.core.compute import placement
from appliance.core.compute.models import Container
from appliance.core.db import open_database
from appliance.core.fleet.models import ACTIVE, DRAINED, Host
from appliance.errors import Conflict

_ids = itertools.count(1)


@pytest.fixture
def config(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    users.create_user("alice", "pw", password_hash="x")
    # this host: "me", 2 cpus x 4 (cpu_overcommit), 4096 MiB x 1
    return Config(data_dir=str(tmp_path), host_name="me", host_cpus=2, host_memory_mb=4096,
                  heartbeat_seconds=1, host_dead_seconds=3)


def host(name, cpus=2.0, memory_mb=4096, state=ACTIVE, age=0.0, subnet=None):
    n = next(_ids)
    return Host.create(name=name, guest_subnet=subnet or f"10.217.{n}.0/24", cpus=cpus, memory_mb=memory_mb,
                       state=state, heartbeat_at=time.time() - age, address=f"10.231.0.{n % 250 + 1}:7443")


def container(on, cpus=0.5, memory_mb=512, status="running"):
    n = next(_ids)
    return Container.create(public_id=f"c{n:07d}", owner=1, name="x", status=status, instance_type="nano",
                            memory_mb=memory_mb, cpus=cpus, storage_gb=1, ip=f"10.9.{n // 250}.{n % 250}", host=on)


def test_a_host_alone_places_on_itself_even_before_its_row_is_written(config):
    assert placement.choose_host(config, 0.5, 512) == "me"


def test_most_free_memory_fraction_wins(config):
    host("me", memory_mb=8192)
    host("big", memory_mb=16384)
    container("me", memory_mb=4096)       # me: 50 % free
    container("big", memory_mb=4096)      # big: 75 % free
    assert placement.choose_host(config, 0.5, 512) == "big"
    container("big", memory_mb=8192)      # big: 25 % free
    assert placement.choose_host(config, 0.5, 512) == "me"


def test_free_cpu_breaks_a_memory_tie_and_the_name_breaks_a_full_tie(config):
    host("me")
    host("b")
    host("a")
    assert placement.choose_host(config, 0.5, 512) == "a"   # all empty: by name
    container("a", cpus=2.0, memory_mb=1024)
    container("b", cpus=1.0, memory_mb=1024)
    container("me", cpus=1.0, memory_mb=1024)
    assert placement.choose_host(config, 0.5, 512) == "b"   # same memory; b and me freest on CPU, b by name


def test_capacity_times_overcommit_and_every_status_reserves(config):
    host("me")                                     # 2 cpus x 4 = 8; 4096 MiB x 1
    for status in ("running", "stopped", "error", "pending"):
        container("me", cpus=1.875, memory_mb=512, status=status)   # 7.5 cpus, 2048 MiB reserved
    assert placement.choose_host(config, 0.5, 512) == "me"
    with pytest.raises(Conflict, match="no host has room for 1 cpus and 512 MiB"):
        placement.choose_host(config, 1.0, 512)
    with pytest.raises(Conflict, match="1 full"):
        placement.choose_host(config, 0.5, 2049)
    assert placement.choose_host(replace(config, memory_overcommit=1.5), 0.5, 4096) == "me"   # 6144 MiB


def test_drained_and_down_hosts_get_nothing_but_this_host_is_always_alive(config):
    host("me", age=3600)                           # this core's own heartbeat is late: it still runs
    host("drained", memory_mb=65536, state=DRAINED)
    host("dead", memory_mb=65536, age=3.5)
    host("late", memory_mb=32768, age=2.5)         # within host_dead_seconds: alive
    assert placement.choose_host(config, 0.5, 512) == "late"
    Host.update(state=DRAINED).where(Host.name << ["late", "me"]).execute()
    with pytest.raises(Conflict) as e:
        placement.choose_host(config, 0.5, 512)
    assert "3 drained, 1 down" in e.value.message


def test_a_host_other_cores_cannot_reach_gets_nothing(config):
    host("me")
    big = host("no-address", memory_mb=65536)   # shares the database without a cluster port
    Host.update(address="").where(Host.name == big.name).execute()
    assert placement.choose_host(config, 0.5, 512) == "me"
    Host.update(state=DRAINED).where(Host.name == "me").execute()
    with pytest.raises(Conflict, match="1 drained, 1 unreachable"):
        placement.choose_host(config, 0.5, 512)


def test_no_hosts_at_all_is_a_conflict_too(config):
    host("me", state=DRAINED)
    with pytest.raises(Conflict, match="1 drained"):
        placement.choose_host(config, 0.5, 512)


def test_loads_is_one_aggregate_per_host(config):
    container("x", cpus=1, memory_mb=100)
    container("x", cpus=0.5, memory_mb=200, status="stopped")
    container("y", cpus=2, memory_mb=300)
    assert placement.loads() == {"x": placement.Load(1.5, 300, 2), "y": placement.Load(2.0, 300, 1)}


def test_a_guest_gets_its_address_from_its_hosts_subnet(config):
    host("b", subnet="10.217.5.0/24")
    assert placement.guest_subnet(config, "b") == "10.217.5.0/24"
    assert placement.guest_subnet(config, "me") == config.guest_subnet
