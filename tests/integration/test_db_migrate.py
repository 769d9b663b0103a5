"""`appliance db migrate --to postgresql://...` (core/dbmove.py, docs/cluster-migrate.md):
a host alone on SQLite, filled through its API, moves into a real PostgreSQL; a core
started on the PostgreSQL URL serves the same logins, tokens, keys, containers,
namespaces and files; a second run changes nothing; a target that a core has
written to since is refused."""
import re
import sqlite3

import pg_support
import psycopg2
import requests
from compute_support import add_key, new_user, running
from harness import Appliance

pytestmark = pg_support.needs_root
postgres = pg_support.postgres   # the fixture

COUNT_LINE = re.compile(r"^\s+(\w+)\s+(\d+) rows\s+(verified|already there)$", re.M)


def table_digests(url: str) -> dict[str, str]:
    """md5 of each public table's full contents (row text in a fixed order)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        digests = {}
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT md5(coalesce(string_agg(t::text, \',\' ORDER BY t::text), \'\')) FROM "{table}" t')
            digests[table] = cur.fetchone()[0]
        return digests


def sqlite_counts(path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()


def test_a_host_alone_moves_into_postgresql(tmp_path_factory, postgres):
    data = tmp_path_factory.mktemp("solo")
    solo = Appliance(data, guest_driver="fake", host_name="solo").start()
    try:
        admin = solo.admin()
        pat = new_user(solo, admin)
        r = pat.post("/api/tokens", json={"name": "ci", "scopes": {f"compute.{pat.user_id}": ["read"],
                                                                   f"storage.{pat.user_id}": ["read"]}})
        assert r.status_code == 200, r.text
        api_token = r.json()["token"]
        key_id, _ = add_key(pat)
        box = running(solo, pat, key_id)
        assert pat.post(f"/compute/containers/{box['id']}/ingress", json={"port": 8123}).status_code == 200
        assert pat.post("/storage/namespaces", json={"name": "docs", "visibility": 1}).status_code == 200
        up = pat.post("/storage/upload?namespace=docs", files={"file": ("a.txt", b"moved with the rows")})
        assert up.status_code == 200, up.text
        before = {path: pat.get(path).json() for path in
                  ("/compute/containers", "/compute/ssh-keys", "/storage/namespaces", "/api/tokens")}
    finally:
        solo.close()
    # Counted once the core has stopped: it writes its queued audit events at stop.
    stored = sqlite_counts(data / "appliance.db")

    first = solo.cli("db", "migrate", "--to", postgres)
    assert first.returncode == 0, first.stderr
    print("\n" + first.stdout)
    counts = {t: int(n) for t, n, how in COUNT_LINE.findall(first.stdout)}
    assert {how for _, _, how in COUNT_LINE.findall(first.stdout)} == {"verified"}
    assert counts == {t: n for t, n in stored.items() if t != "schemaversion"}
    assert all(counts[t] > 0 for t in ("user", "apitoken", "ssh_key", "container", "ingress_rule",
                                       "namespace", "stored_file", "login_session"))
    digests = table_digests(postgres)

    again = solo.cli("db", "migrate", "--to", postgres)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout and "nothing changed" in again.stdout
    assert {t: int(n) for t, n, _ in COUNT_LINE.findall(again.stdout)} == counts
    assert table_digests(postgres) == digests   # really nothing changed

    on_pg = Appliance(data, guest_driver="fake", host_name="solo", db_url=postgres).start()
    try:
        same = on_pg.login(pat.info["username"], "pw-123456")
        for path, body in before.items():
            now = same.get(path).json()
            if path == "/compute/containers":   # the fake driver's guests went with the old core
                now = [(c["id"], c["name"]) for c in now["containers"]]
                body = [(c["id"], c["name"]) for c in body["containers"]]
            elif path == "/api/tokens":         # used since
                now = [{k: v for k, v in t.items() if k != "last_used_at"} for t in now]
                body = [{k: v for k, v in t.items() if k != "last_used_at"} for t in body]
            assert now == body, path
        ci = same.with_token(api_token)
        assert ci.get("/compute/containers").status_code == 200
        assert requests.get(on_pg.url + "/storage/docs/a.txt").content == b"moved with the rows"
        # the serial sequences start after the copied ids: new rows do not collide
        other = new_user(on_pg, on_pg.admin())
        assert other.post("/storage/namespaces", json={"name": "more", "visibility": 0}).status_code == 200
        other_key, _ = add_key(other)
        r = other.post("/compute/containers", json={"name": "b2", "ssh_key_ids": [other_key]})
        assert r.status_code == 200, r.text
    finally:
        on_pg.close()

    late = solo.cli("db", "migrate", "--to", postgres)   # a core has written to the target since
    assert late.returncode == 1
    assert "already holds other data" in late.stderr and "refusing to merge" in late.stderr


def test_bad_sources_and_targets_are_refused_plainly(tmp_path, postgres):
    solo = Appliance(tmp_path / "none", guest_driver="fake")
    r = solo.cli("db", "migrate", "--to", postgres, "--from", f"sqlite:///{tmp_path}/missing.db")
    assert r.returncode == 1 and "no SQLite database at" in r.stderr, r.stderr
    r = solo.cli("db", "migrate", "--to", "sqlite:///x.db", "--from", f"sqlite:///{tmp_path}/missing.db")
    assert r.returncode == 1 and "must be a PostgreSQL URL" in r.stderr, r.stderr
    r = solo.cli("db", "migrate", "--to", "postgresql://nobody:secret@/none?host=/nonexistent",
                 "--from", f"sqlite:///{tmp_path}/missing.db")
    assert r.returncode == 1 and "secret" not in r.stderr + r.stdout
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    r = solo.cli("db", "migrate", "--to", postgres, "--from", f"sqlite:///{garbage}")
    assert r.returncode == 1 and "cannot read" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_row_postgresql_refuses_rolls_the_whole_copy_back(tmp_path, postgres):
    """SQLite does not enforce VARCHAR lengths; PostgreSQL does: the move names the table
    and leaves the target empty."""
    solo = Appliance(tmp_path / "long", guest_driver="fake")
    solo.data_dir.mkdir()
    assert solo.cli("user", "add", "fine", input="pw-123456\n").returncode == 0
    assert solo.cli("user", "add", "fine2", input="pw-123456\n").returncode == 0
    conn = sqlite3.connect(solo.data_dir / "appliance.db")
    with conn:
        conn.execute("UPDATE user SET display_name = ? WHERE username = 'fine2'", ("x" * 500,))
    conn.close()
    admin_conn = psycopg2.connect(postgres)
    admin_conn.autocommit = True
    with admin_conn.cursor() as cur:
        cur.execute("CREATE DATABASE refused")
    admin_conn.close()
    target = postgres.replace("/appliance?", "/refused?")
    r = solo.cli("db", "migrate", "--to", target)
    assert r.returncode == 1, r.stdout
    assert "table user: PostgreSQL refused a row" in r.stderr and "Traceback" not in r.stderr, r.stderr
    conn = psycopg2.connect(target)
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT COUNT(*) FROM "user"')
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()
