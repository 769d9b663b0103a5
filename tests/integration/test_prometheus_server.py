"""A real Prometheus server (Debian's `prometheus` package, run by this test on
a free loopback port) scrapes a real appliance both ways: GET /metrics through
the gateway with an admin's token, and the core's metrics_listen without one.
Then a metric is read back through Prometheus's own HTTP API."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import requests
from harness import Appliance, free_port

INTERVAL = "1s"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("prometheus-app"), guest_driver="fake", http_workers=2,
                  metrics_listen=f"127.0.0.1:{free_port()}")
    a.start()
    yield a
    a.close()


def scrape_config(app: Appliance, token: str) -> str:
    gateway = app.url.removeprefix("http://")
    listener = app.env["APPLIANCE_METRICS_LISTEN"]
    return f"""
global:
  scrape_interval: {INTERVAL}
  scrape_timeout: {INTERVAL}
scrape_configs:
  - job_name: appliance-gateway
    metrics_path: /metrics
    authorization:
      credentials: "{token}"
    static_configs:
      - targets: ["{gateway}"]
  - job_name: appliance-listener
    static_configs:
      - targets: ["{listener}"]
"""


@pytest.fixture(scope="module")
def prometheus(app, tmp_path_factory):
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is missing: run scripts/install-deps.sh"
    where = tmp_path_factory.mktemp("prometheus-server")
    config = where / "prometheus.yml"
    config.write_text(scrape_config(app, app.admin().token))
    port = free_port()
    log = open(where / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={where / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (where / "prometheus.log").read_text()[-3000:]
            try:
                if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def query(prometheus: str, promql: str) -> list[dict]:
    r = requests.get(prometheus + "/api/v1/query", params={"query": promql}, timeout=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(prometheus: str, promql: str, check, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        result = query(prometheus, promql)
        if check(result):
            return result
        assert time.monotonic() < deadline, f"{promql}: {result}"
        time.sleep(0.25)


def test_prometheus_scrapes_both_ways_and_answers_a_query(app, prometheus):
    # both targets up (a 401/403 or a parse error would make one down)
    up = wait_for(prometheus, "up", lambda r: {x["metric"]["job"]: x["value"][1] for x in r} == {
        "appliance-gateway": "1", "appliance-listener": "1"})
    assert len(up) == 2
    admin = app.admin()
    for _ in range(25):
        assert admin.get("/compute/containers").status_code == 200
    promql = 'appliance_http_requests_total{route="/compute/containers",method="GET",status="200"}'
    result = wait_for(prometheus, promql, lambda r: len(r) == 2 and all(float(x["value"][1]) == 25 for x in r))
    assert {x["metric"]["job"] for x in result} == {"appliance-gateway", "appliance-listener"}
    # a histogram works as one: a latency quantile over the scraped buckets (all calls so far)
    p99 = wait_for(prometheus, 'histogram_quantile(0.99, sum by (le) (appliance_grpc_server_handling_seconds_bucket'
                   '{job="appliance-listener",grpc_method="ListContainers"}))',
                   lambda r: len(r) == 1 and r[0]["value"][1] not in ("NaN", "+Inf"))
    assert 0 < float(p99[0]["value"][1]) <= 10
    targets = requests.get(prometheus + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    assert {t["health"] for t in targets} == {"up"} and all(t["lastError"] == "" for t in targets)
