"""SQLite transactions take the write lock at BEGIN (core/db.py): a transaction
that reads, then writes, waits for another connection's writes (the metrics
sampler's thread) instead of failing with "database is locked" (a deferred
transaction fails at once when another connection committed in between,
whatever busy_timeout says; seen as a 500 on POST /admin/users)."""
from __future__ import annotations

import threading
import time

import peewee as pw

from appliance.core import db
from appliance.core.db import User, open_database


def test_read_then_write_transactions_wait_for_another_connections_writes(tmp_path):
    path = tmp_path / "db.sqlite"
    open_database(f"sqlite:///{path}")
    other = pw.SqliteDatabase(str(path), pragmas={"journal_mode": "wal", "busy_timeout": 5000})
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            other.execute_sql("INSERT INTO schemaversion (version) VALUES (99)")
            other.execute_sql("DELETE FROM schemaversion WHERE version = 99")
            time.sleep(0.002)   # a pause, as any real writer has: a writer that never lets go starves the others

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for i in range(60):
            with db.database.atomic():
                assert not User.select().where(User.username == f"u{i}").exists()
                time.sleep(0.001)   # the other connection commits meanwhile
                User.create(public_id=f"p{i}", username=f"u{i}", display_name="x", password_hash="h")
    finally:
        stop.set()
        thread.join()
        other.close()
    assert User.select().count() == 60
