"""Structured logs, request ids and GET /sse/logs against real daemons (core,
HTTP gateway with two workers, SSH gateway) on the fake driver
(docs/observability-logs.md)."""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest
import requests
from harness import Appliance, free_port

ADMIN_PASSWORD = "admin-pass-1"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("logs"), guest_driver="fake", http_workers=2,
                  ssh_port=free_port(), ssh_listen="127.0.0.1")
    a.start("core", "http", "ssh")
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


def lines(app, daemon: str) -> list[dict]:
    """Every line the daemon wrote, each parsed as JSON (all of them must be)."""
    return [json.loads(line) for line in app.log(daemon).splitlines() if line.strip()]


def lines_of_request(app, daemon: str, request_id: str, timeout: float = 10.0) -> list[dict]:
    """The daemon's lines of one request, once there is one (lines reach the file a little later)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in lines(app, daemon) if line["attributes"].get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


class Events:
    """An /sse/logs reader on its own thread: entries as they arrive."""

    def __init__(self, url: str, headers: dict | None = None, cookies=None):
        self.response = requests.get(url, headers=headers or {}, cookies=cookies, stream=True, timeout=30)
        self.entries: list[dict] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        if self.response.status_code == 200:
            self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines():
                if line.startswith(b"data: "):
                    self.entries.append(json.loads(line[6:]))
        except (requests.RequestException, AttributeError):
            pass  # closed by the test

    def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in list(self.entries):
                if predicate(entry):
                    return entry
            time.sleep(0.05)
        raise AssertionError(f"no matching entry in {len(self.entries)}: {self.entries[-5:]}")

    def close(self) -> None:
        # Shut the socket down first: closing it alone does not wake the reader
        # thread blocked in recv(), and the connection stays up until the next keepalive.
        connection = getattr(self.response.raw, "connection", None)
        if connection is not None and connection.sock is not None:
            connection.sock.shutdown(socket.SHUT_RDWR)
        self.response.close()


def _entry_has_the_spec_types(entry: dict) -> None:
    assert set(entry) == {"timestamp", "level", "source", "message", "attributes"}, entry
    assert type(entry["timestamp"]) is int and abs(entry["timestamp"] - time.time()) < 600
    assert type(entry["level"]) is int and 0 <= entry["level"] <= 3
    assert type(entry["source"]) is str and type(entry["message"]) is str
    assert all(type(k) is str and type(v) is str for k, v in entry["attributes"].items())


# -- log lines and request ids -----------------------------------------------------------

def test_every_daemon_writes_one_json_object_a_line(app, admin):
    rid = admin.get("/api/session").headers["X-Request-Id"]
    assert lines_of_request(app, "http", rid)
    for daemon in ("core", "http", "ssh"):
        parsed = lines(app, daemon)
        assert parsed, daemon
        for line in parsed:
            assert {"timestamp", "level", "source", "message", "attributes"} <= set(line), line
            assert line["source"] == daemon and line["level"] in ("DEBUG", "INFO", "WARN", "ERROR", "CRITICAL")
            assert line["timestamp"].endswith("Z") and "logger" in line["attributes"]


def test_one_request_id_in_the_gateway_and_the_core(app, admin):
    given = f"test-{uuid.uuid4()}"
    r = admin.get("/api/session", headers={"X-Request-Id": given})
    assert r.status_code == 200 and r.headers["X-Request-Id"] == given
    generated = admin.get("/compute/containers").headers["X-Request-Id"]
    insane = admin.get("/api/session", headers={"X-Request-Id": "a b<" + "x" * 300}).headers["X-Request-Id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert len(insane) == 32 and "x" * 10 not in insane
    for rid, rpc, path in ((given, "AuthService/GetSession", "/api/session"),
                           (generated, "ComputeService/ListContainers", "/compute/containers")):
        access, core = lines_of_request(app, "http", rid), lines_of_request(app, "core", rid)
        assert [a["attributes"]["path"] for a in access] == [path], access
        assert access[0]["attributes"]["status"] == "200"
        assert len(core) == 1 and core[0]["attributes"]["method"].endswith(rpc), core
        assert core[0]["attributes"]["user"] == "admin" and core[0]["attributes"]["code"] == "OK"


def test_errors_carry_the_request_id_too(app):
    rid = f"bad-{uuid.uuid4()}"
    r = requests.get(app.url + "/api/session", headers={"Authorization": "Bearer nope", "X-Request-Id": rid})
    assert r.status_code == 401 and r.headers["X-Request-Id"] == rid
    r = requests.get(app.url + "/no/such/route", headers={"X-Request-Id": rid})
    assert r.status_code == 404 and r.headers["X-Request-Id"] == rid
    core = lines_of_request(app, "core", rid)
    assert [c["attributes"]["code"] for c in core] == ["UNAUTHENTICATED"]


# -- /sse/logs -----------------------------------------------------------------------------

def test_sse_logs_backlog_then_live_entries_of_every_daemon(app, admin):
    events = Events(app.url + "/sse/logs", {"Authorization": f"Bearer {admin.token}"})
    try:
        assert events.response.status_code == 200
        assert events.response.headers["Content-Type"] == "text/event-stream"
        # backlog: the daemons' start-up lines, including the other processes' shipped ones
        events.wait_for(lambda e: e["source"] == "core" and "core listening" in e["message"])
        events.wait_for(lambda e: e["source"] == "ssh" and "ssh gateway listening" in e["message"])
        marker = f"/storage/nope-{uuid.uuid4().hex}"
        rid = f"live-{uuid.uuid4()}"
        requests.get(app.url + marker + "?token=SECRET-IN-QUERY", headers={"X-Request-Id": rid})
        live = events.wait_for(lambda e: e["source"] == "http" and e["attributes"].get("path") == marker)
        assert live["level"] == 1 and live["attributes"]["request_id"] == rid
        assert live["attributes"]["status"] == "404" and live["message"].startswith("404 GET /storage/nope-")
        for entry in events.entries:
            _entry_has_the_spec_types(entry)
            assert "SECRET-IN-QUERY" not in json.dumps(entry) and admin.token not in json.dumps(entry)
    finally:
        events.close()


def test_access_paths_are_redacted(app, admin):
    """A token pasted into a path reaches neither the access log nor /sse/logs."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcDEF"
    marker = uuid.uuid4().hex
    events = Events(app.url + "/sse/logs", {"Authorization": f"Bearer {admin.token}"})
    try:
        for secret in (jwt, admin.token):
            assert requests.get(f"{app.url}/nope-{marker}/{secret}").status_code == 404
        wanted = f"/nope-{marker}/[redacted]"
        events.wait_for(lambda e: e["attributes"].get("path") == wanted
                        and e["message"].startswith(f"404 GET {wanted} ") and e["attributes"]["status"] == "404")
        for entry in events.entries:
            assert jwt not in json.dumps(entry) and admin.token not in json.dumps(entry)
    finally:
        events.close()
    deadline = time.monotonic() + 5
    access: list = []
    while len(access) < 2 and time.monotonic() < deadline:
        access = [line for line in lines(app, "http") if marker in line["message"]]
        time.sleep(0.05)
    assert [a["attributes"]["path"] for a in access] == [wanted, wanted]
    assert not any(jwt in json.dumps(a) or admin.token in json.dumps(a) for a in access)


def test_sse_logs_filters_by_exact_source_and_minimum_level(app, admin):
    auth = {"Authorization": f"Bearer {admin.token}"}
    only_http = Events(app.url + "/sse/logs?source=http&level=WARN", auth)
    everything = Events(app.url + "/sse/logs?level=info", auth)
    try:
        marker = f"/nothing-{uuid.uuid4().hex}"
        requests.get(app.url + marker)
        everything.wait_for(lambda e: e["attributes"].get("path") == marker)
        requests.post(app.url + "/api/login", json={"username": "admin", "password": "wrong"})
        everything.wait_for(lambda e: e["source"] == "core" and "failed" in e["message"])
        # A WARN of the gateway: an open event stream whose token is deleted ends with an error.
        created = admin.post("/api/tokens", json={"name": "w", "scopes": {f"compute.{admin.user_id}": ["read"]}}).json()
        health = requests.get(app.url + "/sse/health", headers={"Authorization": f"Bearer {created['token']}"},
                              stream=True, timeout=10)
        try:
            assert health.status_code == 200
            assert admin.delete(f"/api/tokens/{created['id']}").status_code == 200
            warned = only_http.wait_for(lambda e: "WatchHealth ended: stream closed" in e["message"])
        finally:
            health.close()
        assert warned["level"] == 2 and warned["source"] == "http"
        # the INFO lines from before it (the marker's 404, the core's failed login) did not pass the filter
        assert all(e["source"] == "http" and e["level"] >= 2 for e in only_http.entries), only_http.entries[-3:]
        assert not any(e["attributes"].get("path") == marker for e in only_http.entries)
        assert {e["source"] for e in everything.entries} >= {"core", "http"}
        assert all(e["level"] >= 1 for e in everything.entries)
    finally:
        only_http.close()
        everything.close()
    for query in ("level=LOUD", "source=" + "x" * 200):
        r = requests.get(app.url + "/sse/logs?" + query, headers=auth)
        assert r.status_code == 400 and "error" in r.json(), (query, r.text)


def test_sse_logs_is_for_admins_only(app, admin):
    r = requests.get(app.url + "/sse/logs")
    assert r.status_code == 401
    name = f"plain{uuid.uuid4().hex[:8]}"
    assert admin.post("/admin/users", json={"username": name, "password": "pw-123456"}).status_code == 200
    user = app.login(name, "pw-123456")
    r = requests.get(app.url + "/sse/logs", headers={"Authorization": f"Bearer {user.token}"})
    assert r.status_code == 403 and "error" in r.json()
    r = requests.get(app.url + f"/sse/logs?token={user.token}")
    assert r.status_code == 403
    # an admin's API token is not a session: refused as well
    scopes = {f"compute.{admin.user_id}": ["read"]}
    created = admin.post("/api/tokens", json={"name": "t", "scopes": scopes}).json()
    r = requests.get(app.url + "/sse/logs", headers={"Authorization": f"Bearer {created['token']}"})
    assert r.status_code == 403


def test_gateways_ship_again_after_the_core_restarts(app, admin):
    app.stop("core")
    time.sleep(0.5)
    app.start("core")  # the other daemons keep running
    fresh = app.admin()
    # the gateway worker that takes the stream may not have reconnected yet (a 503 "core
    # unavailable" within its reconnect backoff, 250 ms at most): open it again until it is served
    deadline = time.monotonic() + 15
    while True:
        events = Events(app.url + "/sse/logs?source=http", {"Authorization": f"Bearer {fresh.token}"})
        if events.response.status_code != 503 or time.monotonic() > deadline:
            break
        events.close()
        time.sleep(0.2)
    assert events.response.status_code == 200, events.response.text
    try:
        marker = f"/after-restart-{uuid.uuid4().hex}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # both workers reconnect; either may serve it
            requests.get(app.url + marker)
            if any(e["attributes"].get("path") == marker for e in events.entries):
                break
            time.sleep(0.5)
        events.wait_for(lambda e: e["attributes"].get("path") == marker, timeout=1)
    finally:
        events.close()


def test_sse_logs_streams_are_capped_per_user(app):
    """event_streams_per_user (8), admins included: the 9th is 429 JSON; closing one frees its slot."""
    admin = app.admin()
    url, auth = app.url + "/sse/logs?level=ERROR", {"Authorization": f"Bearer {admin.token}"}

    def open_stream() -> requests.Response:
        return requests.get(url, headers=auth, stream=True, timeout=10)

    streams = [open_stream() for _ in range(8)]
    try:
        assert [s.status_code for s in streams] == [200] * 8
        r = requests.get(url, headers=auth, timeout=10)
        assert r.status_code == 429 and "at most 8 log streams" in r.json()["error"]
        streams.pop().close()
        deadline = time.monotonic() + 10
        while (again := open_stream()).status_code != 200:
            assert again.status_code == 429 and time.monotonic() < deadline
            again.close()
            time.sleep(0.05)
        streams.append(again)
    finally:
        for stream in streams:
            stream.close()
