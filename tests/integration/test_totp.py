"""TOTP second factor with recovery codes (issue 18, docs/accounts.md): a real
core + gateway, codes computed by pyotp as an authenticator app would. Every
refusal of the second step: wrong, replayed and foreign codes, a spent or
expired-looking challenge, a challenge used as a session."""
from __future__ import annotations

import http.client
import json
import time

import jwt
import pyotp
import pytest
import requests
from compute_support import new_user
from harness import Appliance, Client

PASSWORD = "pw-123456"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("totp"), guest_driver="fake", login_max_failures=3,
                  login_max_successes_per_address=1000)
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


def enable(user) -> tuple[pyotp.TOTP, list[str], str]:
    """TOTP turned on: the app's generator, the recovery codes, the code that confirmed it."""
    r = user.post("/api/settings/totp/begin", json={})
    assert r.status_code == 200, r.text
    secret, uri = r.json()["secret"], r.json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    totp = pyotp.TOTP(secret)
    assert user.post("/api/settings/totp/enable", json={"code": "000000" if totp.now() != "000000" else "111111"}
                     ).status_code == 400
    confirming = totp.now()
    r = user.post("/api/settings/totp/enable", json={"code": confirming})
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    return totp, codes, confirming


def first_step(app, name: str, password: str = PASSWORD) -> str:
    r = requests.post(app.url + "/api/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["requires_2fa"] is True and body["token"] == "" and "Set-Cookie" not in r.headers
    return body["challenge_token"]


def second_step(app, challenge: str, code: str) -> requests.Response:
    return requests.post(app.url + "/api/login/totp", json={"challenge_token": challenge, "code": code})


def later(totp: pyotp.TOTP) -> str:
    """The code of the next 30 s step (accepted: one step either side of now).
    The current step's was used up to enable TOTP, and a code works once."""
    return totp.at(time.time() + 30)


def test_login_needs_the_second_factor_once_enabled(app, admin):
    user = new_user(app, admin)
    name = user.info["username"]
    assert user.get("/api/settings/totp").json() == {"enabled": False, "enabled_at": 0, "recovery_codes_left": 0}
    user.post("/api/settings/totp/begin", json={})
    assert user.get("/api/settings/totp").json()["enabled"] is False     # begun, not in force
    totp, codes, confirming = enable(user)
    status = user.get("/api/settings/totp").json()
    assert status["enabled"] is True and status["recovery_codes_left"] == 10
    assert abs(status["enabled_at"] - time.time()) < 60
    challenge = first_step(app, name)
    claims = jwt.decode(challenge, options={"verify_signature": False})
    assert claims["type"] == "2fa_challenge" and claims["exp"] - claims["iat"] == 300
    # a challenge token is no session
    assert Client(app.url, challenge).get("/api/session").status_code == 401
    assert second_step(app, first_step(app, name), confirming).status_code == 401   # used to enable: a replay
    challenge = first_step(app, name)
    r = second_step(app, challenge, later(totp))
    assert r.status_code == 200, r.text
    session = r.json()["token"]
    assert r.json()["username"] == name and "Set-Cookie" in r.headers
    assert Client(app.url, session).get("/api/session").status_code == 200
    # spent: the same challenge again, even with a fresh code, is refused
    assert second_step(app, challenge, later(totp)).status_code == 401
    # the same code on a new challenge is a replay
    r = second_step(app, first_step(app, name), later(totp))
    assert r.status_code == 401 and "invalid code" in r.json()["error"]
    # a recovery code works once (with or without its dash, any case)
    assert second_step(app, first_step(app, name), codes[0].upper().replace("-", "")).status_code == 200
    assert second_step(app, first_step(app, name), codes[0]).status_code == 401
    assert Client(app.url, session).get("/api/settings/totp").json()["recovery_codes_left"] == 9
    # a wrong password never gets a challenge
    r = requests.post(app.url + "/api/login", json={"username": name, "password": "wrong"})
    assert r.status_code == 401 and "challenge_token" not in r.text.replace('"challenge_token"', "")


def test_foreign_and_forged_challenges_and_codes_are_refused(app, admin):
    alice, bob = new_user(app, admin), new_user(app, admin)
    a_totp, _, _ = enable(alice)
    _, b_codes, _ = enable(bob)
    # bob's recovery code on alice's challenge
    assert second_step(app, first_step(app, alice.info["username"]), b_codes[0]).status_code == 401
    # a challenge signed with another key, or claiming another user
    forged = jwt.encode({"type": "2fa_challenge", "user_id": alice.user_id, "iat": int(time.time()),
                         "exp": int(time.time()) + 300, "jti": "x" * 32}, "not-the-secret" * 3, algorithm="HS256")
    assert second_step(app, forged, later(a_totp)).status_code == 401
    # a session token is not a challenge
    assert second_step(app, alice.token, later(a_totp)).status_code == 401
    assert second_step(app, first_step(app, alice.info["username"]), later(a_totp)).status_code == 200
    # wrong codes add up in the login throttle although each login's password was right
    for bad in ("12345", "abcdef", "1" * 2000):
        r = second_step(app, first_step(app, bob.info["username"]), bad)
        assert r.status_code == 401, (bad, r.text)
    r = requests.post(app.url + "/api/login", json={"username": bob.info["username"], "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_disable_needs_the_password_and_admins_can_remove(app, admin):
    user = new_user(app, admin)
    name = user.info["username"]
    enable(user)
    assert user.post("/api/settings/totp/begin", json={}).status_code == 409   # on already
    r = user.post("/api/settings/totp/disable", json={"current_password": "wrong"})
    assert r.status_code == 401
    assert user.post("/api/settings/totp/disable", json={"current_password": PASSWORD}).status_code == 200
    assert "token" in requests.post(app.url + "/api/login", json={"username": name, "password": PASSWORD}).json()
    assert requests.post(app.url + "/api/login", json={"username": name, "password": PASSWORD}
                         ).json().get("requires_2fa") is None
    # an admin removes a user's second factor (lost phone and codes)
    enable(user)
    first_step(app, name)
    assert user.delete(f"/admin/users/{user.user_id}/second-factors").status_code == 403
    assert admin.delete(f"/admin/users/{user.user_id}/second-factors").json() == {"status": "ok"}
    assert admin.delete(f"/admin/users/{user.user_id}/second-factors").status_code == 404
    body = requests.post(app.url + "/api/login", json={"username": name, "password": PASSWORD}).json()
    assert "requires_2fa" not in body and "challenge_token" not in body and body["token"]
    events = [e["event"] for e in user.get("/api/settings/audit", params={"limit": 500}).json()["events"]]
    assert {"2fa.enabled", "2fa.disabled", "2fa.removed"} <= set(events)


def test_settings_need_a_session(app, admin):
    user = new_user(app, admin)
    token = user.post("/api/tokens", json={"name": "t", "scopes": {f"compute.{user.user_id}": ["read"]}}).json()
    bot = user.with_token(token["token"])
    for path in ("/api/settings/totp/begin", "/api/settings/totp/enable", "/api/settings/totp/disable"):
        assert bot.post(path, json={"code": "123456", "current_password": PASSWORD}).status_code == 403
    assert bot.get("/api/settings/totp").status_code == 403


def test_the_cli_logs_in_with_a_code_from_stdin(app, admin, tmp_path):
    from client_support import User

    user = new_user(app, admin)
    name = user.info["username"]
    totp, _, _ = enable(user)
    person = User(tmp_path / "cli")
    out = person.json("login", app.url, "-u", name, "--password-stdin", input=f"{PASSWORD}\n{later(totp)}\n")
    assert out["username"] == name and "challenge_token" not in out and "requires_2fa" not in out
    [remote] = json.loads(person.config.read_text())["remotes"].values()
    assert Client(app.url, remote["token"]).get("/api/session").json()["username"] == name
    refused = person.run("login", app.url, "-u", name, "--password-stdin", input=f"{PASSWORD}\n000000\n")
    assert refused.returncode != 0 and "invalid code" in refused.stderr


def test_a_challenge_from_before_a_password_change_or_reset_is_refused(app, admin):
    # An admin resets a compromised account's password (or its owner changes it):
    # a challenge the intruder got with the old password must not finish the login.
    user = new_user(app, admin)
    name = user.info["username"]
    totp, codes, _ = enable(user)
    before_reset = first_step(app, name)
    assert admin.put(f"/admin/users/{user.user_id}/password", json={"password": "reset-pw-1"}).status_code == 200
    r = second_step(app, before_reset, codes[0])
    assert r.status_code == 401 and "password" in r.json()["error"], r.text
    owner = Client(app.url, second_step(app, first_step(app, name, "reset-pw-1"), codes[1]).json()["token"])
    before_change = first_step(app, name, "reset-pw-1")
    r = owner.put("/api/settings/password", json={"current_password": "reset-pw-1", "new_password": PASSWORD})
    assert r.status_code == 200, r.text
    assert second_step(app, before_change, codes[2]).status_code == 401
    r = requests.post(app.url + "/api/webauthn/login/begin", json={},
                      headers={"Authorization": f"Bearer {first_step(app, name, PASSWORD)}"})
    assert r.status_code == 404   # the check is not in the way of a current challenge (no key: 404)
    assert second_step(app, first_step(app, name), codes[3]).status_code == 200


def _post_from(app, source: str, path: str, body: dict) -> tuple[int, dict]:
    """POST from the loopback address *source*: each one another client to the throttle."""
    conn = http.client.HTTPConnection("127.0.0.1", app.http_port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def test_wrong_codes_from_many_addresses_add_up_per_user(app, admin):
    # Someone with the password and many addresses must not get login_max_failures
    # guesses of the code per address: the user's wrong codes count wherever they come from.
    user = new_user(app, admin)
    name = user.info["username"]
    totp, _, _ = enable(user)
    per_user = 3 * 4   # login_max_failures (3) x the per-address factor
    statuses = []
    for n in range(per_user + 2):
        source = f"127.0.{n // 200 + 20}.{n % 200 + 2}"
        status, body = _post_from(app, source, "/api/login", {"username": name, "password": PASSWORD})
        assert status == 200, body
        statuses.append(_post_from(app, source, "/api/login/totp",
                                   {"challenge_token": body["challenge_token"], "code": "000000"
                                    if totp.now() != "000000" else "111111"})[0])
    assert statuses[:per_user] == [401] * per_user and set(statuses[per_user:]) == {429}, statuses
