"""appliance/lab/outage.py on a namespace of its own (no lab): every process of
a "host" is found, those in its network namespace and their descendants in
namespaces of their own (as a guest's), killed, and nothing else is."""
import os
import subprocess
import time

import pytest

from appliance.lab import outage
from appliance.lab.topology import LabHost

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def host():
    h = LabHost(f"ut{os.getpid()}", 250)
    subprocess.run(["ip", "netns", "add", h.netns], check=True)
    try:
        yield h
    finally:
        subprocess.run(["ip", "netns", "del", h.netns], check=False)


EXPECTED = ["sh", "sleep", "sleep", "unshare"]


def _commands(pids) -> list[str]:
    names = []
    for pid in pids:
        try:
            names.append(open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode())
        except OSError:
            names.append("?")   # gone meanwhile
    return sorted(names)


def test_every_process_of_the_host_is_killed_and_nothing_else(host):
    outsider = subprocess.Popen(["sleep", "1000"])
    # a "daemon" in the host's namespace; below it, a "guest" in a network namespace of its own
    inside = subprocess.Popen(["ip", "netns", "exec", host.netns, "sh", "-c",
                               "sleep 1001 & unshare --net --fork sleep 1002 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        # until every process has exec'd its command (under load `ip netns exec` may not have yet)
        while (commands := _commands(found := outage.host_processes(host))) != EXPECTED \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert commands == EXPECTED, commands
        assert outsider.pid not in found and os.getpid() not in found
        killed = outage.kill_host(host)
        assert killed == found and outage.host_processes(host) == set()
        assert inside.wait(timeout=5) == -9
        assert outsider.poll() is None
    finally:
        for proc in (outsider, inside):
            proc.kill()
            proc.wait()
