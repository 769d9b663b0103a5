"""GET /sse/health and GET /api/metrics/nodes[/{name}] on a real core and
gateway (fake guests), checked field by field against shared/spec/API.md
("Cluster health, metrics, logs and admin lists"): types included, the pods
access rule, the history's shape and its bad-input answers."""
from __future__ import annotations

import functools
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from compute_support import add_key, new_user
from harness import Appliance

HOST = "node-test"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("metrics"), guest_driver="fake", host_name=HOST,
                  metrics_sample_seconds=0.5, health_interval_seconds=0.5).start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


def container(app, client, name: str) -> dict:
    key_id, _ = add_key(client)
    r = client.post("/compute/containers", json={"name": name, "ssh_key_ids": [key_id]})
    assert r.status_code == 200, r.text
    return r.json()


class Events:
    """An open /sse/health stream: its data events, parsed."""

    def __init__(self, app: Appliance, token: str | None, *, query: bool = False):
        headers = {} if query or token is None else {"Authorization": f"Bearer {token}"}
        url = app.url + "/sse/health" + (f"?token={token}" if query else "")
        self.response = requests.get(url, headers=headers, stream=True, timeout=10)
        self.lines = self.response.iter_lines(decode_unicode=True)

    def next(self) -> dict:
        for line in self.lines:
            assert not line.startswith("event:"), line   # unnamed events only
            if line.startswith("data: "):
                return json.loads(line[len("data: "):])
        raise AssertionError("stream ended")

    def close(self) -> None:
        self.response.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def first_pods(app: Appliance, token: str) -> list[dict]:
    """The pods of a fresh stream's first pair."""
    with Events(app, token) as events:
        assert events.next()["type"] == "cluster"
        return events.next()["payload"]["pods"]


def until(check, timeout: float = 10.0):
    """check()'s first truthy result, polling until the deadline."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "not before the deadline"
        time.sleep(0.1)
    return result


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_node(node: dict) -> None:
    assert set(node) == {"name", "cpu_usage", "cpu_capacity", "memory_usage", "memory_capacity", "cpu_percent",
                         "memory_percent", "disk_percent", "disk_usage", "disk_capacity", "conditions"}
    assert node["name"] == HOST
    assert isinstance(node["cpu_usage"], str) and re.fullmatch(r"\d+(n|m)", node["cpu_usage"]), node
    assert isinstance(node["cpu_capacity"], str) and re.fullmatch(r"[1-9]\d*", node["cpu_capacity"]), node
    for field in ("memory_usage", "memory_capacity"):
        assert isinstance(node[field], str) and re.fullmatch(r"\d+Ki", node[field]), node
    assert 0 < int(node["memory_usage"][:-2]) < int(node["memory_capacity"][:-2])
    for field in ("cpu_percent", "memory_percent", "disk_percent"):
        assert is_number(node[field]) and 0 <= node[field] <= 100, node
    assert is_int(node["disk_usage"]) and is_int(node["disk_capacity"])
    assert 0 < node["disk_usage"] < node["disk_capacity"]
    assert [c["type"] for c in node["conditions"]] == ["MemoryPressure", "DiskPressure", "PIDPressure"]
    assert all(set(c) == {"type", "status"} and c["status"] in ("True", "False") for c in node["conditions"])
    assert "Ready" not in {c["type"] for c in node["conditions"]}


def check_pod(pod: dict) -> None:
    assert set(pod) == {"name", "namespace", "node", "cpu_usage", "cpu_capacity", "memory_usage", "memory_capacity",
                        "disk_usage", "disk_capacity"}
    assert isinstance(pod["name"], str) and pod["namespace"].startswith("compute-") and pod["node"] == HOST
    for field in ("cpu_usage", "cpu_capacity", "memory_usage", "memory_capacity", "disk_usage", "disk_capacity"):
        assert is_int(pod[field]) and pod[field] >= 0, (field, pod)
    assert pod["cpu_capacity"] % 1_000_000_000 == 0 and pod["cpu_capacity"] > 0   # the host's cores


def test_health_stream_sends_cluster_and_pods_at_once_then_fresh_ones(app, admin):
    user = new_user(app, admin)
    c = container(app, user, "health-box")
    until(lambda: first_pods(app, user.token))   # sampled since the create
    started = time.monotonic()
    with Events(app, user.token) as events:
        cluster, pods = events.next(), events.next()   # at once: the latest sample, no wait for the next
        assert set(cluster) == {"type", "payload"} and cluster["type"] == "cluster"
        assert set(cluster["payload"]) == {"timestamp", "nodes"} and is_int(cluster["payload"]["timestamp"])
        assert abs(cluster["payload"]["timestamp"] - time.time()) < 5
        (node,) = cluster["payload"]["nodes"]
        check_node(node)
        assert pods["type"] == "pods" and set(pods["payload"]) == {"timestamp", "pods"}
        (pod,) = pods["payload"]["pods"]
        check_pod(pod)
        assert pod["name"] == "health-box" and pod["namespace"] == f"compute-{user.user_id}"
        assert pod["memory_capacity"] == c["memory_mb"] << 20 and pod["disk_capacity"] == c["storage_gb"] << 30
        assert pod["cpu_capacity"] == int(node["cpu_capacity"]) * 1_000_000_000
        assert pod["memory_usage"] > 0   # the fake guest's 32 MiB
        types = [events.next()["type"] for _ in range(4)]   # then a fresh pair each interval
        assert types == ["cluster", "pods", "cluster", "pods"]
        assert time.monotonic() - started >= 0.9


def test_users_see_only_their_own_pods_and_admins_all(app, admin):
    alice, bob = new_user(app, admin), new_user(app, admin)
    container(app, alice, "alice-box")
    container(app, bob, "bob-box")
    pods = functools.partial(first_pods, app)
    until(lambda: pods(alice.token) and pods(bob.token))   # sampled since the creates
    assert [(p["name"], p["namespace"]) for p in pods(alice.token)] == [("alice-box", f"compute-{alice.user_id}")]
    assert [(p["name"], p["namespace"]) for p in pods(bob.token)] == [("bob-box", f"compute-{bob.user_id}")]
    everything = {(p["name"], p["namespace"]) for p in pods(admin.token)}
    assert {("alice-box", f"compute-{alice.user_id}"), ("bob-box", f"compute-{bob.user_id}")} <= everything
    # an API token of alice's without compute read: no pods, the cluster still
    r = alice.post("/api/tokens", json={"name": "t", "scopes": {f"storage.{alice.user_id}": ["read"]}})
    assert r.status_code == 200, r.text
    assert pods(r.json()["token"]) == []


def test_health_stream_needs_a_credential_and_takes_it_in_the_query(app, admin):
    assert requests.get(app.url + "/sse/health", timeout=5).status_code == 401
    assert requests.get(app.url + "/sse/health?token=nope", timeout=5).status_code == 401
    with Events(app, admin.token, query=True) as events:
        assert events.next()["type"] == "cluster"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_metrics_history_shape_and_automatic_resolution(app, admin):
    def a_few_raw_samples() -> tuple[datetime, datetime, dict] | None:
        end = datetime.now(UTC)
        start = end - timedelta(minutes=10)
        r = admin.get("/api/metrics/nodes", params={"start": iso(start), "end": iso(end)})
        assert r.status_code == 200, r.text
        return (start, end, r.json()) if len(r.json()["series"].get(HOST, [])) >= 3 else None

    start, end, body = until(a_few_raw_samples)
    assert set(body) == {"start", "end", "resolution", "series"}
    assert body["resolution"] == "raw" and body["start"] == iso(start) and body["end"] == iso(end)
    points = body["series"][HOST]
    assert isinstance(points, list) and len(points) >= 3
    for p in points:
        assert set(p) == {"t", "cpu", "mem", "disk"} and ISO_MS.match(p["t"]), p
        assert all(is_number(p[k]) and 0 <= p[k] <= 100 for k in ("cpu", "mem", "disk")), p
        assert p["mem"] > 0 and p["disk"] > 0
    times = [p["t"] for p in points]
    assert times == sorted(times) and len(set(times)) == len(times)
    for hours, resolution in ((3, "1m"), (12, "5m"), (48, "15m")):
        r = admin.get("/api/metrics/nodes", params={"start": iso(end - timedelta(hours=hours)), "end": iso(end)})
        assert r.json()["resolution"] == resolution
        assert r.json()["series"][HOST], r.json()   # the current bucket holds this run's samples
    r = admin.get("/api/metrics/nodes", params={"start": iso(start), "end": iso(end), "resolution": "1m"})
    assert r.json()["resolution"] == "1m" and all(p["t"].endswith(":00.000Z") for p in r.json()["series"][HOST])
    # one host; a user (not only admins) may read it
    user = new_user(app, admin)
    one = user.get(f"/api/metrics/nodes/{HOST}", params={"start": iso(start), "end": iso(end)})
    assert one.status_code == 200 and list(one.json()["series"]) == [HOST]
    # no data in the span: an empty series object
    old = admin.get("/api/metrics/nodes", params={"start": "2026-01-01T00:00:00.000Z",
                                                  "end": "2026-01-01T01:00:00.000Z"})
    assert old.status_code == 200 and old.json()["series"] == {}


@pytest.mark.parametrize("params", [
    {"start": "not a date", "end": "2026-01-15T11:00:00.000Z"},
    {"start": "2026-01-15T11:00:00.000Z", "end": "2026-01-15T10:00:00.000Z"},
    {"start": "2026-01-15T10:00:00.000Z", "end": "2026-01-15T11:00:00.000Z", "resolution": "1h"},
    {"start": "1970-01-01T00:00:00.000Z", "end": "2026-01-15T11:00:00.000Z"},
    {"end": "2026-01-15T11:00:00.000Z"},
    {},
    # valid ISO 8601, but outside years 1..9999 once in UTC
    {"start": "0001-01-01T00:00:00+14:00", "end": "0001-01-01T01:00:00+14:00"},
    {"start": "9999-12-31T23:00:00-14:00", "end": "9999-12-31T23:30:00-14:00"},
])
def test_metrics_bad_input_is_400_json(app, admin, params):
    r = admin.get("/api/metrics/nodes", params=params)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json")
    assert set(r.json()) == {"error"} and r.json()["error"]


def test_metrics_unknown_host_is_404_and_anonymous_is_401(app, admin):
    r = admin.get("/api/metrics/nodes/no-such-host")
    assert r.status_code == 404 and "no-such-host" in r.json()["error"]
    assert requests.get(app.url + "/api/metrics/nodes", timeout=5).status_code == 401


def test_health_streams_are_capped_per_user(app, admin):
    """event_streams_per_user (8): the 9th stream of one user is 429 JSON; other
    users are not affected; closing one frees its slot."""
    user = new_user(app, admin)
    streams = [Events(app, user.token) for _ in range(8)]
    try:
        for events in streams:
            assert events.response.status_code == 200 and events.next()["type"] == "cluster"
        r = requests.get(app.url + "/sse/health", headers={"Authorization": f"Bearer {user.token}"}, timeout=10)
        assert r.status_code == 429 and r.headers["Content-Type"].startswith("application/json")
        assert "at most 8 health streams" in r.json()["error"]
        with Events(app, admin.token) as other:   # another user's count
            assert other.response.status_code == 200 and other.next()["type"] == "cluster"
        streams.pop().close()
        deadline = time.monotonic() + 10   # the core ends the closed stream once the gateway cancels it
        while True:
            again = Events(app, user.token)
            if again.response.status_code == 200:
                break
            again.close()
            assert again.response.status_code == 429 and time.monotonic() < deadline
            time.sleep(0.05)
        streams.append(again)
        assert again.next()["type"] == "cluster"
    finally:
        for events in streams:
            events.close()
