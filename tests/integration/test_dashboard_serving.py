"""The dashboard as the gateway serves it (appliance/http/dashboard.py): page
navigations get the page on the API's own paths, API clients still get the API,
hashed assets are cached for good, index.html never, and a CSP on everything."""
from __future__ import annotations

import gzip
import json
import re

import pytest
import requests
import websocket

from appliance.http.dashboard import CSP, DIST
from appliance.http.downloads import LOADED_AS_CODE

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def page(url: str, **headers) -> requests.Response:
    return requests.get(url, headers={**HTML, **headers}, timeout=10)


def is_page(r: requests.Response) -> bool:
    return r.status_code == 200 and r.headers["Content-Type"].startswith("text/html") and \
        '<div id="app">' in r.text


def index_nonce(text: str) -> str:
    return re.search(r'<script nonce="([^"]+)"', text)[1]


@pytest.fixture(scope="module")
def index(appliance) -> str:
    assert (DIST / "index.html").is_file(), "the dashboard is not built: make venv"
    return page(appliance.url + "/").text


@pytest.mark.parametrize("path", ["/", "/login", "/compute/containers", "/compute/containers/abc123",
                                  "/compute/containers/abc123/terminal", "/compute/ssh-keys", "/storage/namespaces",
                                  "/storage/files?namespace=default", "/api/tokens", "/admin/users", "/admin/audit",
                                  "/admin/health", "/admin/logs", "/no/such/page",
                                  "/settings/profile", "/settings/sessions", "/settings/activity?event=login",
                                  "/settings/service-accounts", "/settings/service-accounts/sa_abc"])
def test_navigations_get_the_page(appliance, index, path):
    r = page(appliance.url + path)
    assert is_page(r), (r.status_code, r.text[:200])
    nonce = re.search(r'<script nonce="([A-Za-z0-9_-]{24})" type="module"', r.text)[1]
    assert r.text == index.replace(index_nonce(index), nonce)
    assert r.headers["Cache-Control"] == "no-cache"
    # scripts by this load's nonce and what they import, not any script of this origin
    assert r.headers["Content-Security-Policy"] == CSP.replace(
        "script-src 'self'", f"script-src 'nonce-{nonce}' 'strict-dynamic' 'self'")
    assert index_nonce(page(appliance.url + path).text) != nonce   # new on every load
    assert "ETag" not in r.headers and page(appliance.url + path, **{"If-None-Match": "*"}).status_code == 200
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Request-Id"]
    head = requests.head(appliance.url + path, headers=HTML, timeout=10)
    assert head.status_code == 200 and head.content == b""


def test_api_clients_still_get_the_api(appliance, user, index):
    # requests sends Accept: */*, fetch() too; an API client may name JSON
    for accept in ("*/*", "application/json"):
        r = requests.get(appliance.url + "/compute/containers", headers={"Accept": accept}, timeout=10)
        assert r.status_code == 401 and r.json() == {"error": "missing bearer token"}
        r = user.get("/compute/containers", headers={"Accept": accept})
        assert r.status_code == 200 and r.json() == {"containers": []}
    assert requests.get(appliance.url + "/no/such/page", timeout=10).json() == {"error": "not found"}
    # a POST is never a page, whatever it accepts
    r = requests.post(appliance.url + "/api/logout", headers=HTML, timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_browser_content_is_never_taken_over(appliance, user, index):
    """Direct file links, downloads, event streams, health and the OpenAPI document
    are opened by browsers for what they are."""
    assert user.put("/storage/default/hello.txt", data=b"hi there").status_code == 200
    r = page(appliance.url + "/storage/default/hello.txt")
    assert r.status_code == 200 and r.content == b"hi there"
    r = page(appliance.url + "/storage/download/default/hello.txt")
    assert r.status_code == 200 and r.content == b"hi there"
    assert page(appliance.url + "/healthz").text == "ok"
    assert "paths" in page(appliance.url + "/openapi.json").json()
    assert page(appliance.url + "/metrics").json() == {"error": "missing bearer token"}
    assert page(appliance.url + "/sse/logs").status_code == 401
    assert page(appliance.url + "/sse/health").status_code == 401
    assert not is_page(page(appliance.url + "/compute/containers/abc123/logs"))   # the container log's stream
    user.delete("/storage/delete", params={"namespace": "default", "name": "hello.txt"})


def test_this_sites_pages_cannot_load_a_stored_file_as_code(appliance, user, index):
    """The dashboard's CSP admits this origin's scripts and styles, stored files
    included: a tag injected into it loading one gets a 403 (Fetch Metadata), while
    the same file still opens, downloads, shows as an image, and other sites'
    pages may still use it as a script."""
    assert user.put("/storage/default/evil.js", data=b"window.__evil = 1").status_code == 200
    for path in ("/storage/default/evil.js", "/storage/download/default/evil.js"):
        for dest in ("script", "style", "worker", "serviceworker", "manifest"):
            r = user.get(path, headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": dest})
            assert r.status_code == 403, (path, dest, r.status_code)
            assert r.json() == {"error": LOADED_AS_CODE}
        for site, dest in (("same-origin", "document"), ("same-origin", "empty"), ("same-origin", "image"),
                           ("cross-site", "script"), ("same-site", "script"), ("none", "document")):
            r = user.get(path, headers={"Sec-Fetch-Site": site, "Sec-Fetch-Dest": dest})
            assert r.status_code == 200 and r.content == b"window.__evil = 1", (path, site, dest)
        assert user.get(path).content == b"window.__evil = 1"   # no Fetch Metadata: an API client
    user.delete("/storage/delete", params={"namespace": "default", "name": "evil.js"})


def test_websocket_handshakes_are_not_pages(appliance, user, index):
    url = appliance.url.replace("http://", "ws://") + f"/compute/ws?token={user.token}"
    ws = websocket.create_connection(url, header=["Accept: text/html"], timeout=10)
    try:
        assert json.loads(ws.recv())["type"] == "containers"
    finally:
        ws.close()


def test_assets_cached_for_good_and_compressed(appliance, index):
    names = re.findall(r'(?:src|href)="(/dashboard/assets/[^"]+)"', index)
    assert any(n.endswith(".js") for n in names) and any(n.endswith(".css") for n in names)
    first_load = len(gzip.compress(index.encode(), 9))
    for name in names:
        r = requests.get(appliance.url + name, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
        assert r.status_code == 200, name
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.headers["Content-Type"] in ("text/javascript", "application/javascript", "text/css")
        wire = r.raw.read()   # as sent, still compressed
        first_load += len(wire)
        plain = requests.get(appliance.url + name, headers={"Accept-Encoding": "identity"}, timeout=10)
        assert "Content-Encoding" not in plain.headers and gzip.decompress(wire) == plain.content
    # the budget: a first load of at most 300 KB compressed
    assert first_load <= 300 * 1024, first_load
    sizes = json.loads((DIST / "sizes.json").read_text())
    assert abs(sizes["first_load"]["gzip"] - first_load) < 1024, (sizes["first_load"], first_load)


@pytest.mark.parametrize("name", ["nope.js", "..%2Findex.html", "%2E%2E/index.html", ".hidden", "app.js.gz"])
def test_unknown_assets_are_404(appliance, index, name):
    r = requests.get(appliance.url + "/dashboard/assets/" + name, timeout=10)
    assert r.status_code == 404 and r.json() == {"error": "not found"}
