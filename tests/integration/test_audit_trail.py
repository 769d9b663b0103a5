"""The audit trail over HTTP (issue 18, docs/accounts.md "Audit trail"): a real
core + gateway on the fake guest driver. What a person does and what is done
to their account shows in their own trail and, with filters and paging, in the
admins'; recording rides along every request without failing one."""
from __future__ import annotations

import time

import pytest
import requests
from compute_support import add_key, new_user
from harness import Appliance

PASSWORD = "pw-123456"
EVENT_FIELDS = {"id", "at", "actor_id", "actor", "user_id", "address", "event", "target", "outcome"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("audit"), guest_driver="fake", login_max_successes_per_address=1000)
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


def trail(client, path="/api/settings/audit", **params) -> list[dict]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) <= {"events", "next_before"}
    return body.get("events", [])


def test_a_users_actions_and_what_was_done_to_them_are_in_their_trail(app, admin):
    started = int(time.time())
    user = new_user(app, admin)
    name, uid = user.info["username"], user.user_id
    assert requests.post(app.url + "/api/login", json={"username": name, "password": "wrong"}).status_code == 401
    other = app.login(name, PASSWORD)
    token = user.post("/api/tokens", json={"name": "ci", "scopes": {f"compute.{uid}": ["read"]}}).json()
    assert user.delete(f"/api/tokens/{token['id']}").status_code == 200
    assert user.post("/storage/namespaces", json={"name": f"ns-{name}"}).status_code == 200
    assert user.delete(f"/storage/namespaces/ns-{name}").status_code == 200
    key_id, _ = add_key(user)
    cid = user.post("/compute/containers", json={"name": "box", "ssh_key_ids": [key_id]}).json()["id"]
    assert user.delete(f"/compute/containers/{cid}").status_code == 200
    assert user.put("/api/settings/password", json={"current_password": "nope", "new_password": "x"}).status_code == 401
    assert user.put("/api/settings/password",
                    json={"current_password": PASSWORD, "new_password": "new-pw-1"}).status_code == 200
    assert other.get("/api/session").status_code == 401
    assert admin.put(f"/admin/users/{uid}/password", json={"password": "reset-pw-1"}).status_code == 200
    user = app.login(name, "reset-pw-1")

    events = trail(user)
    assert all(set(e) == EVENT_FIELDS for e in events)
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)   # newest first
    got = [(e["event"], e["target"], e["outcome"], e["actor"]) for e in reversed(events)]
    admin_name = admin.info["username"]
    expected = [
        ("user.created", uid, "success", admin_name), ("login", name, "success", name),
        ("login", name, "failure", ""),   # someone tried the password: no actor, about this user
        ("login", name, "success", name),
        ("token.created", token["id"], "success", name), ("token.deleted", token["id"], "success", name),
        ("namespace.created", f"ns-{name}", "success", name), ("namespace.deleted", f"ns-{name}", "success", name),
        ("container.created", cid, "success", name), ("container.deleted", cid, "success", name),
        ("password.changed", uid, "failure", name), ("password.changed", uid, "success", name),
        ("session.ended", "other sessions: password changed", "success", name),
        ("password.reset", uid, "success", admin_name),
        ("session.ended", "all sessions: password reset", "success", admin_name),
        ("login", name, "success", name)]
    assert got == expected
    for e in events:
        assert e["address"] == "127.0.0.1" and e["user_id"] == uid and started - 1 <= e["at"] <= time.time() + 1
        assert e["actor_id"] in ("", uid, admin.user_id)
    # someone else's trail has none of it
    stranger = new_user(app, admin)
    assert not {e["id"] for e in events} & {e["id"] for e in trail(stranger)}
    # the admins' trail, filtered by user and event
    assert [e["id"] for e in trail(admin, "/admin/audit", user=uid, limit=500)] == [e["id"] for e in events]
    resets = trail(admin, "/admin/audit", user=uid, event="password.reset")
    assert [(e["event"], e["actor_id"]) for e in resets] == [("password.reset", admin.user_id)]


def test_paging_and_time_filters(app, admin):
    user = new_user(app, admin)
    for _ in range(5):
        app.login(user.info["username"], PASSWORD)
    logins = trail(user, event="login")
    assert len(logins) == 6
    r = user.get("/api/settings/audit", params={"event": "login", "limit": 4}).json()
    assert [e["id"] for e in r["events"]] == [e["id"] for e in logins[:4]]
    rest = user.get("/api/settings/audit", params={"event": "login", "limit": 4, "before": r["next_before"]}).json()
    assert [e["id"] for e in rest["events"]] == [e["id"] for e in logins[4:]]
    assert "next_before" not in rest or rest["next_before"] is None
    at = logins[0]["at"]
    assert all(e["at"] >= at for e in trail(user, since=at))
    assert trail(user, event="login", until=logins[-1]["at"] - 1) == []
    # the own trail ignores ?user=: it is always the caller's
    assert {e["user_id"] for e in trail(user, user=admin.user_id)} == {user.user_id}


@pytest.mark.parametrize("params,message", [({"limit": 501}, "limit"), ({"limit": -1}, "limit"),
                                            ({"since": "yesterday"}, "since"), ({"before": "x"}, "before")])
def test_bad_parameters_are_400(app, admin, params, message):
    r = admin.get("/admin/audit", params=params)
    assert r.status_code == 400 and message in r.json()["error"]


def test_access(app, admin):
    user = new_user(app, admin)
    assert requests.get(app.url + "/api/settings/audit").status_code == 401
    assert user.get("/admin/audit").status_code == 403
    token = admin.post("/api/tokens", json={"name": "t", "scopes": {f"compute.{admin.user_id}": ["read"]}}).json()
    for path in ("/api/settings/audit", "/admin/audit"):
        assert admin.with_token(token["token"]).get(path).status_code == 403


def test_the_writer_is_counted_in_the_metrics(app, admin):
    trail(admin)   # flushes what is queued
    text = admin.get("/metrics").text
    written = [line for line in text.splitlines() if line.startswith('appliance_audit_events_total{result="written"}')]
    assert written and float(written[0].split()[-1]) > 0


def test_a_full_audit_queue_drops_events_and_fails_no_request(tmp_path):
    """One queued event at most: a burst of audited requests all succeed; the
    events beyond the queue are dropped and counted, never a request's error."""
    small = Appliance(tmp_path / "small", guest_driver="fake", audit_queue_size=1,
                      login_max_successes_per_address=1000).start()
    try:
        admin = small.admin()
        user = new_user(small, admin)
        # two writer rounds (0.5 s each): the queue holds no sign-up event when the burst
        # starts, so its first event gets in (cheap test logins made the burst start at once)
        time.sleep(1.2)
        for i in range(20):   # each an audited write, faster than the writer's 0.5 s round
            r = user.post("/api/tokens", json={"name": f"t{i}", "scopes": {f"compute.{user.user_id}": ["read"]}})
            assert r.status_code == 200, r.text
        text = admin.get("/metrics").text
        dropped = [line for line in text.splitlines()
                   if line.startswith('appliance_audit_events_total{result="dropped"}')]
        assert dropped and float(dropped[0].split()[-1]) > 0
        assert 0 < len(trail(user, event="token.created")) < 20
    finally:
        small.close()
