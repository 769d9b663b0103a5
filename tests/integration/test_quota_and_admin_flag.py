"""Two calls the dashboard needs (docs/api.md): `GET /compute/quota`, the
caller's container count and limit, and `PUT /admin/users/{user_id}`, which
makes a user an admin or takes it back (never the caller's own flag, never
the last admin's). One appliance with fake guests and a limit of 2, so the
limit shown is the configured one, not the default."""
from __future__ import annotations

import time

import pytest
import requests
from compute_support import add_key, new_user
from harness import Appliance

LIMIT = 2


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("quota-admin"), guest_driver="fake", max_containers_per_user=LIMIT)
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


def test_quota_counts_the_callers_containers_against_the_configured_limit(app, admin):
    user, other = new_user(app, admin), new_user(app, admin)
    assert user.get("/compute/quota").json() == {"containers": 0, "max_containers": LIMIT}
    key, _ = add_key(user)
    ids = []
    for n in range(LIMIT):
        r = user.post("/compute/containers", json={"name": f"q{n}", "ssh_key_ids": [key]})
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
        assert user.get("/compute/quota").json() == {"containers": n + 1, "max_containers": LIMIT}
    refused = user.post("/compute/containers", json={"name": "over", "ssh_key_ids": [key]})
    assert refused.status_code == 409 and f"at most {LIMIT}" in refused.json()["error"]
    assert other.get("/compute/quota").json() == {"containers": 0, "max_containers": LIMIT}   # per user
    user.post(f"/compute/containers/{ids[0]}/stop")
    assert user.get("/compute/quota").json()["containers"] == LIMIT   # a stopped one still counts
    assert user.delete(f"/compute/containers/{ids[0]}").status_code == 200
    assert user.get("/compute/quota").json()["containers"] == LIMIT - 1


def test_quota_needs_a_credential_with_read_on_containers(app, admin):
    user = new_user(app, admin)
    assert requests.get(app.url + "/compute/quota", timeout=10).status_code == 401
    token = user.post("/api/tokens", json={"name": "files", "scopes": {f"storage.{user.user_id}": ["read"]}})
    storage_only = user.with_token(token.json()["token"])
    r = storage_only.get("/compute/quota")
    assert r.status_code == 403 and r.json()["error"]
    token = user.post("/api/tokens", json={"name": "ro", "scopes": {f"compute.{user.user_id}": ["read"]}})
    assert user.with_token(token.json()["token"]).get("/compute/quota").json()["max_containers"] == LIMIT


def users_by_name(admin) -> dict:
    return {u["username"]: u for u in admin.get("/admin/users").json()}


def test_make_admin_and_take_it_back(app, admin):
    person = new_user(app, admin)
    pid = person.user_id
    assert person.get("/admin/users").status_code == 403
    r = admin.put(f"/admin/users/{pid}", json={"is_admin": True})
    assert r.status_code == 200, r.text
    assert r.json() == {**users_by_name(admin)[person.info["username"]], "is_admin": True}
    assert person.get("/admin/users").status_code == 200        # the same session, at once
    r = admin.put(f"/admin/users/{pid}", json={"is_admin": False})
    assert r.status_code == 200 and r.json()["is_admin"] is False
    assert person.get("/admin/users").status_code == 403
    assert users_by_name(admin)[person.info["username"]]["is_admin"] is False


@pytest.mark.parametrize("body, status, needle", [
    ({}, 400, "is_admin"),
    ({"is_admin": "yes"}, 400, ""),
    ({"is_admin": None}, 400, "is_admin"),     # null means unset (docs/api.md)
    ({"is_admin": 1}, 400, ""),
])
def test_bad_bodies_are_400_and_change_nothing(app, admin, body, status, needle):
    person = new_user(app, admin)
    r = admin.put(f"/admin/users/{person.user_id}", json=body)
    assert r.status_code == status and needle in r.json()["error"], r.text
    assert users_by_name(admin)[person.info["username"]]["is_admin"] is False


def test_unknown_user_is_404_and_non_admins_403(app, admin):
    r = admin.put("/admin/users/nosuchuser", json={"is_admin": True})
    assert r.status_code == 404 and "nosuchuser" in r.json()["error"]
    person, other = new_user(app, admin), new_user(app, admin)
    r = person.put(f"/admin/users/{person.user_id}", json={"is_admin": True})
    assert r.status_code == 403 and r.json()["error"]
    token = admin.post("/api/tokens", json={"name": "t", "scopes": {f"compute.{admin.user_id}": ["read"]}})
    r = admin.with_token(token.json()["token"]).put(f"/admin/users/{other.user_id}", json={"is_admin": True})
    assert r.status_code == 403   # admin calls take an admin's session, never an API token
    assert not any(u["is_admin"] for u in admin.get("/admin/users").json() if u["user_id"] in
                   (person.user_id, other.user_id))


def test_no_admin_changes_their_own_flag_and_the_last_admin_stays(app, admin):
    r = admin.put(f"/admin/users/{admin.user_id}", json={"is_admin": False})
    assert r.status_code == 409 and "your own admin rights" in r.json()["error"]
    r = admin.put(f"/admin/users/{admin.user_id}", json={"is_admin": True})
    assert r.status_code == 409      # not even a no-op on oneself
    # two admins: each may demote the other, but not both: the second finds the first already gone
    second = new_user(app, admin)
    assert admin.put(f"/admin/users/{second.user_id}", json={"is_admin": True}).status_code == 200
    r = second.put(f"/admin/users/{admin.user_id}", json={"is_admin": False})
    assert r.status_code == 200 and r.json()["is_admin"] is False
    r = admin.put(f"/admin/users/{second.user_id}", json={"is_admin": False})
    assert r.status_code == 403     # no longer an admin: refused at the door
    flags = {u["user_id"]: u["is_admin"] for u in second.get("/admin/users").json()}
    assert (flags[admin.user_id], flags[second.user_id]) == (False, True)
    assert second.put(f"/admin/users/{admin.user_id}", json={"is_admin": True}).status_code == 200


def test_no_admin_deletes_their_own_account_and_changes_are_audited(app, admin):
    r = admin.delete(f"/admin/users/{admin.user_id}")
    assert r.status_code == 409 and "your own account" in r.json()["error"]
    assert admin.get("/admin/users").status_code == 200   # still there, still an admin
    person = new_user(app, admin)
    assert admin.put(f"/admin/users/{person.user_id}", json={"is_admin": True}).status_code == 200
    assert admin.put(f"/admin/users/{person.user_id}", json={"is_admin": False}).status_code == 200
    assert admin.delete(f"/admin/users/{person.user_id}").status_code == 200
    wanted = ["user.admin_granted", "user.admin_revoked", "user.deleted"]
    for _ in range(50):   # the audit trail is written in batches, off the request's path
        events = admin.get("/admin/audit", params={"user": person.user_id}).json()["events"]
        if sorted(e["event"] for e in events if e["event"] in wanted) == wanted:
            break
        time.sleep(0.1)
    assert sorted(e["event"] for e in events if e["event"] in wanted) == wanted, events
    assert all(e["actor_id"] == admin.user_id for e in events if e["event"] in wanted)
