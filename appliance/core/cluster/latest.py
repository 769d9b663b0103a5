"""Each host's latest snapshot, kept in the shared database so any host's
health stream reports every host (docs/cluster.md): the sampler of each core
writes its own row after every sample; a host whose row stops changing turns
"Unknown" in the stream (health.is_stale) like any stale snapshot."""
from __future__ import annotations

import json
from dataclasses import asdict, fields

import peewee as pw

from appliance.core import db
from appliance.core.cluster.readings import GuestReading, HostReading, Snapshot
from appliance.core.db import BaseModel


class HostSnapshot(BaseModel):
    name = pw.CharField(max_length=64, primary_key=True)
    taken_at = pw.DoubleField()
    body = pw.TextField()   # JSON: {"host": HostReading, "guests": [GuestReading]}

    class Meta:
        table_name = "host_snapshot"


db.register(HostSnapshot)


def encode(snapshot: Snapshot) -> str:
    return json.dumps({"host": asdict(snapshot.host), "guests": [asdict(g) for g in snapshot.guests]},
                      separators=(",", ":"))


def _known(kind, values: dict):
    """``kind(**values)`` with the fields this version knows (a newer host's row
    may carry more during a rolling upgrade)."""
    names = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in values.items() if k in names})


def decode(taken_at: float, body: str) -> Snapshot:
    data = json.loads(body)
    return Snapshot(timestamp=taken_at, host=_known(HostReading, data["host"]),
                    guests=[_known(GuestReading, g) for g in data["guests"]])


def store(snapshot: Snapshot) -> None:
    row = {"taken_at": snapshot.timestamp, "body": encode(snapshot)}
    (HostSnapshot.insert(name=snapshot.host.name, **row)
     .on_conflict(conflict_target=[HostSnapshot.name], update=row).execute())


def others(own_name: str) -> list[Snapshot]:
    """The latest snapshot of every other host, by name."""
    query = (HostSnapshot.select(HostSnapshot.taken_at, HostSnapshot.body)
             .where(HostSnapshot.name != own_name).order_by(HostSnapshot.name))
    return [decode(row.taken_at, row.body) for row in query]
