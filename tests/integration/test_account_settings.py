"""Self-service account settings and the admins' session and password actions
(issue 18, docs/accounts.md): a real core + gateway on the fake guest driver,
real HTTP and WebSocket clients. ``stream_recheck_seconds`` is an hour, so a
stream that closes within seconds was closed by the action itself."""
from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import websocket
from compute_support import new_user
from harness import Appliance, Client

PASSWORD = "pw-123456"
MAX_FAILURES = 3


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("account"), guest_driver="fake", stream_recheck_seconds=3600,
                  login_max_failures=MAX_FAILURES, login_max_successes_per_address=1000)
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


@pytest.fixture
def user(app, admin):
    return new_user(app, admin)


def login(app, username: str, password: str = PASSWORD, agent: str = "pytest-agent/1.0") -> Client:
    r = requests.post(app.url + "/api/login", json={"username": username, "password": password},
                      headers={"User-Agent": agent})
    assert r.status_code == 200, r.text
    return Client(app.url, r.json()["token"], r.json())


def status_socket(app, token: str):
    ws = websocket.create_connection(app.url.replace("http://", "ws://") + f"/compute/ws?token={token}", timeout=10)
    assert json.loads(ws.recv())["type"] == "containers"
    return ws


def closed_within(ws, seconds: float) -> int | None:
    """The close code once the server closes the socket; fails if still open after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"socket still open after {seconds}s"
        ws.settimeout(min(left, 1.0))
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        except websocket.WebSocketConnectionClosedException:
            return None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


class EventStream:
    """GET /sse/health (or *path*) with ?token= in a thread: its lines, and whether it ended."""

    def __init__(self, app, token: str, path: str = "/sse/health"):
        self.lines: list[bytes] = []
        self.opened, self.ended = threading.Event(), threading.Event()
        threading.Thread(target=self._read, args=(app, token, path), daemon=True).start()
        assert self.opened.wait(5)

    def _read(self, app, token, path):
        with requests.get(app.url + path, params={"token": token}, stream=True, timeout=(5, 15)) as r:
            assert r.status_code == 200
            self.opened.set()
            try:
                for line in r.iter_lines():
                    self.lines.append(line)
            except requests.RequestException as e:
                self.lines.append(repr(e).encode())
        self.ended.set()


def api_token(client: Client) -> str:
    r = client.post("/api/tokens", json={"name": "t", "scopes": {f"compute.{client.user_id}": ["read"]}})
    assert r.status_code == 200, r.text
    return r.json()["token"]


SETTINGS = (("PUT", "/api/settings/profile", {"display_name": "x"}),
            ("PUT", "/api/settings/password", {"current_password": PASSWORD, "new_password": "other-pw-1"}),
            ("GET", "/api/settings/sessions", None), ("DELETE", "/api/settings/sessions/abc", None),
            ("DELETE", "/api/settings/sessions", None))


# -- access -----------------------------------------------------------------------------------

@pytest.mark.parametrize("verb,path,body", SETTINGS)
def test_settings_need_a_session_not_an_api_token(app, user, verb, path, body):
    assert requests.request(verb, app.url + path, json=body).status_code == 401
    r = user.with_token(api_token(user)).request(verb, path, json=body)
    assert r.status_code == 403 and "session" in r.json()["error"]
    # nothing changed: the password still signs in
    login(app, user.info["username"])


@pytest.mark.parametrize("verb,path", [("DELETE", "/admin/sessions/abc"), ("PUT", "/admin/users/{uid}/password")])
def test_admin_session_and_password_actions_are_for_admin_sessions_only(app, admin, user, verb, path):
    path = path.format(uid=user.user_id)
    body = {"password": "hijacked-1"}
    assert user.request(verb, path, json=body).status_code == 403
    assert admin.with_token(api_token(admin)).request(verb, path, json=body).status_code == 403
    login(app, user.info["username"])


# -- profile ----------------------------------------------------------------------------------

def test_profile_update_answers_the_profile_and_shows_everywhere(app, user):
    r = user.put("/api/settings/profile", json={"display_name": "Ada Lovelace"})
    assert r.status_code == 200
    assert r.json() == {"username": user.info["username"], "display_name": "Ada Lovelace", "user_id": user.user_id}
    assert user.get("/api/session").json()["display_name"] == "Ada Lovelace"
    assert login(app, user.info["username"]).info["display_name"] == "Ada Lovelace"
    for bad in ("", "x" * 129):
        r = user.put("/api/settings/profile", json={"display_name": bad})
        assert r.status_code == 400 and "display_name" in r.json()["error"]
    assert user.get("/api/session").json()["display_name"] == "Ada Lovelace"


# -- password ---------------------------------------------------------------------------------

def test_password_change_ends_every_other_session_and_its_streams_at_once(app, user):
    name = user.info["username"]
    other = login(app, name)
    other_ws = status_socket(app, other.token)
    other_sse = EventStream(app, other.token)
    own_ws = status_socket(app, user.token)
    token = api_token(user)   # API tokens are not sessions: they stay
    started = time.monotonic()
    r = user.put("/api/settings/password", json={"current_password": PASSWORD, "new_password": "new-pw-2345"})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert closed_within(other_ws, 5) == 1008
    assert other_sse.ended.wait(5) and b"event: error" in other_sse.lines
    assert time.monotonic() - started < 5
    assert other.get("/api/session").status_code == 401
    assert user.get("/api/session").status_code == 200
    own_ws.settimeout(0.5)
    with pytest.raises(websocket.WebSocketTimeoutException):
        own_ws.recv()   # the caller's own stream is untouched
    own_ws.close()
    assert user.with_token(token).get("/compute/containers").status_code == 200
    assert requests.post(app.url + "/api/login", json={"username": name, "password": PASSWORD}).status_code == 401
    login(app, name, "new-pw-2345")


def test_password_rules_are_the_documented_ones_and_a_refusal_changes_nothing(app, user):
    other = login(app, user.info["username"])
    for bad, message in (("", "must not be empty"), ("x" * 1025, "at most 1024 bytes"),
                         ("é" * 513, "at most 1024 bytes")):
        r = user.put("/api/settings/password", json={"current_password": PASSWORD, "new_password": bad})
        assert r.status_code == 400 and message in r.json()["error"], r.text
    assert other.get("/api/session").status_code == 200   # nothing ended
    r = user.put("/api/settings/password", json={"current_password": PASSWORD, "new_password": "é" * 512})
    assert r.status_code == 200   # exactly 1024 bytes
    login(app, user.info["username"], "é" * 512)


def test_a_wrong_current_password_is_401_and_counted_by_the_login_throttle(app, user):
    name = user.info["username"]
    other = login(app, name)
    for _ in range(MAX_FAILURES):
        r = user.put("/api/settings/password", json={"current_password": "wrong", "new_password": "x-pw-1"})
        assert r.status_code == 401 and r.json() == {"error": "current password is incorrect"}
    assert other.get("/api/session").status_code == 200   # a refused change ends nothing
    # the same counters as /api/login: the next attempt of this user from here is throttled
    r = user.put("/api/settings/password", json={"current_password": PASSWORD, "new_password": "x-pw-1"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    r = requests.post(app.url + "/api/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 429
    assert user.get("/api/session").status_code == 200   # the session itself is fine


# -- sessions ---------------------------------------------------------------------------------

def test_own_sessions_are_a_bare_array_with_the_current_one_marked(app, admin, user):
    name = user.info["username"]
    phone = login(app, name, agent="Mozilla/5.0 (Android 14) Firefox/128.0")
    r = phone.get("/api/settings/sessions")
    assert r.status_code == 200 and isinstance(r.json(), list)
    listed = {s["id"]: s for s in r.json()}
    assert len(listed) == 2
    for s in listed.values():
        assert set(s) == {"id", "ip_address", "created_at", "is_current", "user_agent", "last_seen_at"}
        assert s["ip_address"] == "127.0.0.1" and type(s["created_at"]) is int and type(s["last_seen_at"]) is int
    [current] = [s for s in listed.values() if s["is_current"]]
    assert current["user_agent"] == "Mozilla/5.0 (Android 14) Firefox/128.0"
    # another user's list never holds them; the admin's list has both
    assert not set(listed) & {s["id"] for s in admin.get("/api/settings/sessions").json()}
    assert set(listed) <= {s["id"] for s in admin.get("/admin/sessions").json()}


def test_ending_one_session_or_all_others(app, admin, user):
    name = user.info["username"]
    a, b = login(app, name), login(app, name)
    ws = status_socket(app, a.token)
    ids = {s["is_current"]: s["id"] for s in a.get("/api/settings/sessions").json() if s["is_current"]}
    a_id = ids[True]
    # someone else's session is not found (and stays)
    stranger = new_user(app, admin)
    assert stranger.delete(f"/api/settings/sessions/{a_id}").status_code == 404
    assert a.get("/api/session").status_code == 200
    assert user.delete("/api/settings/sessions/no-such-session").status_code == 404
    assert user.delete(f"/api/settings/sessions/{a_id}").json() == {"status": "ok"}
    assert closed_within(ws, 5) == 1008
    assert a.get("/api/session").status_code == 401
    assert a_id not in {s["id"] for s in user.get("/api/settings/sessions").json()}
    assert user.delete(f"/api/settings/sessions/{a_id}").status_code == 404   # already ended
    # all but the current one
    assert b.delete("/api/settings/sessions").json() == {"status": "ok"}
    assert user.get("/api/session").status_code == 401
    assert [s["is_current"] for s in b.get("/api/settings/sessions").json()] == [True]
    assert stranger.get("/api/session").status_code == 200


def test_an_admin_ends_any_session(app, admin, user):
    ws = status_socket(app, user.token)
    [sid] = [s["id"] for s in admin.get("/admin/sessions").json() if s["user_id"] == user.user_id]
    assert admin.delete(f"/admin/sessions/{sid}").json() == {"status": "ok"}
    assert closed_within(ws, 5) == 1008
    assert user.get("/api/session").status_code == 401
    assert sid not in {s["id"] for s in admin.get("/admin/sessions").json()}
    assert admin.delete(f"/admin/sessions/{sid}").status_code == 404
    assert admin.get("/api/session").status_code == 200


def test_an_admin_password_reset_ends_the_users_sessions(app, admin, user):
    second = login(app, user.info["username"])
    ws = status_socket(app, second.token)
    r = admin.put(f"/admin/users/{user.user_id}/password", json={"password": "reset-pw-1"})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert closed_within(ws, 5) == 1008
    assert user.get("/api/session").status_code == 401 and second.get("/api/session").status_code == 401
    login(app, user.info["username"], "reset-pw-1")
    assert admin.put(f"/admin/users/{user.user_id}/password", json={"password": ""}).status_code == 400
    assert admin.put("/admin/users/nosuch/password", json={"password": "reset-pw-2"}).status_code == 404
    login(app, user.info["username"], "reset-pw-1")
    assert admin.get("/api/session").status_code == 200


def test_unmaking_an_admin_ends_their_admin_streams_at_once(app, admin, user):
    # /sse/logs is every user's activity: a demoted admin must not keep reading it.
    assert admin.put(f"/admin/users/{user.user_id}", json={"is_admin": True}).status_code == 200
    logs = EventStream(app, user.token, "/sse/logs")
    started = time.monotonic()
    assert admin.put(f"/admin/users/{user.user_id}", json={"is_admin": False}).status_code == 200
    assert logs.ended.wait(5) and b"event: error" in logs.lines
    assert time.monotonic() - started < 5
    assert user.get("/admin/users").status_code == 403
