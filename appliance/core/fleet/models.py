"""The host table: one row per host of the cloud, written by that host's core."""
from __future__ import annotations

import peewee as pw

from appliance.core import db
from appliance.core.db import BaseModel, now

ACTIVE, DRAINED = "active", "drained"


class Host(BaseModel):
    name = pw.CharField(max_length=64, primary_key=True)      # Config.node_name
    # Where the other cores reach this one (Config.cluster_address); "" = a host alone.
    address = pw.CharField(max_length=255, default="")
    guest_subnet = pw.CharField(max_length=43)
    # What the host offers guests (Config.host_cpus / host_memory_mb, or the machine's).
    cpus = pw.FloatField()
    memory_mb = pw.IntegerField()
    # ACTIVE, or DRAINED by an admin: no new placements, its guests keep running.
    state = pw.CharField(max_length=16, default=ACTIVE)
    # Wall-clock seconds of the core's last heartbeat.
    heartbeat_at = pw.DoubleField(default=0.0)
    joined_at = pw.BigIntegerField(default=now)


db.register(Host)
