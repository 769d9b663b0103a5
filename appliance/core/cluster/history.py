"""Host metrics history in the database, downsampled and bounded.

One table, ``metric_sample``: a row per (host, level, bucket start). Level 0
holds the raw samples; levels 60, 300 and 900 (seconds) hold the running
average of the samples that fell into each bucket (``n`` of them), updated
by every new sample. A sample is written in one transaction: its raw row
and its three bucket updates are all there after a crash, or none is.

Kept per level (``RETENTION``): raw 2 h, 1 min 12 h, 5 min 48 h, 15 min 8 days,
so a host has at most ~3,500 rows whatever the uptime; older rows are pruned
(``prune``, every minute by the sampler). Standard SQL only (the sample's
upsert is ``INSERT ... ON CONFLICT DO UPDATE``, the rest peewee queries):
the same on SQLite and PostgreSQL.
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


_UPSERT = ("INSERT INTO metric_sample (host, level, t_ms, cpu, mem, disk, n) VALUES {rows} "
           "ON CONFLICT (host, level, t_ms) DO UPDATE SET "
           "cpu = (metric_sample.cpu * metric_sample.n + excluded.cpu) / (metric_sample.n + 1), "
           "mem = (metric_sample.mem * metric_sample.n + excluded.mem) / (metric_sample.n + 1), "
           "disk = (metric_sample.disk * metric_sample.n + excluded.disk) / (metric_sample.n + 1), "
           "n = metric_sample.n + 1")
_sql: dict[str, str] = {}   # the statement per parameter style ("?" SQLite, "%s" PostgreSQL)


def record(host: str, t: float, cpu: float, mem: float, disk: float) -> None:
    """Store one sample of ``host`` taken at unix time ``t``: its raw row and
    its share of each bucket's average, in one statement (one transaction).

    The SQL is written once (peewee takes ~0.5 ms to build each of these
    statements, most of a sample's cost): standard upsert SQL, the same on
    SQLite (>= 3.24) and PostgreSQL; a raw row at an existing time is averaged."""
    t_ms = int(t * 1000)
    database = db.database.obj
    mark = database.param
    sql = _sql.get(mark)
    if sql is None:
        row = "(" + ", ".join([mark] * 6) + ", 1)"
        sql = _sql[mark] = _UPSERT.format(rows=", ".join([row] * (1 + len(BUCKETS))))
    params: list = [host, RAW, t_ms, cpu, mem, disk]
    for width in BUCKETS:
        params += [host, width, t_ms - t_ms % (width * 1000), cpu, mem, disk]
    with db.database.atomic():
        db.database.execute_sql(sql, params)


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
