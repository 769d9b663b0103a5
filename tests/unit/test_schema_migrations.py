"""Numbered schema migrations: a database of an older version is brought up to
date by open_database, keeping its rows (SQLite here; PostgreSQL runs the same
SQL in tests/integration/test_postgresql.py's databases)."""
from __future__ import annotations

import peewee as pw

from appliance.core import db
from appliance.core.auth import users
from appliance.core.compute.models import Container
from appliance.core.db import open_database
from appliance.core.fleet.models import Host


def _version_1(path):
    """A database as version 1 left it: no container.host, no host table."""
    old = pw.SqliteDatabase(str(path), pragmas={"foreign_keys": 1})
    db.database.initialize(old)
    old.create_tables([m for m in db.MODELS if m is not Host])
    old.execute_sql("DROP INDEX container_host")
    old.execute_sql("DROP INDEX container_host_cpus_memory_mb")
    old.execute_sql("ALTER TABLE container DROP COLUMN host")
    db.SchemaVersion.create(version=1)
    owner = users.create_user("olduser", "old-pass-1", None, False)
    old.execute_sql(
        "INSERT INTO container (public_id, owner_id, name, status, instance_type, memory_mb, cpus, storage_gb, ip,"
        " ssh_enabled, https_enabled, mount_paths, authorized_keys, key_ids, provisioned, created_at)"
        " VALUES ('abcd1234', ?, 'web', 'running', 'small', 512, 1, 5, '10.217.0.5', 0, 0, '[]', '[]', '[]', 1, 0)",
        (owner.id,))
    old.close()


def test_version_1_gets_the_container_host_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v1.sqlite"
    _version_1(path)
    assert "host" not in [c.name for c in pw.SqliteDatabase(str(path)).get_columns("container")]

    open_database(f"sqlite:///{path}")
    assert db.SchemaVersion.get().version == db.SCHEMA_VERSION == 5
    row = Container.get(Container.public_id == "abcd1234")
    assert (row.name, row.status, row.host) == ("web", "running", "")
    indexes = {i.name: i.columns for i in db.database.get_indexes("container")}
    assert indexes["container_host"] == ["host"]
    # a new index needs no migration: create_tables(safe=True) adds it (placement's, core/compute/models.py)
    assert indexes["container_host_cpus_memory_mb"] == ["host", "cpus", "memory_mb"]
    assert "host" in db.database.get_tables()


def test_a_current_database_opens_again_unchanged(tmp_path):
    url = f"sqlite:///{tmp_path / 'now.sqlite'}"
    open_database(url)
    Host.create(name="h1", guest_subnet="10.217.1.0/24", cpus=2, memory_mb=1024, heartbeat_at=1.0)
    db.database.close()
    open_database(url)
    assert db.SchemaVersion.get().version == db.SCHEMA_VERSION
    assert [h.name for h in Host.select()] == ["h1"]
