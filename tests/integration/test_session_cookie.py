"""The session cookie (POST /api/login sets it, /api/logout clears it) is
honoured only on GET event streams and GET/HEAD downloads; WebSockets check
Origin. Real HTTP and WebSocket clients against real daemons on the fake
driver (docs/observability-logs.md, "The session cookie")."""
from __future__ import annotations

import re
import uuid

import pytest
import requests
import websocket
from compute_support import add_key, running
from harness import Appliance
from test_storage_helpers import upload

from appliance.http.cookie import SECURE_SESSION_COOKIE, SESSION_COOKIE
from appliance.http.routes import build_routes
from appliance.v1 import options_pb2 as opt

ADMIN_PASSWORD = "admin-pass-1"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("cookie"), guest_driver="fake", admin_password=ADMIN_PASSWORD)
    a.start()
    yield a
    a.close()


def login(app) -> tuple[str, requests.Response]:
    """(cookie value, login response) of a fresh admin session."""
    r = requests.post(app.url + "/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    return r.cookies[SESSION_COOKIE], r


@pytest.fixture(scope="module")
def world(app):
    """One of everything the admin owns, to aim the forged requests at."""
    admin = app.admin()
    kid, _ = add_key(admin)
    container = running(app, admin, kid)
    ns = f"private-{uuid.uuid4().hex[:8]}"
    assert admin.post("/storage/namespaces", json={"name": ns}).status_code == 200
    assert upload(admin, ns, "secret.txt", b"cookie-download-bytes").status_code == 200
    assert admin.post("/storage/namespaces", json={"name": ns + "-pub", "visibility": 1}).status_code == 200
    assert upload(admin, ns + "-pub", "open.txt", b"public-bytes").status_code == 200
    assert admin.post(f"/compute/containers/{container['id']}/ingress",
                      json={"port": 8080, "hostname": "cookie"}).status_code in (200, 400, 409)
    token = admin.post("/api/tokens", json={"name": "t", "scopes": {f"compute.{admin.user_id}": ["read"]}}).json()
    return {"admin": admin, "container": container["id"], "key": kid, "ns": ns, "token": token["id"]}


def snapshot(admin, world) -> dict:
    """Everything a forged request could have created, changed or deleted."""
    cid, ns = world["container"], world["ns"]
    get = lambda path, **params: admin.get(path, params=params).json()  # noqa: E731
    return {
        "containers": get("/compute/containers"),
        "ssh": get(f"/compute/containers/{cid}/ssh"), "ingress": get(f"/compute/containers/{cid}/ingress"),
        "mounts": get(f"/compute/containers/{cid}/mounts"), "keys": get("/compute/ssh-keys"),
        "namespaces": get("/storage/namespaces"), "files": get("/storage/files", namespace=ns),
        "users": get("/admin/users"), "tokens": get("/api/tokens"),
        "session": admin.get("/api/session").status_code,
    }


def test_login_sets_a_strict_httponly_cookie_and_logout_clears_it(app):
    value, r = login(app)
    header = r.headers["Set-Cookie"]
    assert value == r.json()["token"]
    flags = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "path", "max-age"} <= flags and "samesite=strict" in header.lower()
    assert "secure" not in flags  # plain HTTP here; test_gateway_tls.py checks Secure under HTTPS
    assert re.search(r"Max-Age=86400", header)
    jar = requests.Session()
    jar.post(app.url + "/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert SESSION_COOKIE in jar.cookies
    with jar.get(app.url + "/sse/logs", stream=True, timeout=10) as sse:
        assert sse.status_code == 200 and sse.headers["Content-Type"] == "text/event-stream"
    out = jar.post(app.url + "/api/logout", headers={"Authorization": f"Bearer {jar.cookies[SESSION_COOKIE]}"})
    assert out.status_code == 200 and SESSION_COOKIE + '=""' in out.headers["Set-Cookie"].replace("=;", '=""')
    assert SESSION_COOKIE not in jar.cookies
    assert jar.get(app.url + "/sse/logs", stream=True, timeout=10).status_code == 401


def test_cookie_alone_opens_sse_logs_and_downloads_a_private_file(app, world):
    cookie, _ = login(app)
    jar = {SESSION_COOKIE: cookie}
    with requests.get(app.url + "/sse/logs?level=INFO", cookies=jar, stream=True, timeout=10) as sse:
        assert sse.status_code == 200
        assert any(line.startswith(b"data: {") for line in sse.iter_lines() if line)
    ns = world["ns"]
    for url in (f"/storage/download/{ns}/secret.txt", f"/storage/{ns}/secret.txt",
                f"/storage/download?namespace={ns}&name=secret.txt"):
        assert requests.get(app.url + url).status_code in (401, 403, 404), url  # without the cookie
        r = requests.get(app.url + url, cookies=jar)
        assert r.status_code == 200 and r.content == b"cookie-download-bytes", (url, r.status_code)
        head = requests.head(app.url + url, cookies=jar)
        assert head.status_code == 200 and head.headers["Content-Length"] == "21"


def test_another_origins_page_loading_a_private_file_gets_nothing_from_the_cookie(app, world):
    """A guest's page (same site, so sent the cookie) loading a user's private file as a
    script or image would run or measure it in its own origin: the cookie is no credential
    for another origin's resource load, only for a navigation (a link followed)."""
    cookie, _ = login(app)
    jar = {SESSION_COOKIE: cookie}
    ns = world["ns"]
    for url in (f"/storage/{ns}/secret.txt", f"/storage/download/{ns}/secret.txt"):
        for site in ("same-site", "cross-site"):
            for mode, dest in (("no-cors", "script"), ("no-cors", "image"), ("no-cors", "style"), ("cors", "empty")):
                r = requests.get(app.url + url, cookies=jar, headers={
                    "Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest})
                assert r.status_code == 401 and b"cookie-download" not in r.content, (url, site, mode, dest)
            for dest in ("iframe", "frame", "object", "embed", "fencedframe"):   # shown inside its page
                r = requests.get(app.url + url, cookies=jar, headers={
                    "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": dest})
                assert r.status_code == 401, (url, site, dest)
            r = requests.get(app.url + url, cookies=jar, headers={"Sec-Fetch-Site": site})   # no mode: refused
            assert r.status_code == 401, (url, site)
            r = requests.get(app.url + url, cookies=jar, headers={
                "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
            assert r.status_code == 200 and r.content == b"cookie-download-bytes", (url, site)
        for site, mode, dest in (("same-origin", "no-cors", "image"), ("same-origin", "cors", "empty"),
                                 ("none", "navigate", "document")):
            r = requests.get(app.url + url, cookies=jar, headers={
                "Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest})
            assert r.status_code == 200 and r.content == b"cookie-download-bytes", (url, site, mode)
            assert r.headers["Vary"] == "Sec-Fetch-Dest, Sec-Fetch-Site, Sec-Fetch-Mode"
    with requests.get(app.url + "/sse/logs", cookies=jar, stream=True, timeout=10,
                      headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}) as sse:
        assert sse.status_code == 401
    # without Fetch Metadata (plain HTTP to a name, or an old browser) the gateway cannot tell
    # who loads it: the answer a cookie got tells browsers that only this origin may use or frame it
    inline, attachment = f"/storage/{ns}/secret.txt", f"/storage/download/{ns}/secret.txt"
    r = requests.get(app.url + inline, cookies=jar)
    assert r.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert r.headers["Content-Security-Policy"] == "sandbox; frame-ancestors 'self'"
    assert requests.get(app.url + attachment, cookies=jar).headers["Cross-Origin-Resource-Policy"] == "same-origin"
    by_token = requests.get(app.url + inline, headers={"Authorization": f"Bearer {cookie}"})
    assert "Cross-Origin-Resource-Policy" not in by_token.headers
    assert by_token.headers["Content-Security-Policy"] == "sandbox"
    public = requests.get(app.url + f"/storage/{ns}-pub/open.txt", cookies=jar)   # anyone's to embed
    assert public.status_code == 200 and "Cross-Origin-Resource-Policy" not in public.headers


def test_bad_cookie_on_a_public_download_is_anonymous_not_401(app, world):
    ns = world["ns"] + "-pub"
    stale, _ = login(app)
    assert requests.post(app.url + "/api/logout", headers={"Authorization": f"Bearer {stale}"}).status_code == 200
    valid, _ = login(app)
    for url in (f"/storage/download/{ns}/open.txt", f"/storage/{ns}/open.txt"):
        for cookie in (stale, "garbage", "x" * 300, "eyJhbGciOiJIUzI1NiJ9.e30.abc", valid):
            r = requests.get(app.url + url, cookies={SESSION_COOKIE: cookie})
            assert r.status_code == 200 and r.content == b"public-bytes", (url, cookie[:20], r.status_code)
            head = requests.head(app.url + url, cookies={SESSION_COOKIE: cookie})
            assert head.status_code == 200 and head.headers["Content-Length"] == "12", (url, head.status_code)
        # non-ASCII cookie bytes too (gRPC metadata cannot carry them)
        r = requests.get(app.url + url, headers={"Cookie": f"{SESSION_COOKIE}=\u00e9t\u00e9"})
        assert r.status_code == 200, r.status_code
    # a bad cookie on a private download is still no credential
    private = f"/storage/download/{world['ns']}/secret.txt"
    assert requests.get(app.url + private, cookies={SESSION_COOKIE: stale}).status_code == 401
    assert requests.get(app.url + private, cookies={SESSION_COOKIE: valid}).status_code == 200


def test_duplicate_cookies_are_ambiguous_and_ignored(app, world):
    valid, _ = login(app)
    private = app.url + f"/storage/download/{world['ns']}/secret.txt"
    public = app.url + f"/storage/download/{world['ns']}-pub/open.txt"
    for order in ((valid, "planted"), ("planted", valid)):
        header = {"Cookie": "; ".join(f"{SESSION_COOKIE}={v}" for v in order)}
        assert requests.get(private, headers=header).status_code == 401, order
        assert requests.get(public, headers=header).status_code == 200, order
    same = {"Cookie": f"{SESSION_COOKIE}={valid}; other=1; {SESSION_COOKIE}={valid}"}
    assert requests.get(private, headers=same).status_code == 200
    # plain HTTP: the __Host- name is not read (only one name is, per scheme)
    assert requests.get(private, cookies={SECURE_SESSION_COOKIE: valid}).status_code == 401


def test_logout_with_only_the_cookie_revokes_its_session(app):
    cookie, _ = login(app)
    out = requests.post(app.url + "/api/logout", cookies={SESSION_COOKIE: cookie})
    assert out.status_code == 200 and out.headers["Set-Cookie"].startswith(SESSION_COOKIE + '=""; expires=')
    assert requests.get(app.url + "/api/session", headers={"Authorization": f"Bearer {cookie}"}).status_code == 401
    assert requests.get(app.url + "/sse/logs", cookies={SESSION_COOKIE: cookie}, timeout=10).status_code == 401


def test_another_origin_of_the_same_site_neither_spends_nor_sets_the_cookie(app):
    """A guest's page (<id>.<compute_domain>, same site) is sent the SameSite=Strict cookie
    too: with its Origin, logout does not revoke or clear it and login sets none. The
    dashboard's own origin still does both (tests/browser/test_dashboard_hostile.py)."""
    cookie, _ = login(app)
    guest = {"Origin": "http://box1.compute.127.0.0.1:8080"}
    out = requests.post(app.url + "/api/logout", cookies={SESSION_COOKIE: cookie}, headers=guest)
    assert out.status_code == 200 and "Set-Cookie" not in out.headers
    assert requests.get(app.url + "/api/session", headers={"Authorization": f"Bearer {cookie}"}).status_code == 200
    planted = requests.post(app.url + "/api/login", headers=guest,
                            json={"username": "admin", "password": ADMIN_PASSWORD})
    assert planted.status_code == 200 and "Set-Cookie" not in planted.headers
    own = {"Origin": app.url}
    out = requests.post(app.url + "/api/logout", cookies={SESSION_COOKIE: cookie}, headers=own)
    assert out.status_code == 200 and out.headers["Set-Cookie"].startswith(SESSION_COOKIE + '=""; expires=')
    assert requests.get(app.url + "/api/session", headers={"Authorization": f"Bearer {cookie}"}).status_code == 401


def _forged_url(route, world) -> str:
    values = {"id": world["container"], "user_id": world["admin"].user_id, "name": world["ns"],
              "namespace": world["ns"], "port": "8080"}
    if route.template.startswith("/api/tokens/"):
        values["id"] = world["token"]
    elif route.template.startswith("/compute/ssh-keys/"):
        values["id"] = world["key"]
    elif route.template == "/storage/{namespace}/{name}":
        values["name"] = "secret.txt"
    path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], route.template)
    # query forms (DELETE /admin/users?id=, DELETE /storage/delete?namespace=&name=)
    return f"{path}?id={world['admin'].user_id}&namespace={world['ns']}&name=secret.txt"


def test_cookie_alone_cannot_create_change_or_delete_anything(app, world):
    admin = world["admin"]
    cookie, _ = login(app)
    logout_cookie, _ = login(app)
    before = snapshot(admin, world)
    body = {"name": "evil", "username": "evil", "password": "evil-pass-123", "public_key": "x",
            "scopes": {}, "ssh_key_ids": [world["key"]], "port": 8081, "enabled": False, "mounts": []}
    tried = []
    for route in build_routes():
        if route.verb == "GET":
            continue
        url = app.url + _forged_url(route, world)
        transport = route.method.transport
        if route.method.session_cookie == opt.SESSION_COOKIE_CLEAR:
            r = requests.request(route.verb, url, cookies={SESSION_COOKIE: logout_cookie}, json=body)
        elif transport == opt.TRANSPORT_UPLOAD_MULTIPART:
            r = requests.request(route.verb, url, cookies={SESSION_COOKIE: cookie},
                                 files={"file": ("evil.txt", b"evil")})
        elif transport == opt.TRANSPORT_UPLOAD_RAW:
            r = requests.request(route.verb, url, cookies={SESSION_COOKIE: cookie}, data=b"evil")
        else:
            r = requests.request(route.verb, url, cookies={SESSION_COOKIE: cookie}, json=body)
        tried.append(f"{route.verb} {route.template}")
        if route.method.session_cookie == opt.SESSION_COOKIE_CLEAR:
            assert r.status_code == 200  # revokes the cookie's own session (harmless), nothing else
        elif route.method.access == opt.ACCESS_PUBLIC:
            # login as "evil": no such user; the login's second step: no challenge token
            # or state in the body (400), no challenge token in the header (401)
            expected = 400 if route.template in ("/api/login/totp", "/api/webauthn/login/finish") else 401
            assert r.status_code == expected, (route.template, r.status_code)
        elif route.method.access == opt.ACCESS_OPTIONAL:
            raise AssertionError(f"an optional-access write route: {route.template}")
        else:
            assert r.status_code == 401, (route.verb, route.template, r.status_code, r.text)
    assert len(tried) >= 20
    # JSON reads do not take it either, nor WebSocket upgrades
    for path in ("/api/session", "/api/tokens", "/admin/users", "/compute/containers"):
        assert requests.get(app.url + path, cookies={SESSION_COOKIE: cookie}).status_code == 401, path
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": app.url}
    for path in ("/compute/ws", f"/compute/containers/{world['container']}/terminal"):
        r = requests.get(app.url + path, headers=upgrade, cookies={SESSION_COOKIE: cookie})
        assert r.status_code == 401, (path, r.status_code)
    # nothing changed, and the other cookie's session still works
    assert snapshot(admin, world) == before
    with requests.get(app.url + "/sse/logs", cookies={SESSION_COOKIE: cookie}, stream=True, timeout=10) as sse:
        assert sse.status_code == 200


def test_websocket_origin_is_checked(app, world):
    token = world["admin"].token
    ws_url = app.url.replace("http://", "ws://") + f"/compute/ws?token={token}"
    for origin in ("http://evil.example", "https://127.0.0.1:1", "null"):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(ws_url, origin=origin, timeout=10)
        assert refused.value.status_code == 403
    for options in ({"origin": app.url}, {"origin": app.url.replace("127.0.0.1", "localhost")},
                    {"origin": "https://127.0.0.1"}, {"suppress_origin": True}):  # https: behind a TLS proxy
        ws = websocket.create_connection(ws_url, timeout=10, **options)
        try:
            assert ws.recv().startswith('{"type": "containers"')
        finally:
            ws.close()


def test_configured_public_origins_replace_the_default(tmp_path):
    """Behind a TLS proxy: configured origins are normalised like a browser's
    (case, default port, trailing slash), and https-only origins make the
    cookie Secure and __Host- named although the gateway itself speaks http."""
    app = Appliance(tmp_path / "origins", guest_driver="fake",
                    public_origins=" HTTPS://Dash.Example.org:443/ ,https://other.example.org:8443").start()
    try:
        ws_url = app.url.replace("http://", "ws://") + f"/compute/ws?token={app.admin().token}"
        for origin in ("https://dash.example.org", "https://other.example.org:8443"):
            websocket.create_connection(ws_url, origin=origin, timeout=10).close()
        r = requests.post(app.url + "/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        header = r.headers["Set-Cookie"]
        assert header.startswith(SECURE_SESSION_COOKIE + "=") and "Secure" in header and "Path=/" in header
        assert "domain" not in header.lower()
        r = requests.post(app.url + "/api/logout", headers={"Cookie": f"{SECURE_SESSION_COOKIE}={r.json()['token']}"})
        assert r.headers["Set-Cookie"].startswith(SECURE_SESSION_COOKIE + '=""') and "Secure" in r.headers["Set-Cookie"]
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(ws_url, origin=app.url, timeout=10)
        assert refused.value.status_code == 403
    finally:
        app.close()
