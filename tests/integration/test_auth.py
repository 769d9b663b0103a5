"""Auth as a user meets it: real core + gateway over HTTP (docs/api.md "Auth")."""
import base64
import json
import subprocess
import time

import jwt
import pytest
import requests
from harness import Appliance

SCOPES_READ = lambda uid: {f"compute.{uid}": ["read"]}  # noqa: E731


def test_healthz(appliance):
    r = requests.get(appliance.url + "/healthz")
    assert r.status_code == 200 and r.text == "ok"


def test_login_returns_user_and_session_jwt(appliance, make_user):
    u = make_user()
    r = requests.post(appliance.url + "/api/login", json={"username": u.info["username"], "password": u.password})
    assert r.status_code == 200
    body = r.json()
    # the original's shape: requires_2fa / challenge_token only when a second factor is due
    assert set(body) == {"username", "display_name", "user_id", "is_admin", "token"}
    assert body["is_admin"] is False and body["display_name"] == body["username"]
    assert len(body["user_id"]) == 6 and not body["user_id"].isdigit()
    header = jwt.get_unverified_header(body["token"])
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert {"username", "display_name", "user_id", "sub", "iat", "exp"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 86400


def test_bad_credentials_are_one_message(appliance, user):
    wrong = requests.post(appliance.url + "/api/login", json={"username": user.info["username"], "password": "nope"})
    unknown = requests.post(appliance.url + "/api/login", json={"username": "no-such-user", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "invalid username or password"}


def test_session(user):
    r = user.get("/api/session")
    assert r.status_code == 200
    assert r.json() == {k: user.info[k] for k in ("username", "display_name", "user_id", "is_admin")}


@pytest.mark.parametrize("method,path", [("POST", "/compute/containers"), ("POST", "/api/tokens"),
                                         ("POST", "/storage/namespaces"), ("POST", "/admin/users")])
def test_missing_credentials_are_401_before_the_body_is_judged(appliance, method, path):
    for body in (b"{}", b"not json"):
        r = requests.request(method, appliance.url + path, data=body)
        assert r.status_code == 401 and r.json() == {"error": "missing bearer token"}


def test_session_needs_a_token(appliance):
    r = requests.get(appliance.url + "/api/session")
    assert r.status_code == 401 and "error" in r.json()
    r = requests.get(appliance.url + "/api/session", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_logout_revokes_the_session_server_side(appliance, make_user):
    u = make_user()
    assert u.get("/api/session").status_code == 200
    r = u.post("/api/logout")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert u.get("/api/session").status_code == 401
    # Logging out without a token is acknowledged too.
    assert requests.post(appliance.url + "/api/logout").json() == {"status": "ok"}


def test_api_token_lifecycle_and_immediate_revocation(user):
    uid = user.user_id
    r = user.post("/api/tokens", json={"name": "ci", "scopes": SCOPES_READ(uid), "expires_in": "30d"})
    assert r.status_code == 200, r.text
    created = r.json()
    assert set(created) == {"id", "name", "scopes", "expires_at", "created_at", "token", "service_account_id"}
    assert created["token"].startswith("ecloud_")
    assert created["expires_at"] - created["created_at"] == 30 * 86400
    claims = jwt.decode(created["token"][7:], options={"verify_signature": False})
    assert claims["type"] == "api_token" and claims["token_id"] == created["id"]
    assert claims["user_id"] == uid and claims["scopes"] == SCOPES_READ(uid)

    listed = user.get("/api/tokens").json()
    assert [t["id"] for t in listed] == [created["id"]]
    assert set(listed[0]) == {"id", "name", "scopes", "expires_at", "last_used_at", "created_at",
                               "service_account_id"}
    assert listed[0]["last_used_at"] is None

    api = user.with_token(created["token"])
    assert api.get(f"/api/tokens/{created['id']}/check").status_code == 200
    # An API token is a valid credential but not a session.
    r = api.get("/api/session")
    assert r.status_code == 403
    assert api.get("/api/tokens").status_code == 403
    assert user.get("/api/tokens").json()[0]["last_used_at"] is not None

    assert user.delete(f"/api/tokens/{created['id']}").json() == {"status": "ok"}
    assert api.get("/api/session").status_code == 401  # at once, not after a cache expires
    assert user.get(f"/api/tokens/{created['id']}/check").status_code == 404
    assert user.delete(f"/api/tokens/{created['id']}").status_code == 404


def test_never_expiring_token_has_null_expiry(user):
    r = user.post("/api/tokens", json={"name": "forever", "scopes": SCOPES_READ(user.user_id)})
    assert r.status_code == 200 and r.json()["expires_at"] is None


def test_tokens_are_private_to_their_owner(make_user):
    alice, bob = make_user(), make_user()
    tid = alice.post("/api/tokens", json={"name": "a", "scopes": SCOPES_READ(alice.user_id)}).json()["id"]
    assert bob.get("/api/tokens").json() == []
    assert bob.delete(f"/api/tokens/{tid}").status_code == 404
    assert alice.get(f"/api/tokens/{tid}/check").status_code == 200


@pytest.mark.parametrize("body,needle", [
    ({"scopes": {}}, "name"),
    ({"name": "", "scopes": {"compute.UID": ["read"]}}, "name"),
    ({"name": "x" * 65, "scopes": {"compute.UID": ["read"]}}, "name"),
    ({"name": "x"}, "scopes"),
    ({"name": "x", "scopes": {}}, "scopes"),
    ({"name": "x", "scopes": {"compute.UID": ["read"]}, "expires_in": "7d"}, "expires_in"),
    ({"name": "x", "scopes": {"compute.OTHER": ["read"]}}, "owner"),
    ({"name": "x", "scopes": {"network.UID": ["read"]}}, "service"),
    ({"name": "x", "scopes": {"compute.UID.volumes": ["read"]}}, "resource"),
    ({"name": "x", "scopes": {"compute.UID": ["launch"]}}, "action"),
    ({"name": 7, "scopes": {"compute.UID": ["read"]}}, "name"),
    ({"name": "x", "scopes": ["compute.UID"]}, "scopes"),
])
def test_bad_token_requests_are_400_and_create_nothing(user, body, needle):
    text = json.dumps(body).replace("UID", user.user_id)
    r = user.post("/api/tokens", data=text)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
    assert user.get("/api/tokens").json() == []


@pytest.mark.parametrize("path", ["/api/login", "/api/tokens", "/admin/users"])
@pytest.mark.parametrize("body", [b"not json", b"[]", b'"a string"', b"{\"username\": ", b"\xff"])
def test_non_json_bodies_are_400(admin, path, body):
    r = admin.post(path, data=body)
    assert r.status_code == 400 and "error" in r.json()


def test_login_missing_and_mistyped_fields(appliance):
    r = requests.post(appliance.url + "/api/login", json={"username": "a"})
    assert r.status_code == 400 and "password" in r.json()["error"]
    r = requests.post(appliance.url + "/api/login", json={"username": ["a"], "password": "x"})
    assert r.status_code == 400 and "username" in r.json()["error"]


def test_check_unknown_token_is_404(appliance):
    assert requests.get(appliance.url + "/api/tokens/nope/check").status_code == 404


def _forge(claims, key, alg="HS256"):
    return jwt.encode(claims, key, algorithm=alg)


def _unsigned(claims):
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims)}."


# the forgeries below are signed with short keys on purpose (PyJWT warns about them)
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_forged_and_expired_jwts_are_401(appliance, user):
    secret = (appliance.data_dir / "jwt_secret").read_text().strip()
    now = int(time.time())
    base = {"username": user.info["username"], "display_name": "x", "user_id": user.user_id,
            "sub": user.user_id, "iat": now, "exp": now + 3600, "jti": "f" * 32}
    assert requests.get(appliance.url + "/api/session",
                        headers={"Authorization": "Bearer " + _forge(base, secret)}).status_code == 200
    forged = [
        _unsigned(base),
        _forge(base, secret, "HS512"),
        _forge(base, "not-the-secret"),
        _forge({**base, "iat": now - 7200, "exp": now - 3600}, secret),
        _forge({**base, "user_id": "nobody"}, secret),
        "ecloud_" + _forge({"user_id": user.user_id, "token_id": "x", "type": "api_token",
                            "scopes": {}, "iat": now}, secret),
        "garbage",
    ]
    for token in forged:
        r = requests.get(appliance.url + "/api/session", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token
        assert "error" in r.json()


def test_admin_user_management(admin, make_user, appliance):
    r = admin.post("/admin/users", json={"username": "carol.x@example", "password": "pw-abcdef",
                                         "display_name": "Carol"})
    assert r.status_code == 200
    carol = r.json()
    assert carol["display_name"] == "Carol" and carol["is_admin"] is False
    assert carol in admin.get("/admin/users").json()
    dup = admin.post("/admin/users", json={"username": "carol.x@example", "password": "x"})
    assert dup.status_code == 409
    for bad in ({"username": "has space", "password": "x"}, {"username": "x" * 65, "password": "x"},
                {"username": "ok", "password": ""}, {"username": "ok"}, {"password": "x"}):
        assert admin.post("/admin/users", json=bad).status_code == 400, bad
    carol_client = appliance.login("carol.x@example", "pw-abcdef")
    assert carol_client.get("/admin/users").status_code == 403
    # The original's ?id= form.
    assert admin.delete(f"/admin/users?id={carol['user_id']}").json() == {"status": "ok"}
    assert carol_client.get("/api/session").status_code == 401
    assert admin.delete(f"/admin/users/{carol['user_id']}").status_code == 404
    u = make_user()
    assert admin.delete(f"/admin/users/{u.user_id}").status_code == 200
    assert requests.post(appliance.url + "/api/login",
                         json={"username": u.info["username"], "password": u.password}).status_code == 401


def test_api_token_cannot_use_admin_endpoints(admin):
    tok = admin.post("/api/tokens", json={"name": "a", "scopes": {f"compute.{admin.user_id}": ["read"]}}).json()
    assert admin.with_token(tok["token"]).get("/admin/users").status_code == 403
    admin.delete(f"/api/tokens/{tok['id']}")


def test_unknown_route_and_method_are_json(appliance):
    r = requests.get(appliance.url + "/api/nothing-here")
    assert r.status_code == 404 and r.json() == {"error": "not found"}
    r = requests.put(appliance.url + "/api/login", json={})
    assert r.status_code == 405 and "error" in r.json()


def test_oversized_json_body_is_413(appliance):
    r = requests.post(appliance.url + "/api/login", data=b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert r.status_code == 413 and "error" in r.json()


def test_openapi_document_validates(appliance):
    from openapi_spec_validator import validate
    doc = requests.get(appliance.url + "/openapi.json").json()
    validate(doc)
    assert "/api/login" in doc["paths"] and "/compute/containers/{id}" in doc["paths"]


def test_tokens_in_query_strings_are_not_logged(appliance, user):
    requests.get(appliance.url + "/compute/ws?token=SECRET-IN-URL-123")
    requests.get(appliance.url + "/api/session?token=SECRET-IN-URL-123")
    time.sleep(0.2)
    assert "SECRET-IN-URL-123" not in appliance.log("http")
    assert "SECRET-IN-URL-123" not in appliance.log("core")


def test_login_throttling(tmp_path):
    app = Appliance(tmp_path / "throttle", login_max_failures=3).start()
    try:
        bad = {"username": "admin", "password": "wrong"}
        codes = [requests.post(app.url + "/api/login", json=bad).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        r = requests.post(app.url + "/api/login", json={"username": "admin", "password": app.admin_password})
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) > 0 and "error" in r.json()
        # Another client address (127.0.0.2) is not slowed by these failures.
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.2",
             "-H", "Content-Type: application/json", "-d",
             json.dumps({"username": "admin", "password": app.admin_password}), app.url + "/api/login"],
            capture_output=True, text=True, timeout=30)
        assert out.stdout == "200"
    finally:
        app.close()


def test_state_survives_restart(tmp_path):
    app = Appliance(tmp_path / "restart").start()
    try:
        admin = app.admin()
        tok = admin.post("/api/tokens", json={"name": "keep", "scopes": {f"storage.{admin.user_id}": ["read"]}}).json()
        app.stop("core")
        app.stop("http")
        app.start()
        assert app.admin().get("/api/tokens").json()[0]["id"] == tok["id"]
        assert admin.get("/api/session").status_code == 200  # same secret, session still valid
    finally:
        app.close()


def test_core_down_is_503(tmp_path):
    app = Appliance(tmp_path / "down").start()
    try:
        app.stop("core")
        r = requests.post(app.url + "/api/login", json={"username": "admin", "password": "x"})
        assert r.status_code == 503 and r.json() == {"error": "backend unavailable"}
        assert requests.get(app.url + "/healthz").status_code == 503
    finally:
        app.close()
