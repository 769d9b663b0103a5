"""Files in the lab live on its SeaweedFS (appliance/lab/weed.py, docs/seaweedfs-ansible.md
"make lab"): a master, a volume server (rack = host) and a filer in every host, each bound to
its host's LAN address; a file uploaded through one host downloads through another."""
from __future__ import annotations

import os
import time

from appliance.lab import topology, weed

HOSTS = ["lab-a", "lab-b", "lab-c"]


def test_every_host_runs_its_seaweedfs_bound_to_its_lan_address(lab):
    for name in HOSTS:
        h = topology.host(name)
        out = lab.in_host(name, ["ss", "-Hltnp"]).stdout
        listening = {line.split()[3] for line in out.splitlines() if '"weed"' in line}
        wanted = {f"{h.lan_ip}:{port}" for pair in weed.PORTS.values() for port in pair}
        # A server bound elsewhere opens its ports on the host's loopback too (SeaweedFS's local listeners).
        assert wanted <= listening and all(a.rsplit(":", 1)[0] in (h.lan_ip, "127.0.0.1", "[::1]")
                                           for a in listening), (name, listening)
        assert [p.running for p in weed.processes(h)] == [True] * 3, name


def test_a_file_uploaded_through_a_downloads_through_c_and_b(lab):
    a = lab.admin("lab-a")
    ns = f"labfiles{time.monotonic_ns() % 10**8}"
    assert a.post("/storage/namespaces", json={"name": ns, "visibility": 0}).status_code == 200
    data = os.urandom(3 * 1024 * 1024 + 5)
    r = a.put(f"/storage/{ns}/report.bin", data=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    for name in ("lab-c", "lab-b"):
        r = lab.admin(name).get(f"/storage/{ns}/report.bin")
        assert (r.status_code, r.content == data) == (200, True), (name, r.status_code, r.text[:300])
    # Host C's core sees the three volume servers (one per host) through the masters.
    deadline = time.monotonic() + 10
    while True:
        status = lab.admin("lab-c").get("/storage/status").json()
        if (status.get("backend"), status.get("chunkserver_count"), status.get("writable")) == ("seaweedfs", 3, True):
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
