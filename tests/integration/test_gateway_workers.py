"""The gateway as forked workers sharing the port (appliance/http/workers.py)."""
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from harness import Appliance

from appliance.http.workers import worker_count


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_until(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def app(tmp_path):
    app = Appliance(tmp_path / "app", http_workers=2).start()
    yield app
    app.close()


def test_workers_serve_and_a_dead_worker_is_replaced(app):
    parent = app.procs["http"].pid
    workers = children(parent)
    assert len(workers) == 2
    admin = app.admin()
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: len(children(parent)) == 2 and victim not in children(parent))
    for _ in range(50):  # fresh connections, whichever worker accepts them
        r = requests.get(app.url + "/api/session", headers={"Authorization": f"Bearer {admin.token}"})
        assert r.status_code == 200 and r.json()["username"] == "admin"
    assert f"gateway worker {victim} exited" in app.log("http")


def test_sigterm_to_the_gateway_stops_every_worker(app):
    proc = app.procs["http"]
    workers = children(proc.pid)
    assert len(workers) == 2
    app.stop("http")
    assert proc.returncode == 0
    assert wait_until(lambda: not any(alive(w) for w in workers), 5)
    with pytest.raises(requests.ConnectionError):
        requests.get(app.url + "/healthz", timeout=2)


def test_workers_do_not_outlive_a_killed_gateway(app):
    workers = children(app.procs["http"].pid)
    app.kill("http")
    assert wait_until(lambda: not any(alive(w) for w in workers), 10)
    app.start("http")  # the port is free again
    assert app.admin().get("/api/session").status_code == 200


def test_worker_count():
    assert worker_count(3) == 3
    assert 1 <= worker_count(0) <= min(4, len(os.sched_getaffinity(0)))
