"""The admin lists of issue 15 (shared/spec/API.md, "Admin lists"), the storage
status counters, and container logs on the in-memory guest driver: a real
core + gateway over HTTP; every field's JSON type is checked, since the
dashboard calls string methods on some and number methods on others.
Container logs on real guests: test_compute_lxc.py."""
from __future__ import annotations

import time

import pytest
import requests
from compute_support import LogStream, new_user, running
from harness import Appliance

HOST = "admin-test-node"
CONTAINER_FIELDS = {"id", "name", "status", "error", "hostname", "ssh_command", "memory_mb", "memory_used_mb",
                    "storage_gb", "storage_used_gb", "instance_type", "created_at", "ssh_enabled", "https_enabled",
                    "external_ip"}
ADMIN_ROUTES = ("/compute/admin/containers", "/admin/namespaces", "/admin/sessions")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("admin-lists"), guest_driver="fake", host_name=HOST)
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


@pytest.fixture
def user(app, admin):
    return new_user(app, admin)


def is_int(value) -> bool:
    return type(value) is int


# -- access ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ADMIN_ROUTES)
def test_admin_lists_refuse_everyone_but_admin_sessions(app, admin, user, path):
    assert requests.get(app.url + path).status_code == 401
    r = user.get(path)
    assert r.status_code == 403 and "error" in r.json()
    scopes = {f"compute.{admin.user_id}": ["read"], f"storage.{admin.user_id}": ["read"]}
    token = admin.post("/api/tokens", json={"name": "t", "scopes": scopes}).json()["token"]
    assert admin.with_token(token).get(path).status_code == 403   # as /admin/users: sessions only
    assert admin.with_token(token).get("/admin/users").status_code == 403
    r = admin.get(path)
    assert r.status_code == 200 and isinstance(r.json(), list)   # a bare array


# -- containers -----------------------------------------------------------------------

def test_admin_containers_lists_every_users_containers_with_owner_and_host(app, admin, user):
    other = new_user(app, admin)
    mine, theirs = running(app, user, name="mine"), running(app, other, name="theirs")
    listed = {c["id"]: c for c in admin.get("/compute/admin/containers").json()}
    assert mine["id"] in listed and theirs["id"] in listed
    for person, own in ((user, mine), (other, theirs)):
        c = listed[own["id"]]
        assert set(c) == CONTAINER_FIELDS | {"owner", "user_id", "host"}
        assert c["owner"] == person.info["username"] and c["user_id"] == person.user_id and c["host"] == HOST
        assert {k: c[k] for k in CONTAINER_FIELDS} == person.get(f"/compute/containers/{own['id']}").json()
        for key in ("id", "name", "status", "hostname", "ssh_command", "instance_type", "created_at",
                    "external_ip", "owner", "user_id", "host"):
            assert isinstance(c[key], str), key
        for key in ("memory_mb", "memory_used_mb", "storage_gb"):
            assert is_int(c[key]), key
        assert isinstance(c["storage_used_gb"], (int, float)) and c["error"] is None
        assert c["ssh_enabled"] is False and c["https_enabled"] is False
    # a user's own list never holds another's container
    assert [c["id"] for c in user.get("/compute/containers").json()["containers"]] == [mine["id"]]


# -- namespaces -----------------------------------------------------------------------

def test_admin_namespaces_counts_files_and_bytes(app, admin, user):
    name = f"adm-{user.user_id.lower()}"
    assert user.post("/storage/namespaces", json={"name": name, "visibility": 1}).status_code == 200
    assert user.post("/storage/namespaces", json={"name": name + "-empty"}).status_code == 200
    for fname, size in (("a.bin", 1000), ("b.bin", 2345)):
        assert user.put(f"/storage/{name}/{fname}", data=b"x" * size).status_code == 200
    assert admin.put(f"/storage/default/{name}.txt", data=b"y" * 77).status_code == 200
    listed = {n["name"]: n for n in admin.get("/admin/namespaces").json()}
    assert listed[name] == {"name": name, "owner_id": user.user_id, "owner": user.info["username"],
                            "visibility": 1, "count": 2, "bytes": 3345}
    assert listed[name + "-empty"] == {"name": name + "-empty", "owner_id": user.user_id,
                                       "owner": user.info["username"], "visibility": 0, "count": 0, "bytes": 0}
    shared = listed["default"]
    assert shared["owner_id"] is None and shared["owner"] == "" and shared["visibility"] == 2
    assert is_int(shared["count"]) and shared["count"] >= 1 and is_int(shared["bytes"]) and shared["bytes"] >= 77
    for n in listed.values():
        assert set(n) == {"name", "owner_id", "owner", "visibility", "count", "bytes"}
        assert all(is_int(n[k]) for k in ("visibility", "count", "bytes"))
        assert isinstance(n["name"], str) and isinstance(n["owner"], str)
        assert n["owner_id"] is None or isinstance(n["owner_id"], str)


# -- sessions -------------------------------------------------------------------------

def test_admin_sessions_lists_live_sessions_until_logout_or_user_deletion(app, admin, user):
    second = app.login(user.info["username"], "pw-123456")
    before = time.time()
    mine = [s for s in admin.get("/admin/sessions").json() if s["user_id"] == user.user_id]
    assert len(mine) == 2
    for s in mine:
        assert set(s) == {"id", "user_id", "username", "display_name", "ip_address", "created_at", "last_seen_at"}
        assert s["username"] == user.info["username"] and s["display_name"] == user.info["display_name"]
        assert s["ip_address"] == "127.0.0.1"
        assert all(isinstance(s[k], str) for k in ("id", "user_id", "username", "display_name", "ip_address"))
        assert is_int(s["created_at"]) and is_int(s["last_seen_at"])
        assert before - 60 <= s["created_at"] <= s["last_seen_at"] <= before + 5
    assert second.post("/api/logout").status_code == 200
    assert second.get("/api/session").status_code == 401          # revoked, as before
    left = [s for s in admin.get("/admin/sessions").json() if s["user_id"] == user.user_id]
    assert len(left) == 1 and user.get("/api/session").status_code == 200
    assert admin.delete(f"/admin/users/{user.user_id}").status_code == 200
    assert not [s for s in admin.get("/admin/sessions").json() if s["user_id"] == user.user_id]


# -- storage status -------------------------------------------------------------------

def test_storage_status_counts_servers_as_integers(app, user):
    for client in (requests, user):
        s = client.get(app.url + "/storage/status").json()
        assert is_int(s["chunkserver_count"]) and is_int(s["total_servers"])
        assert s["chunkserver_count"] == 1 and s["total_servers"] == 1


# -- container logs -------------------------------------------------------------------

def test_container_logs_backlog_access_and_stopped_guests(app, admin, user):
    c = running(app, user, name="logged")
    with LogStream(app, user.token, c["id"]) as stream:
        assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
        event, _ = stream.wait_for("appliance-init: starting")
        assert event == {"source": "init", "line": event["line"], "backlog": True}
        stream.wait_for("sshd started")
    with LogStream(app, user.token, c["id"], via_query=False) as stream:   # the header works too
        stream.wait_for("sshd started")
    with LogStream(app, admin.token, c["id"]) as stream:                   # admins read any
        stream.wait_for("sshd started")
    # an API token with read on the container may follow it; logging out ends an open stream
    scoped = user.post("/api/tokens", json={"name": "logs", "scopes": {
        f"compute.{user.user_id}.containers.{c['id']}": ["read"]}}).json()["token"]
    with LogStream(app, scoped, c["id"]) as stream:
        stream.wait_for("sshd started")
    second = app.login(user.info["username"], "pw-123456")
    with LogStream(app, second.token, c["id"]) as stream:
        stream.wait_for("sshd started")
        assert second.post("/api/logout").status_code == 200
        stream.thread.join(3)
        assert not stream.thread.is_alive()
    # at most 16 log streams per user at once
    streams = [LogStream(app, user.token, c["id"]) for _ in range(16)]
    try:
        assert all(x.status == 200 for x in streams)
        refused = LogStream(app, user.token, c["id"])
        assert refused.status == 429 and "at most 16" in refused.body["error"]
        with LogStream(app, admin.token, c["id"]) as other:   # counted per user
            assert other.status == 200
    finally:
        for x in streams:
            x.close()
    deadline = time.monotonic() + 5   # closed streams are let go of as the gateway sees them close
    while (again := LogStream(app, user.token, c["id"])).status == 429 and time.monotonic() < deadline:
        time.sleep(0.1)
    again.close()
    assert again.status == 200
    stranger = new_user(app, admin)
    for token in (stranger.token, "not-a-token"):
        r = LogStream(app, token, c["id"])
        assert r.status == (404 if token == stranger.token else 401) and "error" in r.body
    assert LogStream(app, user.token, "nosuchid").status == 404
    with LogStream(app, user.token, c["id"]) as open_stream:
        open_stream.wait_for("sshd started")
        assert user.post(f"/compute/containers/{c['id']}/stop").status_code == 200
        open_stream.thread.join(3)
        assert not open_stream.thread.is_alive()   # the stream ended with the guest
    r = LogStream(app, user.token, c["id"])
    assert r.status == 409 and "not running" in r.body["error"]
