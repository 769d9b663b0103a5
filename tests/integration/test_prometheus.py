"""GET /metrics on a real appliance (core, two gateway workers, SSH gateway;
fake guests): the exposition parses, it is admins' only through the gateway
and open on metrics_listen, counts move with what clients do, labels stay
bounded, and the gateway workers' counters add up across processes.
A real Prometheus server scraping it: test_prometheus_server.py."""
from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from compute_support import new_user, running
from harness import Appliance, free_port
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("prometheus"), guest_driver="fake", http_workers=2,
                  ssh_port=free_port(), metrics_listen=f"127.0.0.1:{free_port()}", login_max_failures=3,
                  metrics_cache_seconds=0)   # counts compared before/after an action
    a.start("core", "http", "ssh")
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


@pytest.fixture(scope="module")
def listener(app):
    return f"http://{app.env['APPLIANCE_METRICS_LISTEN']}/metrics"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition: (name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def scrape(admin) -> dict:
    r = admin.get("/metrics")
    assert r.status_code == 200, r.text
    return samples(r.text)


def test_the_exposition_parses_and_names_every_instrument(app, admin):
    r = admin.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == CONTENT_TYPE
    assert r.headers["Cache-Control"] == "no-store"
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert all(name.startswith("appliance_") for name in families)
    expected = {
        "appliance_http_requests": "counter", "appliance_http_request_duration_seconds": "histogram",
        "appliance_grpc_server_handled": "counter", "appliance_grpc_server_handling_seconds": "histogram",
        "appliance_login_attempts": "counter", "appliance_guests": "gauge",
        "appliance_storage_stored_bytes": "gauge", "appliance_storage_files": "gauge",
        "appliance_ssh_connections": "gauge", "appliance_ssh_sessions": "gauge",
        "appliance_http_upload_bytes": "counter", "appliance_http_download_bytes": "counter",
    }
    assert {name: families[name].type for name in expected if name in families} == expected
    # every status appears, at 0 when no container has it
    guests = {s.labels["state"]: s.value for s in families["appliance_guests"].samples}
    assert set(guests) >= {"pending", "initializing", "running", "stopped", "error"}


def test_only_admins_through_the_gateway(app, admin):
    assert requests.get(app.url + "/metrics").status_code == 401
    user = new_user(app, admin)
    r = user.get("/metrics")
    assert r.status_code == 403 and r.json() == {"error": "admin only"}
    # an admin's API token is not a session
    token = admin.post("/api/tokens", json={"name": "scrape", "scopes": {f"compute.{admin.user_id}": ["read"]}})
    assert token.status_code == 200, token.text
    assert admin.with_token(token.json()["token"]).get("/metrics").status_code == 403
    assert requests.get(app.url + "/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_the_listener_serves_the_same_registry_without_a_token(admin, listener):
    admin.get("/api/session")
    r = requests.get(listener)
    assert r.status_code == 200 and r.headers["Content-Type"] == CONTENT_TYPE
    found = samples(r.text)
    assert value(found, "appliance_http_requests_total", route="/api/session", method="GET", status="200") >= 1
    assert {name for name, _ in found} == {name for name, _ in scrape(admin)}
    assert requests.get(listener.replace("/metrics", "/other")).status_code == 404
    assert requests.post(listener, data=b"x").status_code == 405


def test_request_counts_and_latency_move_and_add_up_across_workers(app, admin):
    route = dict(route="/api/session", method="GET", status="200")
    before = scrape(admin)
    with ThreadPoolExecutor(8) as pool:  # new connections, spread over both workers
        statuses = list(pool.map(lambda _: requests.get(app.url + "/api/session",
                                                        headers={"Authorization": f"Bearer {admin.token}"}
                                                        ).status_code, range(200)))
    assert statuses == [200] * 200
    after = scrape(admin)
    assert value(after, "appliance_http_requests_total", **route) - value(
        before, "appliance_http_requests_total", **route) == 200
    assert value(after, "appliance_http_request_duration_seconds_count", **route) - value(
        before, "appliance_http_request_duration_seconds_count", **route) == 200
    assert value(after, "appliance_http_request_duration_seconds_sum", **route) > value(
        before, "appliance_http_request_duration_seconds_sum", **route)
    # the core saw each as a gRPC call
    grpc = dict(grpc_service="appliance.v1.AuthService", grpc_method="GetSession", grpc_type="unary")
    assert value(after, "appliance_grpc_server_handled_total", **grpc, grpc_code="OK") - value(
        before, "appliance_grpc_server_handled_total", **grpc, grpc_code="OK") == 200
    # each process's own file: both workers served some, and the exposition is their sum
    per_process = {}
    for path in Path(app.data_dir, "metrics").glob("counter_*.db"):
        merged = samples_of(MultiProcessCollector.merge([str(path)]))
        per_process[path.name] = value(merged, "appliance_http_requests_total", **route)
    serving = [n for n in per_process.values() if n > 0]
    assert len(serving) >= 2, per_process
    assert sum(serving) == value(after, "appliance_http_requests_total", **route)


def samples_of(families) -> dict:
    return {(s.name, frozenset(s.labels.items())): s.value for family in families for s in family.samples}


def test_route_labels_are_templates_never_paths(app, admin):
    random = uuid.uuid4().hex
    before = scrape(admin)
    assert requests.get(f"{app.url}/no-such-{random}").status_code == 404
    assert admin.get(f"/compute/containers/x{random[:7]}").status_code == 404
    assert requests.request("BREW", f"{app.url}/api/session").status_code == 405
    r = admin.get("/metrics")
    assert random not in r.text and random[:7] not in r.text
    after = samples(r.text)
    for labels, method in ((dict(route="unmatched", status="404"), "GET"),
                           (dict(route="/compute/containers/{id}", status="404"), "GET")):
        assert value(after, "appliance_http_requests_total", method=method, **labels) - value(
            before, "appliance_http_requests_total", method=method, **labels) == 1
    assert {dict(labels)["method"] for name, labels in after if name == "appliance_http_requests_total"} <= {
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}


def test_logins_failures_and_throttles_are_counted(app, admin):
    before = scrape(admin)
    name = f"nobody{uuid.uuid4().hex[:8]}"
    codes = [requests.post(app.url + "/api/login", json={"username": name, "password": "wrong-password"}
                           ).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]  # login_max_failures = 3
    app.admin()
    after = scrape(admin)
    for result, moved in (("failed", 3), ("throttled", 1), ("ok", 1)):
        assert value(after, "appliance_login_attempts_total", result=result) - value(
            before, "appliance_login_attempts_total", result=result) == moved, result


def test_uploads_downloads_and_storage(app, admin):
    body = b"m" * 300_000
    name = f"f{uuid.uuid4().hex[:8]}"
    before = scrape(admin)
    assert admin.put(f"/storage/default/{name}", data=body).status_code == 200
    assert admin.get(f"/storage/download/default/{name}").content == body
    assert admin.get(f"/storage/default/{name}", headers={"Range": "bytes=0-99"}).status_code == 206
    after = scrape(admin)

    def moved(metric, **labels):
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert moved("appliance_http_upload_bytes_total") == len(body)
    assert moved("appliance_http_download_bytes_total") == len(body) + 100
    assert moved("appliance_storage_operations_total", operation="upload") == 1
    assert moved("appliance_storage_operations_total", operation="download") == 2
    assert moved("appliance_storage_stored_bytes") == len(body)
    assert moved("appliance_storage_files") == 1
    assert value(after, "appliance_storage_capacity_bytes") > value(after, "appliance_storage_free_bytes") > 0
    assert admin.delete("/storage/delete", params={"namespace": "default", "name": name}).status_code == 200
    assert value(scrape(admin), "appliance_storage_operations_total", operation="delete_file") >= 1


def test_guests_by_state_and_the_create_histogram(app, admin):
    user = new_user(app, admin)
    before = scrape(admin)
    container = running(app, user)
    after = scrape(admin)
    assert value(after, "appliance_guests", state="running") - value(before, "appliance_guests", state="running") == 1
    assert value(after, "appliance_container_create_duration_seconds_count") - value(
        before, "appliance_container_create_duration_seconds_count") == 1
    assert user.post(f"/compute/containers/{container['id']}/stop").status_code == 200
    assert value(scrape(admin), "appliance_guests", state="stopped") >= 1


def test_ssh_gateway_connections_are_a_gauge_across_daemons(app, admin):
    port = int(app.env["APPLIANCE_SSH_PORT"])
    assert value(scrape(admin), "appliance_ssh_connections") == 0
    with socket.create_connection(("127.0.0.1", port)) as s:
        assert s.recv(64).startswith(b"SSH-2.0-appliance")
        deadline = time.monotonic() + 10
        while value(scrape(admin), "appliance_ssh_connections") != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert value(scrape(admin), "appliance_ssh_connections") == 1
    deadline = time.monotonic() + 10
    while value(scrape(admin), "appliance_ssh_connections") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert value(scrape(admin), "appliance_ssh_connections") == 0


def children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_a_dead_workers_requests_still_count(app, admin):
    route = dict(route="/api/session", method="GET", status="200")
    for _ in range(20):
        assert admin.get("/api/session").status_code == 200
    counted = value(scrape(admin), "appliance_http_requests_total", **route)
    parent = app.procs["http"].pid
    workers = children(parent)
    assert len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while (len(children(parent)) < 2 or victim in children(parent)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert victim not in children(parent) and len(children(parent)) == 2  # replaced
    assert value(scrape(admin), "appliance_http_requests_total", **route) == counted
    assert not list(Path(app.data_dir, "metrics").glob(f"gauge_live*_{victim}.db"))
