"""Long-lived streams end when their credential does (issue 19, items 9 and 11;
the terminal on real guests: test_terminal.py). Real core + gateway on the
fake guest driver, real clients: websocket-client and requests.

``stream_recheck_seconds`` is an hour here, so a stream that ends within
seconds was ended by the revocation itself, not by the periodic re-check
(which has its own test with a short interval: a user removed by the CLI,
i.e. by another process).
"""
from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import websocket
from compute_support import db_row_id, new_user, running
from harness import Appliance

PASSWORD = "pw-123456"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("streams"), guest_driver="fake", stream_recheck_seconds=3600,
                  terminals_per_user=3)
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


def ws_url(app, path: str) -> str:
    return app.url.replace("http://", "ws://") + path


def closed_within(ws, seconds: float) -> tuple[int | None, list]:
    """Read until the server closes the socket; (close code, messages seen).
    Fails if it is still open after ``seconds``."""
    seen = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"socket still open after {seconds}s; saw {seen}"
        ws.settimeout(min(left, 1.0))
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        except websocket.WebSocketConnectionClosedException:
            return None, seen
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return (int.from_bytes(data[:2], "big") if len(data) >= 2 else None), seen
        seen.append(data)


# -- item 9: a deleted user's status socket --------------------------------------------------

def test_deleted_users_socket_closes_and_never_sees_the_next_users_events(app, admin):
    x = new_user(app, admin)
    x_row = db_row_id(app, "user", x.user_id)
    ws = websocket.create_connection(ws_url(app, f"/compute/ws?token={x.token}"), timeout=10)
    assert json.loads(ws.recv())["type"] == "containers"
    assert admin.delete(f"/admin/users/{x.user_id}").status_code == 200
    y = new_user(app, admin)
    assert db_row_id(app, "user", y.user_id) == x_row, "the test needs Y to reuse X's row id"
    cid = running(app, y)["id"]  # Y's container goes pending -> initializing -> running
    code, seen = closed_within(ws, 5)
    assert code == 1008
    assert not any(cid.encode() in m for m in seen), seen
    assert seen == []  # nothing at all after the snapshot


# -- item 11: revocation ends open streams ----------------------------------------------------

def test_status_socket_ends_when_its_api_token_is_deleted(app, admin):
    u = new_user(app, admin)
    r = u.post("/api/tokens", json={"name": "ws", "scopes": {f"compute.{u.user_id}": ["read"]}})
    assert r.status_code == 200
    token, token_id = r.json()["token"], r.json()["id"]
    ws = websocket.create_connection(ws_url(app, f"/compute/ws?token={token}"), timeout=10)
    assert json.loads(ws.recv())["type"] == "containers"
    other = websocket.create_connection(ws_url(app, f"/compute/ws?token={u.token}"), timeout=10)
    other.recv()
    started = time.monotonic()
    assert u.delete(f"/api/tokens/{token_id}").status_code == 200
    code, seen = closed_within(ws, 5)
    assert code == 1008 and seen == []
    assert time.monotonic() - started < 5
    # the session's own socket is untouched and still gets events
    cid = running(app, u)["id"]
    other.settimeout(10)
    events = []
    while not any(e.get("data", {}).get("status") == "running" for e in events):
        events.append(json.loads(other.recv()))
    assert all(e["data"]["container_id"] == cid for e in events)
    other.close()


def test_status_socket_ends_at_logout(app, admin):
    u = new_user(app, admin)
    second = app.login(u.info["username"], PASSWORD)  # another session of the same user
    ws = websocket.create_connection(ws_url(app, "/compute/ws"), timeout=10,
                                     header=[f"Authorization: Bearer {second.token}"])
    assert json.loads(ws.recv())["type"] == "containers"
    assert second.post("/api/logout").status_code == 200
    code, _ = closed_within(ws, 5)
    assert code == 1008
    # the logged-out token opens nothing new; the first session still works
    r = requests.get(app.url + "/compute/ws", headers={"Authorization": f"Bearer {second.token}", **UPGRADE})
    assert r.status_code == 401
    assert u.get("/compute/containers").status_code == 200


def test_terminal_on_the_fake_driver_ends_when_its_token_is_deleted(app, admin):
    u = new_user(app, admin)
    cid = running(app, u)["id"]
    r = u.post("/api/tokens", json={"name": "t", "scopes": {f"compute.{u.user_id}.containers.{cid}": ["update"]}})
    token, token_id = r.json()["token"], r.json()["id"]
    ws = websocket.create_connection(ws_url(app, f"/compute/containers/{cid}/terminal?token={token}"), timeout=10)
    ws.send_binary(b"before")
    got = b""
    while b"before" not in got:
        got += ws.recv()
    assert u.delete(f"/api/tokens/{token_id}").status_code == 200
    code, _ = closed_within(ws, 5)
    assert code == 1008


def test_sse_progress_stream_ends_when_its_token_is_deleted(app, admin):
    u = new_user(app, admin)
    r = u.post("/api/tokens", json={"name": "sse", "scopes": {f"storage.{u.user_id}": ["read", "create"]}})
    assert r.status_code == 200, r.text
    token, token_id = r.json()["token"], r.json()["id"]
    lines, opened, ended = [], threading.Event(), threading.Event()

    def watch():
        with requests.get(app.url + "/sse/progress", params={"id": "never-started", "token": token},
                          stream=True, timeout=(5, 12)) as r:
            assert r.status_code == 200
            opened.set()
            try:
                for line in r.iter_lines():
                    lines.append(line)
            except requests.RequestException as e:
                lines.append(repr(e).encode())
        ended.set()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    assert opened.wait(5)
    time.sleep(0.3)
    assert u.delete(f"/api/tokens/{token_id}").status_code == 200
    assert ended.wait(8), "the event stream stayed open after its token was deleted"
    assert b"event: error" in lines, lines
    assert any(b"revoked" in line for line in lines), lines


def test_a_user_removed_by_the_cli_loses_its_streams_at_the_next_recheck(tmp_path):
    """Another process deleted the user: no hook ran in the core; the periodic
    re-check ends the stream."""
    a = Appliance(tmp_path / "recheck", guest_driver="fake", stream_recheck_seconds=1)
    a.start()
    try:
        u = new_user(a, a.admin())
        ws = websocket.create_connection(ws_url(a, f"/compute/ws?token={u.token}"), timeout=10)
        assert json.loads(ws.recv())["type"] == "containers"
        out = a.cli("user", "rm", u.info["username"])
        assert out.returncode == 0, out.stderr
        code, _ = closed_within(ws, 5)
        assert code == 1008
    finally:
        a.close()


# -- WebSockets take no cookie -----------------------------------------------------------------

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}


def test_a_websocket_upgrade_with_only_a_cookie_is_refused(app, admin):
    u = new_user(app, admin)
    cid = running(app, u)["id"]
    browser = requests.Session()  # whatever cookie the login sets, it keeps
    r = browser.post(app.url + "/api/login", json={"username": u.info["username"], "password": PASSWORD})
    assert r.status_code == 200
    session = r.json()["token"]
    cookies = {**browser.cookies.get_dict(), "session": session, "token": session,
               "appliance_session": session, "Authorization": f"Bearer {session}"}
    for path in ("/compute/ws", f"/compute/containers/{cid}/terminal"):
        r = requests.get(app.url + path, headers={**UPGRADE, "Origin": "https://evil.example"},
                         cookies=cookies, timeout=10)
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert "error" in r.json() and "Upgrade" not in r.headers
        # the same with the token as the API says: opens
        ws = websocket.create_connection(ws_url(app, path) + f"?token={session}", timeout=10)
        ws.close()


# -- limits ---------------------------------------------------------------------------------------

def announce_frame(ws, length: int) -> None:
    """Send only the header of a masked binary frame of ``length`` bytes. The
    server must refuse it from the header (1009) without waiting for, or
    buffering, the payload (and, the payload never being sent, its close
    frame cannot be lost to a reset)."""
    ws.sock.sendall(bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big") + b"\0\0\0\0")


def test_an_oversized_message_on_the_status_socket_closes_it_with_1009(app, admin):
    u = new_user(app, admin)
    ws = websocket.create_connection(ws_url(app, f"/compute/ws?token={u.token}"), timeout=10)
    ws.recv()
    announce_frame(ws, 64 * 1024 + 1)
    code, _ = closed_within(ws, 5)
    assert code == 1009


def test_terminals_per_user_are_capped(app, admin):
    u = new_user(app, admin)
    cid = running(app, u)["id"]
    url = ws_url(app, f"/compute/containers/{cid}/terminal?token={u.token}")
    open_ = [websocket.create_connection(url, timeout=10) for _ in range(3)]
    r = requests.get(app.url + f"/compute/containers/{cid}/terminal?token={u.token}", headers=UPGRADE, timeout=10)
    assert r.status_code == 429 and "terminals" in r.json()["error"]
    # another user is not affected by this one's cap
    v = new_user(app, admin)
    vid = running(app, v)["id"]
    websocket.create_connection(ws_url(app, f"/compute/containers/{vid}/terminal?token={v.token}"),
                                timeout=10).close()
    open_.pop().close()
    deadline = time.monotonic() + 10
    while True:  # the slot comes back once that shell is closed
        try:
            open_.append(websocket.create_connection(url, timeout=10))
            break
        except websocket.WebSocketBadStatusException as e:
            assert e.status_code == 429
            assert time.monotonic() < deadline
            time.sleep(0.1)
    for ws in open_:
        ws.close()
