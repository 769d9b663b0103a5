"""The metrics history on PostgreSQL: the same upserts, averages, pruning
and queries as on SQLite (tests/unit/test_metrics_history.py), in a private
PostgreSQL cluster (tests/pg_support.py); and the size a week of history
takes there."""
from __future__ import annotations

import time

import pg_support
import pytest
from harness import Appliance

from appliance.core import db
from appliance.core.cluster import history, span
from appliance.core.cluster.history import MetricSample

pytestmark = pg_support.needs_root
postgres = pg_support.postgres   # the fixture

T0 = 1_767_225_600.0   # 2026-01-01T00:00:00Z


@pytest.fixture
def database(postgres):
    pg = db.open_database(postgres)
    MetricSample.delete().execute()
    yield pg
    db.database.close()


def test_downsampling_pruning_and_series_on_postgresql(database):
    for i in range(24):
        history.record("h1", T0 + 5 * i, cpu=float(i), mem=50.0, disk=10.0)
    minute = history.series(60, T0, T0 + 120)["h1"]
    assert [p.t_ms for p in minute] == [int(T0 * 1000), int((T0 + 60) * 1000)]
    assert minute[0].cpu == pytest.approx(5.5) and minute[1].cpu == pytest.approx(17.5)
    assert history.series(900, T0, T0 + 120)["h1"][0].cpu == pytest.approx(11.5)
    assert len(history.series(history.RAW, T0, T0 + 120)["h1"]) == 24
    assert history.known("h1") and not history.known("h2")
    # a second sample at an existing raw time is averaged in (no duplicate key error)
    history.record("h1", T0, cpu=99.0, mem=50.0, disk=10.0)
    assert history.series(history.RAW, T0, T0)["h1"][0].cpu == pytest.approx(49.5)
    assert history.prune("h1", T0 + 3 * 3600) == 24   # the raw rows: kept 2 h
    assert history.series(history.RAW, T0, T0 + 120) == {}
    assert history.series(60, T0, T0 + 120)["h1"]


def test_a_week_of_history_on_postgresql_is_bounded(database):
    """A simulated week of one host (a sample every 5 min: every bucket level
    gets its full row count; raw rows are pruned after 2 h anyway)."""
    for i in range(7 * 288):
        t = T0 + 300 * i
        history.record("h1", t, 10.0, 20.0, 30.0)
        if i % 12 == 0:
            history.prune("h1", t)
    history.prune("h1", T0 + 300 * (7 * 288 - 1))
    counts = {level: MetricSample.select().where(MetricSample.level == level).count() for level in history.RETENTION}
    assert counts[900] == 7 * 96 and counts[300] <= 48 * 12 + 1 and counts[60] <= 12 * 12 + 1
    size = db.database.execute_sql("SELECT pg_total_relation_size('metric_sample')").fetchone()[0]
    print(f"\nPostgreSQL: a week of one host's history: {counts} rows, {size} bytes")
    assert size < 2 << 20


def test_the_sampler_of_a_core_on_postgresql_stores_and_serves_history(postgres, tmp_path):
    app = Appliance(tmp_path / "on-pg", db_url=postgres, guest_driver="fake", host_name="pg-node",
                    metrics_sample_seconds=0.3).start()
    try:
        time.sleep(1.5)
        end = time.time()
        r = app.admin().get("/api/metrics/nodes/pg-node", params={"start": span.iso(end - 60), "end": span.iso(end)})
        assert r.status_code == 200, r.text
        assert r.json()["resolution"] == "raw" and len(r.json()["series"]["pg-node"]) >= 3
    finally:
        app.close()
    assert "sample failed" not in app.log("core")
    assert not (tmp_path / "on-pg" / "appliance.db").exists()   # really not on SQLite
