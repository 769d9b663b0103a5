"""Service accounts (issue 18, docs/accounts.md): a real core + gateway on the
fake guest driver, real HTTP and WebSocket clients. An account's tokens carry
its *current* scopes; deleting it stops them, open streams included
(``stream_recheck_seconds`` is an hour: a close within seconds is the delete's)."""
from __future__ import annotations

import json
import time

import pytest
import requests
import websocket
from compute_support import new_user
from harness import Appliance

MAX_ACCOUNTS = 3
ACCOUNT_FIELDS = {"id", "name", "scopes", "created_at", "token_count"}
TOKEN_FIELDS = {"id", "name", "scopes", "expires_at", "last_used_at", "created_at", "service_account_id"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("service-accounts"), guest_driver="fake", stream_recheck_seconds=3600,
                  max_service_accounts_per_user=MAX_ACCOUNTS)
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


@pytest.fixture
def user(app, admin):
    return new_user(app, admin)


def create(user, name="ci", scopes=None) -> dict:
    scopes = scopes or {f"compute.{user.user_id}": ["read"], f"storage.{user.user_id}": ["create", "read"]}
    r = user.post("/api/service-accounts", json={"name": name, "scopes": scopes})
    assert r.status_code == 200, r.text
    return r.json()


def sa_token(user, account_id: str, name="deploy") -> dict:
    r = user.post(f"/api/service-accounts/{account_id}/tokens", json={"name": name, "expires_in": "30d"})
    assert r.status_code == 200, r.text
    return r.json()


def test_create_list_get_with_the_shapes(app, user):
    account = create(user)
    assert set(account) == ACCOUNT_FIELDS and account["id"].startswith("sa_") and account["token_count"] == 0
    assert account["scopes"] == {f"compute.{user.user_id}": ["read"], f"storage.{user.user_id}": ["create", "read"]}
    listed = user.get("/api/service-accounts").json()
    assert listed == [account]   # a bare array
    assert user.get(f"/api/service-accounts/{account['id']}").json() == account
    sa_token(user, account["id"])
    assert user.get(f"/api/service-accounts/{account['id']}").json()["token_count"] == 1
    assert user.get("/api/service-accounts").json()[0]["token_count"] == 1


def test_refusals(app, admin, user):
    other = new_user(app, admin)
    account = create(user)
    # scopes only over the creator's own resources; names; duplicates
    for body, status in (({"name": "x", "scopes": {f"compute.{other.user_id}": ["read"]}}, 400),
                         ({"name": "", "scopes": {f"compute.{user.user_id}": ["read"]}}, 400),
                         ({"name": "x" * 65, "scopes": {f"compute.{user.user_id}": ["read"]}}, 400),
                         ({"name": "x", "scopes": {}}, 400),
                         ({"name": "x", "scopes": {f"compute.{user.user_id}": ["fly"]}}, 400),
                         ({"name": "ci", "scopes": {f"compute.{user.user_id}": ["read"]}}, 409)):
        r = user.post("/api/service-accounts", json=body)
        assert r.status_code == status and "error" in r.json(), (body, r.text)
    foreign = {"scopes": {f"compute.{other.user_id}": ["read"]}}
    assert user.put(f"/api/service-accounts/{account['id']}/scopes", json=foreign).status_code == 400
    # someone else's account is not found, whatever the verb
    for verb, path, body in (("GET", "", None), ("PUT", "/scopes", foreign),
                             ("DELETE", "", None), ("POST", "/tokens", {"name": "t"}), ("GET", "/tokens", None)):
        r = other.request(verb, f"/api/service-accounts/{account['id']}{path}", json=body)
        assert r.status_code == 404, (verb, path, r.text)
    assert other.get("/api/service-accounts").json() == []
    # sessions only: an API token (even the account's own) cannot manage accounts
    token = sa_token(user, account["id"])["token"]
    assert user.with_token(token).get("/api/service-accounts").status_code == 403
    assert user.with_token(token).post("/api/service-accounts", json={"name": "y", "scopes": {}}).status_code == 403
    assert user.with_token(token).get("/api/tokens").status_code == 403
    assert requests.get(app.url + "/api/service-accounts").status_code == 401
    # a limit per user
    for i in range(MAX_ACCOUNTS - 1):
        create(user, f"more{i}")
    r = user.post("/api/service-accounts", json={"name": "too-many", "scopes": {f"compute.{user.user_id}": ["read"]}})
    assert r.status_code == 409 and "at most 3" in r.json()["error"]


def test_tokens_carry_the_accounts_current_scopes(app, user):
    account = create(user)
    created = sa_token(user, account["id"])
    assert created["service_account_id"] == account["id"] and created["token"].startswith("ecloud_")
    bot = user.with_token(created["token"])
    assert bot.get("/compute/containers").status_code == 200
    assert bot.post("/storage/namespaces", json={"name": f"a-{user.user_id.lower()}"}).status_code == 200
    # narrowed: the same live token loses storage at once
    narrow = {"scopes": {f"compute.{user.user_id}": ["read"]}}
    r = user.put(f"/api/service-accounts/{account['id']}/scopes", json=narrow)
    assert r.status_code == 200 and r.json()["scopes"] == {f"compute.{user.user_id}": ["read"]}
    assert bot.post("/storage/namespaces", json={"name": f"b-{user.user_id.lower()}"}).status_code == 403
    assert bot.get("/compute/containers").status_code == 200
    # widened again: at once too
    user.put(f"/api/service-accounts/{account['id']}/scopes",
             json={"scopes": {f"compute.{user.user_id}": ["read"], f"storage.{user.user_id}": ["create"]}})
    assert bot.post("/storage/namespaces", json={"name": f"c-{user.user_id.lower()}"}).status_code == 200


def test_token_lists_show_the_account_and_last_use(app, user):
    personal = user.post("/api/tokens", json={"name": "mine", "scopes": {f"compute.{user.user_id}": ["read"]}}).json()
    account = create(user)
    bot = sa_token(user, account["id"])
    listed = {t["id"]: t for t in user.get("/api/tokens").json()}
    assert set(listed) == {personal["id"], bot["id"]}
    assert all(set(t) == TOKEN_FIELDS for t in listed.values())
    assert listed[personal["id"]]["service_account_id"] is None
    assert listed[bot["id"]]["service_account_id"] == account["id"]
    assert listed[bot["id"]]["last_used_at"] is None
    before = int(time.time())
    assert user.with_token(bot["token"]).get("/compute/containers").status_code == 200
    listed = {t["id"]: t for t in user.get("/api/tokens").json()}
    assert before <= listed[bot["id"]]["last_used_at"] <= time.time() + 1
    # the account's own list: its tokens only, with its current scopes
    user.put(f"/api/service-accounts/{account['id']}/scopes", json={"scopes": {f"storage.{user.user_id}": ["read"]}})
    [only] = user.get(f"/api/service-accounts/{account['id']}/tokens").json()
    assert only["id"] == bot["id"] and only["scopes"] == {f"storage.{user.user_id}": ["read"]}
    # a service account's token can be deleted like any other
    assert user.delete(f"/api/tokens/{bot['id']}").status_code == 200
    assert user.with_token(bot["token"]).get("/storage/namespaces").status_code == 401


def test_deleting_the_account_stops_its_tokens_and_their_streams_at_once(app, user):
    account = create(user)
    first, second = sa_token(user, account["id"], "a"), sa_token(user, account["id"], "b")
    ws = websocket.create_connection(app.url.replace("http://", "ws://") + f"/compute/ws?token={first['token']}",
                                     timeout=10)
    assert json.loads(ws.recv())["type"] == "containers"
    personal = user.post("/api/tokens", json={"name": "mine", "scopes": {f"compute.{user.user_id}": ["read"]}}).json()
    started = time.monotonic()
    assert user.delete(f"/api/service-accounts/{account['id']}").json() == {"status": "ok"}
    deadline = time.monotonic() + 5
    while True:
        assert time.monotonic() < deadline, "the socket stayed open"
        ws.settimeout(1)
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            assert int.from_bytes(data[:2], "big") == 1008
            break
    assert time.monotonic() - started < 5
    for token in (first, second):
        assert user.with_token(token["token"]).get("/compute/containers").status_code == 401
    assert user.get(f"/api/service-accounts/{account['id']}").status_code == 404
    assert {t["id"] for t in user.get("/api/tokens").json()} == {personal["id"]}
    assert user.with_token(personal["token"]).get("/compute/containers").status_code == 200


def _closed_with(ws, within: float) -> int | None:
    """The close code the server sends within *within* seconds, or None."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            return None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big")
    return None


def test_narrowing_the_account_ends_its_tokens_streams_at_once(app, user):
    uid = user.user_id
    account = create(user, scopes={f"compute.{uid}": ["read"]})
    token = sa_token(user, account["id"])["token"]
    ws = websocket.create_connection(app.url.replace("http://", "ws://") + f"/compute/ws?token={token}", timeout=10)
    assert json.loads(ws.recv())["type"] == "containers"
    # widening keeps the stream: everything it was allowed still is
    wider = {f"compute.{uid}": ["read", "update"], f"storage.{uid}": ["read"]}
    assert user.put(f"/api/service-accounts/{account['id']}/scopes", json={"scopes": wider}).status_code == 200
    assert _closed_with(ws, 0.5) is None
    # narrowing (compute read taken away) ends it now, not at the hourly re-check
    narrower = {f"storage.{uid}": ["read"]}
    assert user.put(f"/api/service-accounts/{account['id']}/scopes", json={"scopes": narrower}).status_code == 200
    assert _closed_with(ws, 5) == 1008
    assert user.with_token(token).get("/compute/containers").status_code == 403
