"""How long `appliance db migrate` keeps a host down (core/dbmove.py): a
synthetic SQLite database of a busy host alone (``--users`` users with a
token, an SSH key, a container and a namespace each, ``--files`` file rows,
``--samples`` metric history rows) moved into a private PostgreSQL; the time
of the move (read, check, copy, sequences, counts) and of the second run
(which compares every row and changes nothing). Needs root (PostgreSQL runs
as the postgres user).

    python -m bench bench_dbmove        # or: python bench/bench_dbmove.py --samples 100000
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def fill(path: Path, users: int, files: int, samples: int) -> int:
    """A SQLite appliance database with that many rows; returns the row count."""
    from appliance.core import db, dbmove
    from appliance.core.cluster.history import MetricSample
    from appliance.core.compute.models import Container, SshKey
    from appliance.core.storage.models import Namespace, StoredFile

    dbmove._models()  # registers every model
    sqlite = db.open_database(f"sqlite:///{path}")
    with sqlite.atomic():
        for i in range(users):
            user = db.User.create(public_id=f"u{i:07d}", username=f"user{i}", display_name=f"User {i}",
                                  password_hash="$argon2id$v=19$m=65536,t=3,p=4$" + "x" * 60)
            db.ApiToken.create(id=f"t{i:07d}", user=user, name="ci", scopes=json.dumps({"compute": ["read"]}),
                               token_sha256=f"{i:064d}")
            SshKey.create(public_id=f"k{i:07d}", owner=user, name="k", public_key="ssh-ed25519 AAAA" + "x" * 60,
                          fingerprint=f"SHA256:{i:043d}")
            Container.create(public_id=f"c{i:07d}", owner=user, name="box", status="running",
                             instance_type="small", memory_mb=512, cpus=1.0, storage_gb=5,
                             ip=f"10.217.{i // 250}.{i % 250 + 2}", host="solo")
            Namespace.create(name=f"ns{i}", owner=user)
        namespaces = list(Namespace.select(Namespace.id))
        StoredFile.insert_many(
            [{"namespace": namespaces[i % len(namespaces)].id, "name": f"file-{i}.bin", "blob_id": f"{i:064x}",
              "size": i * 10} for i in range(files)]).execute()
        for start in range(0, samples, 1000):
            MetricSample.insert_many(
                [{"host": "solo", "level": 0, "t_ms": 1_700_000_000_000 + i * 5000, "cpu": i % 97 / 3,
                  "mem": 41.5, "disk": 12.25} for i in range(start, min(samples, start + 1000))]).execute()
    sqlite.close()
    return users * 5 + files + samples


def main() -> None:
    import pg_support

    from appliance.core import dbmove

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--samples", type=int, default=50000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, pg_support.private_postgres() as url:
        path = Path(tmp) / "appliance.db"
        rows = fill(path, args.users, args.files, args.samples)
        began = time.perf_counter()
        moved = dbmove.move(f"sqlite:///{path}", url)
        first = time.perf_counter() - began
        assert moved.copied and moved.rows >= rows, moved
        began = time.perf_counter()
        again = dbmove.move(f"sqlite:///{path}", url)
        second = time.perf_counter() - began
        assert not again.copied
        print(f"{moved.rows:,} rows ({path.stat().st_size / 2**20:.1f} MiB of SQLite) moved in {first:.2f} s "
              f"({moved.rows / first:,.0f} rows/s); the second run (compares every row, changes nothing) "
              f"{second:.2f} s")


if __name__ == "__main__":
    main()
