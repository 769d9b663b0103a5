"""core/cluster/latest.py: each host's latest snapshot through the shared database."""
from __future__ import annotations

import json

from appliance.core.cluster import latest
from appliance.core.cluster.readings import GuestReading, HostReading, Snapshot
from appliance.core.db import open_database


def _snapshot(name: str, at: float) -> Snapshot:
    host = HostReading(name=name, cpu_cores=2, cpu_percent=12.5, memory_used_bytes=1 << 30,
                       memory_total_bytes=4 << 30, disk_used_bytes=5, disk_total_bytes=10)
    guest = GuestReading(id="abcd1234", name="web", owner_id="U1", state="running", cpu_nanocores=7,
                         memory_used_bytes=3, memory_limit_bytes=4, disk_used_bytes=5, disk_limit_bytes=6)
    return Snapshot(timestamp=at, host=host, guests=[guest])


def test_every_other_hosts_latest_snapshot_comes_back_whole(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    latest.store(_snapshot("a", 1.0))
    latest.store(_snapshot("b", 2.0))
    latest.store(_snapshot("b", 3.0))   # replaced, not added
    assert latest.others("a") == [_snapshot("b", 3.0)]
    assert [s.host.name for s in latest.others("nobody")] == ["a", "b"]


def test_a_newer_hosts_extra_fields_are_ignored():
    body = json.loads(latest.encode(_snapshot("b", 1.0)))
    body["host"]["gpu_percent"] = 3.0
    body["guests"][0]["gpu_nanocores"] = 1
    assert latest.decode(1.0, json.dumps(body)) == _snapshot("b", 1.0)
