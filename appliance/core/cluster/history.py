"""Host metrics history in the database, downsampled and bounded.

One table, ``metric_sample``: a row per (host, level, bucket start). Level 0
holds the raw samples; levels 60, 300 and 900 (seconds) hold the running
average of the samples that fell into each bucket (``n`` of them), updated
by every new sample. A sample is written in one transaction: its raw row
and its three bucket updates are all there after a crash, or none is.

Kept per level (``RETENTION``): raw 2 h, 1 min 12 h, 5 min 48 h, 15 min 8 days,
so a host has at most ~3,500 rows whatever the uptime; older rows are pruned
(``prune``, every minute by the sampler). Plain SQL through peewee (an
upsert with ``ON CONFLICT``): the same on SQLite and PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import peewee as pw

from appliance.core import db
from appliance.core.db import BaseModel

RAW = 0
# level -> seconds kept
RETENTION = {RAW: 2 * 3600, 60: 12 * 3600, 300: 48 * 3600, 900: 8 * 86400}
BUCKETS = (60, 300, 900)
NAMES = {RAW: "raw", 60: "1m", 300: "5m", 900: "15m"}
LEVELS = {name: level for level, name in NAMES.items()}


class MetricSample(BaseModel):
    host = pw.CharField(max_length=255)
    level = pw.IntegerField()        # 0 raw, else the bucket width in seconds
    t_ms = pw.BigIntegerField()      # sample time, or bucket start (unix ms)
    cpu = pw.FloatField()            # percent of all cores
    mem = pw.FloatField()            # percent of memory
    disk = pw.FloatField()           # percent of the data disk
    n = pw.IntegerField(default=1)   # samples averaged into this row

    class Meta:
        table_name = "metric_sample"
        primary_key = pw.CompositeKey("host", "level", "t_ms")


db.register(MetricSample)


@dataclass(frozen=True)
class Point:
    t_ms: int
    cpu: float
    mem: float
    disk: float


def record(host: str, t: float, cpu: float, mem: float, disk: float) -> None:
    """Store one sample of ``host`` taken at unix time ``t``: its raw row and
    its share of each bucket's average, in one transaction."""
    t_ms = int(t * 1000)
    key = [MetricSample.host, MetricSample.level, MetricSample.t_ms]
    n, excluded = MetricSample.n, pw.EXCLUDED
    with db.database.atomic():
        MetricSample.insert(host=host, level=RAW, t_ms=t_ms, cpu=cpu, mem=mem, disk=disk, n=1).on_conflict(
            conflict_target=key, preserve=[MetricSample.cpu, MetricSample.mem, MetricSample.disk]).execute()
        for width in BUCKETS:
            start = t_ms - t_ms % (width * 1000)
            MetricSample.insert(host=host, level=width, t_ms=start, cpu=cpu, mem=mem, disk=disk, n=1).on_conflict(
                conflict_target=key, update={
                    MetricSample.cpu: (MetricSample.cpu * n + excluded.cpu) / (n + 1),
                    MetricSample.mem: (MetricSample.mem * n + excluded.mem) / (n + 1),
                    MetricSample.disk: (MetricSample.disk * n + excluded.disk) / (n + 1),
                    MetricSample.n: n + 1,
                }).execute()


def prune(host: str, now: float) -> int:
    """Delete ``host``'s rows older than their level's retention; rows deleted."""
    now_ms = int(now * 1000)
    deleted = 0
    with db.database.atomic():
        for level, keep in RETENTION.items():
            deleted += MetricSample.delete().where(
                (MetricSample.host == host) & (MetricSample.level == level)
                & (MetricSample.t_ms < now_ms - keep * 1000)).execute()
    return deleted


def series(level: int, start: float, end: float, host: str | None = None) -> dict[str, list[Point]]:
    """Stored points of ``level`` with start <= t <= end, per host, ascending.
    A bucket is included when its start lies in the span."""
    query = (MetricSample.select(MetricSample.host, MetricSample.t_ms, MetricSample.cpu, MetricSample.mem,
                                 MetricSample.disk)
             .where((MetricSample.level == level) & (MetricSample.t_ms >= int(start * 1000))
                    & (MetricSample.t_ms <= int(end * 1000))))
    if host is not None:
        query = query.where(MetricSample.host == host)
    out: dict[str, list[Point]] = {}
    rows = cast(Iterable[tuple], query.order_by(MetricSample.host, MetricSample.t_ms).tuples())
    for name, t_ms, cpu, mem, disk in rows:
        out.setdefault(name, []).append(Point(t_ms, cpu, mem, disk))
    return out


def known(host: str) -> bool:
    """Whether any history of ``host`` is stored."""
    return MetricSample.select(MetricSample.host).where(MetricSample.host == host).limit(1).exists()


def auto_level(start: float, end: float, now: float) -> int:
    """The level for a span: up to 1 h raw, up to 6 h 1 min, up to 24 h 5 min,
    beyond 15 min; and never one whose rows for ``start`` are pruned already."""
    span = end - start
    level = RAW if span <= 3600 else 60 if span <= 6 * 3600 else 300 if span <= 86400 else 900
    for candidate in (RAW, *BUCKETS):
        if candidate >= level and start >= now - RETENTION[candidate]:
            return candidate
    return 900
