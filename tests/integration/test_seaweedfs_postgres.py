"""A filer whose store is PostgreSQL (as in a cluster: every host's filer sees the same
entries): postgres_filer_toml() in appliance/host/seaweedfs.py, the real weed, a private
PostgreSQL (tests/pg_support.py)."""
from urllib.parse import parse_qs, urlsplit

import pg_support
import psycopg2
import requests
import seaweed_support

from appliance.host.seaweedfs import postgres_filer_toml

pytestmark = pg_support.needs_root
postgres = pg_support.postgres          # the fixtures
seaweedfs = seaweed_support.seaweedfs


def test_filer_store_in_postgresql_survives_a_filer_restart(postgres, seaweedfs):
    query = parse_qs(urlsplit(postgres).query)
    sock, port = query["host"][0], int(query["port"][0])
    weed = seaweedfs(volumes=1, filer_toml=postgres_filer_toml(sock, port, "appliance", "postgres"))
    path = "/appliance/blobs/ef/ef42"
    r = requests.put(f"{weed.filer_url}{path}", data=b"in postgres", headers=weed.auth(), timeout=30)
    assert r.status_code == 201, r.text
    with psycopg2.connect(host=sock, port=port, user="postgres", dbname="appliance") as conn, conn.cursor() as cur:
        cur.execute("SELECT directory, name FROM filemeta WHERE name = 'ef42'")
        assert cur.fetchall() == [("/appliance/blobs/ef", "ef42")]
    assert not (weed.filer.dir / "filerldb2").exists()   # not the leveldb default
    weed.filer.restart()
    weed.wait_ready(30)
    got = requests.get(f"{weed.filer_url}{path}", headers=weed.auth(), timeout=30)
    assert got.status_code == 200 and got.content == b"in postgres"
