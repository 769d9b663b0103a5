"""Metrics history (core/cluster/history.py): downsampling, pruning, the
resolution a span gets, the span's parsing (span.py); and the sampler over
the fake driver: host readings, CPU rates from counters, stored rows."""
from __future__ import annotations

import sqlite3
import time

import peewee as pw
import pytest

from appliance.config import Config
from appliance.core import db
from appliance.core.cluster import history, span
from appliance.core.cluster.history import MetricSample
from appliance.core.cluster.sampler import Sampler
from appliance.core.compute.models import RUNNING, STOPPED, Container
from appliance.core.db import User, open_database
from appliance.drivers.base import GuestSpec
from appliance.drivers.fake import FakeDriver
from appliance.errors import Invalid

T0 = 1_767_225_600.0   # 2026-01-01T00:00:00Z, a multiple of 15 min


@pytest.fixture
def database(tmp_path):
    yield open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.database.close()


def rows(level: int, host: str = "h1") -> list[MetricSample]:
    return list(MetricSample.select().where((MetricSample.host == host) & (MetricSample.level == level))
                .order_by(MetricSample.t_ms))


def test_each_sample_is_one_raw_row_and_a_running_average_per_bucket(database):
    for i in range(24):   # 2 minutes of 5 s samples, cpu 0..23
        history.record("h1", T0 + 5 * i, cpu=float(i), mem=50.0, disk=10.0 + i % 2)
    assert [r.cpu for r in rows(history.RAW)] == [float(i) for i in range(24)]
    minute = rows(60)
    assert [(r.t_ms, r.n) for r in minute] == [(int(T0 * 1000), 12), (int((T0 + 60) * 1000), 12)]
    assert minute[0].cpu == pytest.approx(sum(range(12)) / 12)
    assert minute[1].cpu == pytest.approx(sum(range(12, 24)) / 12)
    assert minute[0].disk == pytest.approx(10.5)
    (five,) = rows(300)
    (fifteen,) = rows(900)
    assert five.n == fifteen.n == 24
    assert five.cpu == pytest.approx(11.5) and fifteen.mem == pytest.approx(50.0)
    assert rows(60, host="h2") == []   # hosts kept apart


def test_pruning_keeps_each_level_for_its_retention(database):
    # A sample every 15 minutes for 9 days.
    for i in range(9 * 96):
        history.record("h1", T0 + 900 * i, 1.0, 2.0, 3.0)
    now = T0 + 900 * (9 * 96 - 1)
    deleted = history.prune("h1", now)
    assert deleted > 0
    for level, keep in history.RETENTION.items():
        kept = rows(level)
        assert kept, level
        assert min(r.t_ms for r in kept) >= (now - keep) * 1000
        # and nothing younger than the retention was dropped
        assert min(r.t_ms for r in kept) <= (now - keep + 900) * 1000
    assert history.series(900, now - 7 * 86400, now)["h1"]   # a week answered from 15 min buckets


def test_series_are_per_host_ascending_within_the_span(database):
    for i in range(10):
        history.record("b", T0 + 5 * i, float(i), 0.0, 0.0)
        history.record("a", T0 + 5 * i, float(-i), 0.0, 0.0)
    out = history.series(history.RAW, T0 + 10, T0 + 30)
    assert sorted(out) == ["a", "b"]
    assert [p.t_ms for p in out["b"]] == [int((T0 + s) * 1000) for s in (10, 15, 20, 25, 30)]
    assert history.series(history.RAW, T0 + 10, T0 + 30, host="a").keys() == {"a"}
    assert history.series(history.RAW, T0 + 1000, T0 + 2000) == {}
    assert history.known("a") and not history.known("c")


@pytest.mark.parametrize(("span_s", "age_s", "level"), [
    (3600, 0, 0), (3601, 0, 60), (6 * 3600, 0, 60), (6 * 3600 + 1, 0, 300), (86400, 0, 300),
    (86401, 0, 900), (7 * 86400, 0, 900),
    # an hour that ended 3 h ago: its raw rows are pruned, 1 min buckets answer
    (3600, 3 * 3600, 60),
    # six hours two days ago: only 15 min buckets are kept that long
    (6 * 3600, 2 * 86400, 900),
])
def test_automatic_resolution_follows_the_span_and_what_is_kept(span_s, age_s, level):
    now = T0
    assert history.auto_level(now - age_s - span_s, now - age_s, now) == level


def test_span_parsing_and_bad_input():
    now = span.parse_time("now", "2026-01-15T11:01:00Z")
    s = span.resolve("2026-01-15T10:30:00.000Z", "2026-01-15T11:00:00.000Z", "", now=now)
    assert (s.end - s.start, s.level) == (1800, history.RAW)
    assert span.resolve("2026-01-15T10:30:00.000Z", "2026-01-15T11:00:00.000Z", "", now=now + 86400).level == 300
    assert span.iso(s.start) == "2026-01-15T10:30:00.000Z"
    assert span.iso(1_767_225_600.1234) == "2026-01-01T00:00:00.123Z"
    assert span.resolve("2026-01-15T10:30:00Z", "2026-01-15T12:00:00+01:00", "5m", now=T0).level == 300
    for start, end, resolution in [
        ("yesterday", "2026-01-15T11:00:00.000Z", ""),
        ("2026-01-15T10:30:00.000Z", "2026-13-15T11:00:00.000Z", ""),
        ("2026-01-15T11:00:00.000Z", "2026-01-15T10:00:00.000Z", ""),   # end before start
        ("2026-01-15T10:30:00.000Z", "2026-01-15T11:00:00.000Z", "2m"),
        ("2000-01-01T00:00:00.000Z", "2026-01-15T11:00:00.000Z", ""),   # absurd span
        ("2026-01-15T10:30:00.000Z" + "0" * 100, "2026-01-15T11:00:00.000Z", ""),
    ]:
        with pytest.raises(Invalid):
            span.resolve(start, end, resolution, now=T0)


def test_an_existing_database_gets_the_table(tmp_path):
    """A DB made by the previous version (every table but metric_sample) is
    brought up to date by open_database: create_tables(safe=True)."""
    path = tmp_path / "old.sqlite"
    old = pw.SqliteDatabase(str(path))
    previous = [m for m in db.MODELS if m is not MetricSample]
    with old.bind_ctx(previous):
        old.create_tables(previous)
        db.SchemaVersion.create(version=db.SCHEMA_VERSION)
    old.close()
    assert "metric_sample" not in _tables(path)
    open_database(f"sqlite:///{path}")
    history.record("h", T0, 1.0, 2.0, 3.0)
    db.database.close()
    assert "metric_sample" in _tables(path)


def _tables(path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


# -- the sampler over the fake driver ----------------------------------------------------

def test_sampler_reads_host_and_guests_and_stores_history(database, tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("appliance.core.cluster.sampler.time.monotonic", lambda: clock[0])
    driver = FakeDriver(memory_used_bytes=200 << 20)
    owner = User.create(public_id="Ab12Cd", username="u", display_name="u", password_hash="x")
    for cid, status in (("aaaa1111", RUNNING), ("bbbb2222", STOPPED)):
        Container.create(public_id=cid, owner=owner, name=f"box-{cid[:4]}", status=status, instance_type="micro",
                         memory_mb=1024, cpus=1.0, storage_gb=20, ip=f"10.0.0.{len(cid) + ord(cid[0]) % 50}")
        driver.spawn(GuestSpec(id=cid, ip="10.0.0.2", memory_mb=1024, cpus=1.0, storage_gb=20))
    driver.stop("bbbb2222")
    sampler = Sampler(Config(data_dir=str(tmp_path), host_name="node-a"), driver)
    driver.cpu_ns["aaaa1111"] = 5_000_000_000
    first = sampler.sample()
    clock[0] += 2.0
    time.sleep(0.003)  # history rows are keyed by the wall-clock ms: samples must not share one
    driver.cpu_ns["aaaa1111"] += 1_500_000_000   # 1.5 s of CPU in 2 s: 0.75 cores
    second = sampler.sample()
    assert sampler.latest() is second
    host = second.host
    assert host.name == "node-a" and host.cpu_cores >= 1 and 0 <= host.cpu_percent <= 100
    assert 0 < host.memory_used_bytes < host.memory_total_bytes
    assert 0 < host.disk_used_bytes < host.disk_total_bytes and host.disk_available_bytes > 0
    assert 0 < host.pids < host.pids_max
    guests = {g.id: g for g in second.guests}
    assert [g.cpu_nanocores for g in first.guests] == [0, 0]
    assert guests["aaaa1111"].cpu_nanocores == 750_000_000
    assert guests["aaaa1111"].memory_used_bytes == 200 << 20
    assert guests["aaaa1111"].memory_limit_bytes == 1024 << 20
    assert guests["aaaa1111"].disk_limit_bytes == 20 << 30
    assert guests["aaaa1111"].owner_id == "Ab12Cd" and guests["aaaa1111"].name == "box-aaaa"
    assert guests["bbbb2222"].cpu_nanocores == 0 and guests["bbbb2222"].memory_used_bytes == 0
    # a restarted guest's counter starts over: counted from 0, never negative
    clock[0] += 2.0
    time.sleep(0.003)
    driver.cpu_ns["aaaa1111"] = 400_000_000
    third = {g.id: g for g in sampler.sample().guests}
    assert third["aaaa1111"].cpu_nanocores == 200_000_000
    assert len(rows(history.RAW, host="node-a")) == 3
    assert sampler.busy_ns > 0
