"""The same appliance on PostgreSQL instead of SQLite (db_url = postgresql://...).

A private PostgreSQL cluster (Debian's postgresql package) runs in a temp
dir on a Unix socket only, as the postgres user; nothing listens on TCP.
"""
import pg_support
import pytest
import requests
from harness import Appliance

pytestmark = pg_support.needs_root
postgres = pg_support.postgres   # the fixture


@pytest.fixture(scope="module")
def app(tmp_path_factory, postgres):
    a = Appliance(tmp_path_factory.mktemp("on-pg"), db_url=postgres, guest_driver="fake").start()
    yield a
    a.close()


def test_auth_tokens_and_revocation(app):
    assert not (app.data_dir / "appliance.db").exists()  # really not on SQLite
    admin = app.admin()
    assert admin.get("/api/session").status_code == 200
    r = admin.post("/api/tokens", json={"name": "t", "scopes": {f"storage.{admin.user_id}": ["read"]}})
    assert r.status_code == 200, r.text
    api = admin.with_token(r.json()["token"])
    assert api.get("/storage/namespaces").status_code == 200
    assert admin.get("/api/tokens").json()[0]["last_used_at"] is not None
    assert admin.delete(f"/api/tokens/{r.json()['id']}").status_code == 200
    assert api.get("/storage/namespaces").status_code == 401
    assert admin.post("/api/logout").status_code == 200
    assert admin.get("/api/session").status_code == 401


def test_users_files_containers_and_cascade(app):
    admin = app.admin()
    r = admin.post("/admin/users", json={"username": "pat", "password": "pw-pat-1"})
    assert r.status_code == 200
    assert admin.post("/admin/users", json={"username": "pat", "password": "x"}).status_code == 409
    pat = app.login("pat", "pw-pat-1")
    assert pat.post("/storage/namespaces", json={"name": "docs", "visibility": 1}).status_code == 200
    up = pat.post("/storage/upload?namespace=docs", files={"file": ("a.txt", b"hello postgres")})
    assert up.status_code == 200, up.text
    assert requests.get(app.url + "/storage/docs/a.txt").content == b"hello postgres"
    assert pat.post("/storage/upload?namespace=docs", files={"file": ("a.txt", b"x")}).status_code == 409
    key = pat.post("/compute/ssh-keys", json={
        "name": "k",
        "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl pat"})
    assert key.status_code == 200, key.text
    c = pat.post("/compute/containers", json={"name": "box", "ssh_key_ids": [key.json()["id"]]})
    assert c.status_code == 200, c.text
    assert [x["id"] for x in pat.get("/compute/containers").json()["containers"]] == [c.json()["id"]]
    # the admin lists' grouped and joined queries (issue 15)
    listed = {n["name"]: n for n in admin.get("/admin/namespaces").json()}
    assert listed["docs"] == {"name": "docs", "owner_id": pat.user_id, "owner": "pat", "visibility": 1,
                              "count": 1, "bytes": 14}
    assert listed["default"]["owner_id"] is None
    [box] = [x for x in admin.get("/compute/admin/containers").json() if x["id"] == c.json()["id"]]
    assert (box["owner"], box["user_id"]) == ("pat", pat.user_id)
    assert [s["username"] for s in admin.get("/admin/sessions").json()].count("pat") == 1
    assert admin.delete(f"/admin/users/{pat.user_id}").status_code == 200
    assert "pat" not in [s["username"] for s in admin.get("/admin/sessions").json()]
    assert requests.get(app.url + "/storage/docs/a.txt").status_code == 404
    names = [ns["name"] for ns in admin.get("/storage/namespaces").json()]
    assert "docs" not in names


def test_state_survives_a_restart(app):
    admin = app.admin()
    admin.post("/api/tokens", json={"name": "keep", "scopes": {f"compute.{admin.user_id}": ["read"]}})
    app.stop("core")
    app.start("core")
    assert "keep" in [t["name"] for t in app.admin().get("/api/tokens").json()]


def test_migration_5_widens_the_totp_secret_column(app, postgres):
    """A version-4 database (totp_secret.secret VARCHAR(64)) is brought to 5: room for a sealed secret."""
    from appliance.core import db
    from appliance.core.auth import second_factor  # noqa: F401 - registers totp_secret

    def width() -> int:
        return db.database.execute_sql("SELECT character_maximum_length FROM information_schema.columns"
                                       " WHERE table_name = 'totp_secret' AND column_name = 'secret'").fetchone()[0]

    db.open_database(postgres)
    try:
        db.database.execute_sql("ALTER TABLE totp_secret ALTER COLUMN secret TYPE VARCHAR(64)")
        db.database.execute_sql("UPDATE schemaversion SET version = 4")
        assert width() == 64
        db.migrate(db.database.obj)
        assert width() == 255 and db.SchemaVersion.get().version == db.SCHEMA_VERSION == 5
    finally:
        db.database.close()
