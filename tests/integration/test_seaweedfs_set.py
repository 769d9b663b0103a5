"""A real SeaweedFS set (appliance/host/seaweedfs.py): three volume servers in three
racks, replication 010, the filer behind its JWT, kill -9 of a volume server."""
import hashlib
import os
import socket
import time

import requests
import seaweed_support
from seaweed_support import listening

seaweedfs = seaweed_support.seaweedfs   # the fixture


def _volume_holders(weed, path: str, headers: dict) -> set[str]:
    """ip:port of the volume servers holding a copy of any chunk of *path*."""
    meta = requests.get(f"{weed.filer_url}{path}?metadata=true", headers=headers, timeout=10).json()
    holders = set()
    for chunk in meta["chunks"]:
        vid = chunk["file_id"].split(",")[0]
        found = requests.get(f"http://{weed.master_address}/dir/lookup?volumeId={vid}", timeout=10).json()
        holders |= {loc["url"] for loc in found["locations"]}
    return holders


def test_replicated_file_survives_kill_9_of_a_volume_server(seaweedfs):
    started = time.monotonic()
    weed = seaweedfs(volumes=3, replication="010")
    start_seconds = time.monotonic() - started
    assert start_seconds < 20, start_seconds
    # Every weed process listens on loopback alone, on the ports it was given.
    for proc in weed.processes:
        assert listening(proc.pid) >= {("127.0.0.1", proc.port), ("127.0.0.1", proc.grpc_port)}, proc.name
        assert {ip for ip, _ in listening(proc.pid)} == {"127.0.0.1"}, (proc.name, listening(proc.pid))
    racks = {v.name for v in weed.volumes}
    assert racks == {"volume-r0", "volume-r1", "volume-r2"}
    assert sorted(weed.volume_servers()) == sorted(v.address for v in weed.volumes)

    path = "/appliance/blobs/ab/ab0123"
    data = os.urandom(9 * 1024 * 1024 + 17)   # three 4 MiB chunks
    url = f"{weed.filer_url}{path}?replication=010&collection=appliance"
    # Without the JWT the filer refuses writes and reads.
    assert requests.put(url, data=b"x", timeout=10).status_code == 401
    r = requests.put(url, data=data, headers=weed.auth(), timeout=60)
    assert r.status_code == 201, r.text
    assert requests.get(f"{weed.filer_url}{path}", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer " + weed.token().rsplit(".", 1)[0] + ".AAAA"}
    assert requests.get(f"{weed.filer_url}{path}", headers=wrong, timeout=10).status_code == 401
    got = requests.get(f"{weed.filer_url}{path}", headers=weed.auth(), timeout=30)
    assert got.status_code == 200 and got.content == data

    # 010: every chunk has a copy in two racks; kill -9 a server that holds one.
    holders = _volume_holders(weed, path, weed.auth())
    assert len(holders) >= 2
    victim = next(v for v in weed.volumes if v.address in holders)
    assert victim.kill()
    assert not victim.running
    digest = hashlib.sha256(data).hexdigest()
    for _ in range(3):
        got = requests.get(f"{weed.filer_url}{path}", headers=weed.auth(), timeout=60)
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == digest

    # It restarts on the same ports and registers again.
    victim.start()
    weed.wait_ready(30)
    assert victim.address in weed.volume_servers()
    got = requests.get(f"{weed.filer_url}{path}", headers=weed.auth(), timeout=60)
    assert hashlib.sha256(got.content).hexdigest() == digest


def test_stop_frees_every_port(seaweedfs):
    weed = seaweedfs(volumes=1)
    r = requests.put(f"{weed.filer_url}/appliance/blobs/cd/cd01", data=b"hello", headers=weed.auth(), timeout=30)
    assert r.status_code == 201, r.text
    pids = [p.pid for p in weed.processes]
    started = time.monotonic()
    assert weed.stop() == ["filer", "volume-r0", "master"]
    # -preStopSeconds=1 (weed's 10 would hold the volume server's port 10 s); the
    # filer gets 3 s for its graceful stop, then SIGKILL.
    assert time.monotonic() - started < 6
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)
    for proc in weed.processes:
        assert not proc.running
        for port in (proc.port, proc.grpc_port):   # free at once: a restart can take them
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as weed (Go) binds
                s.bind(("127.0.0.1", port))
    assert weed.stop() == []
