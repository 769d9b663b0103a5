"""The three-host lab (`make lab`, appliance/lab/) for tests and benchmarks:
brought up once, driven through its public APIs and SSH gateways, and, for
what only a host itself can see (routing from a host, conntrack), commands
run in a lab host's network namespace."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from appliance.lab import hostns
from appliance.lab import topology as lab_topology

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from harness import Client  # noqa: E402

LINE = re.compile(r"^lab host (?P<name>\S+) api=(?P<api>\S+) ssh=(?P<ssh_host>[\d.]+):(?P<ssh_port>\d+)$")


@dataclass
class Lab:
    apis: dict[str, str] = field(default_factory=dict)        # host name -> base URL
    ssh: dict[str, tuple[str, int]] = field(default_factory=dict)
    admin_password: str = ""
    up_seconds: float = 0.0

    def client(self, host: str) -> Client:
        return Client(self.apis[host])

    def login(self, host: str, username: str, password: str) -> Client:
        r = requests.post(self.apis[host] + "/api/login", json={"username": username, "password": password},
                          timeout=30)
        assert r.status_code == 200, r.text
        return Client(self.apis[host], r.json()["token"], r.json())

    def admin(self, host: str) -> Client:
        return self.login(host, "admin", self.admin_password)

    def in_host(self, host: str, argv: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """``argv`` in the network namespace of lab host ``host``."""
        return subprocess.run(["ip", "netns", "exec", lab_topology.host(host).netns, *argv],
                              capture_output=True, text=True, timeout=timeout, **kw)

    def holder(self, host: str) -> int:
        pid = hostns.holder_pid(lab_topology.host(host))
        assert pid is not None, f"{host}: no namespace holder"
        return pid


def lab_command(command: str, password: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"APPLIANCE_ADMIN_PASSWORD": password} if password else {})}
    return subprocess.run([sys.executable, "-m", "appliance.lab", command], capture_output=True, text=True,
                          env=env, timeout=timeout)


def bring_up(password: str) -> Lab:
    started = time.monotonic()
    proc = lab_command("up", password)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lab = Lab(admin_password=password, up_seconds=time.monotonic() - started)
    for line in proc.stdout.splitlines():
        if m := LINE.match(line):
            lab.apis[m["name"]] = m["api"]
            lab.ssh[m["name"]] = (m["ssh_host"], int(m["ssh_port"]))
    assert f"admin: admin / {password}" in proc.stdout.splitlines(), proc.stdout
    assert sorted(lab.apis) == ["lab-a", "lab-b", "lab-c"], proc.stdout
    return lab


LOGS = Path("/var/tmp/appliance-lab-logs")   # the last lab's daemon logs, kept after `down`


def tear_down() -> str:
    import shutil

    from appliance.lab import weed
    shutil.rmtree(LOGS, ignore_errors=True)
    for h in lab_topology.HOSTS:
        if (h.data_dir / "log").is_dir():
            shutil.copytree(h.data_dir / "log", LOGS / h.name)
    # The lab is thrown away: its SeaweedFS is SIGKILLed first (a clean stop waits the
    # filers, then the volume servers' -preStopSeconds, ~13 s); `down` removes the rest.
    for h in lab_topology.HOSTS:
        for process in weed.processes(h):
            process.kill()
    namespaces = {os.stat(f"/run/netns/{h.netns}").st_ino for h in lab_topology.HOSTS
                  if os.path.exists(f"/run/netns/{h.netns}")}
    proc = lab_command("down")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = processes_in(namespaces)
    assert not left, f"lab down left processes in the hosts' namespaces: {left}\n{proc.stdout}"
    return proc.stdout


def processes_in(namespaces: set[int]) -> dict[int, str]:
    """pid -> command line of every live process of the network namespaces ``namespaces``
    (and their descendants), as kill-host sees them."""
    from appliance.lab import outage
    found = {}
    for pid in outage.namespace_processes(namespaces):
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:   # gone meanwhile
            continue
    return found


def launch(lab: Lab, host: str, client: Client, key_id: str, timeout: float = 90,
           on: str | None = None) -> dict:
    """A container created through ``host``'s API, once running (polled on that host).
    ``on``: the host it must land on (the others are drained by the admin meanwhile)."""
    if on is not None:
        admin = lab.admin(host)
        others = [name for name in lab.apis if name != on]
        for name in others:
            r = admin.post(f"/admin/hosts/{name}/drain")
            assert r.status_code == 200, r.text
        try:
            return launch(lab, host, client, key_id, timeout)
        finally:
            for name in others:
                r = admin.post(f"/admin/hosts/{name}/undrain")
                assert r.status_code == 200, r.text
    r = client.post("/compute/containers", json={"name": "box", "ssh_key_ids": [key_id], "ssh_enabled": True})
    assert r.status_code == 200, r.text
    cid = r.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = client.get(f"/compute/containers/{cid}").json()
        if c["status"] in ("running", "error"):
            break
        time.sleep(0.2)
    assert c["status"] == "running", c
    return c


def gateway_ssh(lab: Lab, host: str, key_file: Path, cid: str, command: str,
                timeout: float = 60) -> subprocess.CompletedProcess:
    """``command`` in container ``cid`` through the SSH gateway of ``host``."""
    address, port = lab.ssh[host]
    return subprocess.run(["ssh", "-p", str(port), "-i", str(key_file), "-o", "BatchMode=yes",
                           "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
                           "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", f"{cid}@{address}", command],
                          capture_output=True, text=True, timeout=timeout)


def tcp_probe(address: str, port: int, seconds: int = 3) -> str:
    """A shell command (bash, no tools needed in the guest) printing OPEN or CLOSED."""
    return (f"timeout {seconds} bash -c 'exec 3<>/dev/tcp/{address}/{port}' 2>/dev/null "
            f"&& echo OPEN || echo CLOSED")


def kill_daemons(host: str) -> list[int]:
    """kill -9 of the appliance's processes of lab host ``host`` (core, gateways, their log
    writers); its libvirtd and guests keep running, as on a machine whose appliance crashed."""
    import signal

    from appliance.lab import usage
    killed = []
    for pid, command, _ in usage.processes()[host]:
        if "appliance.cli" in command or "appliance.logs" in command:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def restart(lab: Lab, host: str) -> None:
    """The host started again as the lab starts it: `appliance up` in its namespaces (first a
    new holder with its libvirtd, if the holder is gone too: appliance/lab/outage.py)."""
    from appliance.lab import outage
    outage.restart_host(lab_topology.host(host), {"APPLIANCE_ADMIN_PASSWORD": lab.admin_password})


def wait_status(client: Client, cid: str, status: str, timeout: float) -> dict:
    """The container as the list shows it (the database's view: a single GET of a down host's
    container is forwarded to that host and answers 503) once it has ``status``, or at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        listed = client.get("/compute/containers").json()["containers"]
        c = next(x for x in listed if x["id"] == cid)
        if c["status"] == status or time.monotonic() > deadline:
            return c
        time.sleep(0.2)
