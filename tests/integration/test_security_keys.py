"""WebAuthn security keys (issue 18, docs/accounts.md) on the session's real
core + gateway, with a software key (tests/webauthn_support.py) that signs
what a browser would send. Every refusal: replayed assertions (spent state,
old challenge, sign count), another user's key, expired and forged states,
states of the wrong kind or user, a challenge token used as a session or
twice, wrong origin / RP id, API tokens, other users' keys."""
from __future__ import annotations

import time

import jwt
import pytest
import requests
from webauthn_support import SoftKey, b64url

PASSWORD = "pw-123456"


@pytest.fixture
def origin(appliance) -> str:
    # The harness's public_host is 127.0.0.1, no valid RP id: the RP id is "localhost".
    return f"http://localhost:{appliance.http_port}"


def add_key(user, origin: str, name: str = "yubi") -> SoftKey:
    r = user.post("/api/settings/keys/add/begin", json={})
    assert r.status_code == 200, r.text
    options, state = r.json()["options"], r.json()["state"]
    assert options["rp"]["id"] == "localhost" and options["user"]["name"] == user.info["username"]
    key = SoftKey("localhost", origin)
    r = user.post("/api/settings/keys/add/finish", json={"state": state, "credential": key.register(options),
                                                         "name": name})
    assert r.status_code == 200, r.text
    return key


def challenge_of(appliance, user) -> str:
    r = requests.post(appliance.url + "/api/login", json={"username": user.info["username"], "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["requires_2fa"] is True and body["token"] == "" and "Set-Cookie" not in r.headers
    return body["challenge_token"]


def begin(appliance, challenge: str) -> requests.Response:
    return requests.post(appliance.url + "/api/webauthn/login/begin", json={},
                         headers={"Authorization": f"Bearer {challenge}"})


def finish(appliance, state: str, credential: dict) -> requests.Response:
    return requests.post(appliance.url + "/api/webauthn/login/finish", json={"state": state, "credential": credential})


def test_a_key_is_added_listed_used_renamed_and_deleted(appliance, make_user, origin):
    user = make_user()
    key = add_key(user, origin)
    keys = user.get("/api/settings/keys").json()["keys"]
    assert [(k["name"], k["authenticator_type"], k["last_used_at"]) for k in keys] == [("yubi", "cross-platform", None)]
    assert set(keys[0]) == {"id", "name", "authenticator_type", "created_at", "last_used_at"}
    # a second registration excludes the key already there
    options = user.post("/api/settings/keys/add/begin", json={}).json()["options"]
    assert [c["id"] for c in options["excludeCredentials"]] == [b64url(key.credential_id)]

    challenge = challenge_of(appliance, user)
    assert requests.get(appliance.url + "/api/session",
                        headers={"Authorization": f"Bearer {challenge}"}).status_code == 401   # no session
    r = begin(appliance, challenge)
    assert r.status_code == 200, r.text
    options, state = r.json()["options"], r.json()["state"]
    assert options["rpId"] == "localhost"
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(key.credential_id)]
    r = finish(appliance, state, key.assert_(options))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["username"] == user.info["username"] and body["token"] and "Set-Cookie" in r.headers
    assert requests.get(appliance.url + "/api/session",
                        headers={"Authorization": f"Bearer {body['token']}"}).status_code == 200
    assert user.get("/api/settings/keys").json()["keys"][0]["last_used_at"] is not None

    kid = keys[0]["id"]
    assert user.post("/api/settings/keys/rename", json={"id": kid, "name": "desk key"}).json() == {"status": "ok"}
    assert user.post("/api/settings/keys/rename", json={"id": kid, "name": " "}).status_code == 400
    assert user.get("/api/settings/keys").json()["keys"][0]["name"] == "desk key"
    assert user.post("/api/settings/keys/delete", json={"id": kid}).json() == {"status": "ok"}
    assert user.post("/api/settings/keys/delete", json={"id": kid}).status_code == 404
    r = requests.post(appliance.url + "/api/login", json={"username": user.info["username"], "password": PASSWORD})
    assert r.status_code == 200 and r.json()["token"]
    audit = user.get("/api/settings/audit", params={"limit": 500}).json()["events"]
    events = {(e["event"], e["outcome"]) for e in audit}
    assert {("2fa.key_added", "success"), ("2fa.key_used", "success"), ("2fa.key_renamed", "success"),
            ("2fa.key_removed", "success"), ("login", "success")} <= events


def test_replayed_assertions_are_refused(appliance, make_user, origin):
    user = make_user()
    key = add_key(user, origin)
    challenge = challenge_of(appliance, user)
    ceremony = begin(appliance, challenge).json()
    signed = key.assert_(ceremony["options"])
    assert finish(appliance, ceremony["state"], signed).status_code == 200
    # the same assertion with the same (spent) state
    r = finish(appliance, ceremony["state"], signed)
    assert r.status_code == 401 and "already used" in r.json()["error"]
    # ... and with a new login's state: its challenge is not the one signed
    ceremony = begin(appliance, challenge_of(appliance, user)).json()
    r = finish(appliance, ceremony["state"], signed)
    assert r.status_code == 401 and "did not verify" in r.json()["error"]
    # a fresh signature whose sign count did not go up (a cloned key)
    ceremony = begin(appliance, challenge_of(appliance, user)).json()
    r = finish(appliance, ceremony["state"], key.assert_(ceremony["options"], bump=False))
    assert r.status_code == 401 and "sign count" in r.json()["error"].lower()
    ceremony = begin(appliance, challenge_of(appliance, user)).json()
    assert finish(appliance, ceremony["state"], key.assert_(ceremony["options"])).status_code == 200


def test_another_users_key_and_wrong_origins_are_refused(appliance, make_user, origin):
    alice, bob = make_user(), make_user()
    add_key(alice, origin)
    bob_key = add_key(bob, origin)
    ceremony = begin(appliance, challenge_of(appliance, alice)).json()
    r = finish(appliance, ceremony["state"], bob_key.assert_(ceremony["options"]))
    assert r.status_code == 401 and "not registered to the user" in r.json()["error"]
    # bob's own key, signing for another origin (a phishing page) or RP id
    ceremony = begin(appliance, challenge_of(appliance, bob)).json()
    r = finish(appliance, ceremony["state"], bob_key.assert_(ceremony["options"], origin="http://evil.example"))
    assert r.status_code == 401
    options = dict(begin(appliance, challenge_of(appliance, bob)).json())
    r = finish(appliance, options["state"], bob_key.assert_({**options["options"], "rpId": "evil.example"}))
    assert r.status_code == 401
    # registration from another origin, or with another user's state
    r = alice.post("/api/settings/keys/add/begin", json={})
    evil = SoftKey("localhost", "http://evil.example")
    assert alice.post("/api/settings/keys/add/finish", json={
        "state": r.json()["state"], "credential": evil.register(r.json()["options"])}).status_code == 400
    r = alice.post("/api/settings/keys/add/begin", json={})
    foreign = bob.post("/api/settings/keys/add/finish", json={
        "state": r.json()["state"], "credential": SoftKey("localhost", origin).register(r.json()["options"])})
    assert foreign.status_code == 403
    # a key registered to bob cannot be registered again (by anyone)
    r = alice.post("/api/settings/keys/add/begin", json={})
    assert alice.post("/api/settings/keys/add/finish", json={
        "state": r.json()["state"], "credential": bob_key.register(r.json()["options"])}).status_code == 409
    # a spent registration state
    r = alice.post("/api/settings/keys/add/begin", json={})
    credential = SoftKey("localhost", origin).register(r.json()["options"])
    assert alice.post("/api/settings/keys/add/finish", json={"state": r.json()["state"],
                                                             "credential": credential}).status_code == 200
    again = alice.post("/api/settings/keys/add/finish", json={"state": r.json()["state"], "credential": credential})
    assert again.status_code == 401
    # another user's key id
    bob_id = bob.get("/api/settings/keys").json()["keys"][0]["id"]
    assert alice.post("/api/settings/keys/delete", json={"id": bob_id}).status_code == 404
    assert alice.post("/api/settings/keys/rename", json={"id": bob_id, "name": "mine"}).status_code == 404


def test_challenge_tokens_and_states_are_single_use_and_of_their_kind(appliance, make_user, origin):
    user = make_user()
    key = add_key(user, origin)
    challenge = challenge_of(appliance, user)
    first, second = begin(appliance, challenge).json(), begin(appliance, challenge).json()
    # a state is not a challenge token, a challenge token is not a state, a session is neither
    assert begin(appliance, first["state"]).status_code == 401
    assert finish(appliance, challenge, key.assert_(first["options"], bump=False)).status_code == 401
    assert begin(appliance, user.token).status_code == 401
    assert requests.post(appliance.url + "/api/webauthn/login/begin", json={}).status_code == 401
    registration = user.post("/api/settings/keys/add/begin", json={}).json()["state"]
    assert finish(appliance, registration, key.assert_(first["options"], bump=False)).status_code == 401
    assert requests.get(appliance.url + "/api/settings/keys",
                        headers={"Authorization": f"Bearer {first['state']}"}).status_code == 401
    assert finish(appliance, first["state"], key.assert_(first["options"])).status_code == 200
    # the challenge token is spent with the login: its other state, a new begin, the TOTP step
    r = finish(appliance, second["state"], key.assert_(second["options"]))
    assert r.status_code == 401 and "already used" in r.json()["error"]
    assert begin(appliance, challenge).status_code == 401
    assert requests.post(appliance.url + "/api/login/totp",
                         json={"challenge_token": challenge, "code": "123456"}).status_code == 401


def test_expired_and_forged_states_are_refused(appliance, make_user, origin):
    user = make_user()
    key = add_key(user, origin)
    challenge = challenge_of(appliance, user)
    time.sleep(1.1)
    ceremony = begin(appliance, challenge).json()
    claims = jwt.decode(ceremony["state"], options={"verify_signature": False})
    # a state never outlives the challenge token it came from (begun at its last second, it
    # would otherwise finish a login up to 5 minutes after the challenge expired)
    challenge_exp = jwt.decode(challenge, options={"verify_signature": False})["exp"]
    assert claims["type"] == "webauthn_login" and claims["exp"] == challenge_exp
    secret = (appliance.data_dir / "jwt_secret").read_text().strip()
    expired = jwt.encode({**claims, "iat": claims["iat"] - 600, "exp": int(time.time()) - 1}, secret)
    r = finish(appliance, expired, key.assert_(ceremony["options"]))
    assert r.status_code == 401 and "expired" in r.json()["error"]
    forged = jwt.encode({**claims, "jti": "f" * 32}, "not-the-secret" * 3)
    assert finish(appliance, forged, key.assert_(ceremony["options"])).status_code == 401
    expired_challenge = jwt.encode({"type": "2fa_challenge", "user_id": user.user_id, "iat": int(time.time()) - 600,
                                    "exp": int(time.time()) - 300, "jti": "e" * 32}, secret)
    assert begin(appliance, expired_challenge).status_code == 401
    # the untouched state still works (nothing above spent it)
    assert finish(appliance, ceremony["state"], key.assert_(ceremony["options"])).status_code == 200


def test_keys_need_a_session_and_admins_remove_them(appliance, make_user, admin, origin):
    user = make_user()
    token = user.post("/api/tokens", json={"name": "t", "scopes": {f"compute.{user.user_id}": ["read"]}}).json()
    bot = user.with_token(token["token"])
    for path in ("/api/settings/keys/add/begin", "/api/settings/keys/add/finish", "/api/settings/keys/delete",
                 "/api/settings/keys/rename"):
        assert bot.post(path, json={"state": "x", "credential": {}, "id": "x", "name": "x"}).status_code == 403, path
    assert bot.get("/api/settings/keys").status_code == 403
    add_key(user, origin)
    challenge_of(appliance, user)
    assert user.delete(f"/admin/users/{user.user_id}/second-factors").status_code == 403
    assert admin.delete(f"/admin/users/{user.user_id}/second-factors").json() == {"status": "ok"}
    assert user.get("/api/settings/keys").json() == {"keys": []}
    r = requests.post(appliance.url + "/api/login", json={"username": user.info["username"], "password": PASSWORD})
    assert r.status_code == 200 and r.json()["token"]
