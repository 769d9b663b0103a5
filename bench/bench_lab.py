"""The cluster benchmarks that need the three-host lab (`make lab`, issue 13):

- create -> running p50 through each host's API (where the container
  landed is read back from its ``host`` field when the API shows one);
  target: landing on another host than the one called <= 1.3 x same host.
- API read throughput (GET /compute/containers, one user, ``--threads``
  clients for ``--seconds``) through host A's gateway alone vs spread over
  the three hosts' gateways: the cost per request of the cluster path
  (target <= 1.2 x); the machine's 2 cores serve all three hosts, so this
  shows overhead, not scale.
- SSH bulk (``--mb`` MB into ``cat > /dev/null`` in a guest on host C):
  through C's own SSH gateway; from host A straight to the guest (the
  routed path between hosts a gateway on A uses: A -> LAN -> C's NAT ->
  guest); and through A's gateway to the guest on C (needs forwarding of the
  gateway's Authorize between cores; reported as refused without it).
  Target >= 50 MB/s through a gateway on another host.

Brings the lab up and removes it (root; under /tmp/appliance-lxc.lock on a
shared machine).  python -m bench.bench_lab [--runs 5] [--threads 6] [--seconds 4] [--mb 200]
"""
from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "lab"))
from compute_support import add_key, private_pem  # noqa: E402
from lab_support import Lab, bring_up, launch, tear_down  # noqa: E402

from appliance.lab import usage  # noqa: E402

SSH_OPTS = ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR"]


def new_user(lab: Lab, host: str):
    name = f"bench{secrets.token_hex(4)}"
    r = lab.admin("lab-a").post("/admin/users", json={"username": name, "password": "pw-123456"})
    assert r.status_code == 200, r.text
    client = lab.login(host, name, "pw-123456")
    key_id, key = add_key(client)
    return client, key_id, key


def landed_on(container: dict) -> str:
    """The host running the container, from its address (host N's guests are on 10.217.N.0/24)."""
    return f"lab-{'abc'[int(container['external_ip'].split('.')[2]) - 1]}"


def create_to_running(lab: Lab, runs: int) -> None:
    """Containers created through each host's API in turn; timed until running, grouped by
    whether placement put them on the host called or on another one."""
    same: list[float] = []
    other: list[float] = []
    for i in range(runs * 3):
        host = ("lab-a", "lab-b", "lab-c")[i % 3]
        client, key_id, _ = new_user(lab, host)
        started = time.monotonic()
        c = launch(lab, host, client, key_id)
        took = time.monotonic() - started
        (same if landed_on(c) == host else other).append(took)
        client.delete(f"/compute/containers/{c['id']}")
    for label, times in (("on the host called", same), ("on another host", other)):
        if times:
            print(f"create -> running, landed {label}: p50 {statistics.median(times) * 1000:.0f} ms "
                  f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, {len(times)} runs)")
    if same and other:
        print(f"create -> running another/same host: {statistics.median(other) / statistics.median(same):.2f} x")


def throughput(lab: Lab, hosts: list[str], token: str, threads: int, seconds: float) -> float:
    count = [0] * threads
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        client = lab.client(hosts[i % len(hosts)]).with_token(token)
        while time.monotonic() < stop:
            assert client.get("/compute/containers").status_code == 200
            count[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(count) / seconds


def api_reads(lab: Lab, threads: int, seconds: float) -> None:
    client, _, _ = new_user(lab, "lab-a")
    throughput(lab, ["lab-a", "lab-b", "lab-c"], client.token, threads, 1.0)   # warm up
    one = throughput(lab, ["lab-a"], client.token, threads, seconds)
    three = throughput(lab, ["lab-a", "lab-b", "lab-c"], client.token, threads, seconds)
    print(f"API reads, {threads} clients: one gateway {one:.0f} req/s, three gateways {three:.0f} req/s; "
          f"cost per request three/one {one / three:.2f} x")


def _timed_ssh(argv: list[str], mb: int) -> tuple[float, str]:
    source = subprocess.Popen(["head", "-c", f"{mb}M", "/dev/zero"], stdout=subprocess.PIPE)
    started = time.monotonic()
    proc = subprocess.run(argv, stdin=source.stdout, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    source.wait()
    return (mb * 1.048576 / took if proc.returncode == 0 else 0.0), proc.stderr.strip()


def ssh_bulk(lab: Lab, mb: int) -> None:
    client, key_id, key = new_user(lab, "lab-c")
    guest = launch(lab, "lab-c", client, key_id)
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "id"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private_pem(key))
        for host in ("lab-c", "lab-a"):
            address, port = lab.ssh[host]
            rate, err = _timed_ssh(["ssh", "-p", str(port), "-i", str(key_file), *SSH_OPTS,
                                    f"{guest['id']}@{address}", "cat > /dev/null"], mb)
            where = "same host" if host == "lab-c" else "another host"
            print(f"SSH bulk through {host}'s gateway to a guest on lab-c ({where}): "
                  + (f"{rate:.0f} MB/s" if rate else f"refused ({err[:120]})"))
        access_key = "/var/tmp/appliance-lab/lab-a/data/ssh/guest_access_key"
        rate, err = _timed_ssh(["ip", "netns", "exec", "lab-a", "ssh", "-i", access_key, *SSH_OPTS,
                                f"root@{guest['external_ip']}", "cat > /dev/null"], mb)
        print("SSH bulk from host lab-a straight to the guest on lab-c (the routed path): "
              + (f"{rate:.0f} MB/s" if rate else f"failed ({err[:120]})"))
    client.delete(f"/compute/containers/{guest['id']}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=6)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--mb", type=int, default=200)
    args = p.parse_args()
    lab = bring_up("bench-" + secrets.token_urlsafe(8))
    try:
        mib = sum(kib for procs in usage.processes().values() for _, _, kib in procs) / 1024
        print(f"lab up in {lab.up_seconds:.1f} s, {mib:.0f} MiB PSS (3 hosts + PostgreSQL)")
        create_to_running(lab, args.runs)
        api_reads(lab, args.threads, args.seconds)
        ssh_bulk(lab, args.mb)
    finally:
        tear_down()


if __name__ == "__main__":
    main()
