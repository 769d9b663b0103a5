"""The gateway's connection defences (appliance/http/connections.py): a
per-address cap, a short wait for the first request, and an accept loop that
backs off instead of spinning (and logging) when descriptors run out."""
from __future__ import annotations

import resource
import socket
import time
from pathlib import Path

import pytest
import requests
from harness import Appliance

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh(tmp_path):
    apps = []

    def start(**settings):
        app = Appliance(tmp_path / f"app{len(apps)}", **settings)
        apps.append(app)
        return app.start()
    yield start
    for app in apps:
        app.close()


def _port(app) -> int:
    return int(app.url.rsplit(":", 1)[1])


def _closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_installed_units_raise_the_descriptor_limit():
    for unit in (ROOT / "playbooks/roles/appliance_services/templates").glob("*.service.j2"):
        assert "\nLimitNOFILE=65536\n" in unit.read_text(), unit.name


def test_one_address_holds_at_most_the_cap_other_addresses_still_connect(fresh):
    app = fresh(http_workers=1, http_max_connections_per_address=5)
    held = []
    try:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", _port(app)), source_address=("127.0.0.3", 0))
            held.append(s)
        time.sleep(0.3)
        for s in held:
            assert not _closed_by_server(s, 0.05)
        extra = socket.create_connection(("127.0.0.1", _port(app)), source_address=("127.0.0.3", 0))
        assert _closed_by_server(extra, 3), "the sixth connection of one address was kept"
        extra.close()
        assert requests.get(app.url + "/healthz", timeout=5).text == "ok"  # from 127.0.0.1
        held.pop().close()
        time.sleep(0.3)
        again = socket.create_connection(("127.0.0.1", _port(app)), source_address=("127.0.0.3", 0))
        again.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        again.settimeout(5)
        assert again.recv(100).startswith(b"HTTP/1.1 200"), "a freed slot was not given back"
        again.close()
    finally:
        for s in held:
            s.close()
    assert "per-address limit" in app.log("http")


def test_a_silent_connection_is_closed_after_the_idle_timeout(fresh):
    app = fresh(http_workers=1, http_idle_timeout=1)
    s = socket.create_connection(("127.0.0.1", _port(app)))
    started = time.monotonic()
    assert _closed_by_server(s, 10)
    took = time.monotonic() - started
    s.close()
    assert took < 5, took


def test_out_of_descriptors_the_gateway_backs_off_quietly_and_recovers(fresh):
    """No per-address cap, 256 descriptors: 600 connections exhaust them. The
    accept loop must not spin logging a traceback per failed accept() (the old
    loop wrote megabytes a second), and serve again once they are gone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        app = fresh(http_workers=1, http_max_connections_per_address=0)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    held = []
    before = len(app.log("http"))
    try:
        for _ in range(600):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", _port(app)))
            except OSError:
                s.close()
                break
            held.append(s)
        time.sleep(3)
        grown = len(app.log("http")) - before
    finally:
        for s in held:
            s.close()
    print(f"held {len(held)}; http.log +{grown}")
    assert len(held) > 256
    assert grown < 16 * 1024, f"http.log +{grown} characters in 3 s out of descriptors"
    assert "out of file descriptors" in app.log("http")
    deadline = time.monotonic() + 15
    while True:
        try:
            if requests.get(app.url + "/healthz", timeout=2).text == "ok":
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "gateway did not recover"
        time.sleep(0.3)
