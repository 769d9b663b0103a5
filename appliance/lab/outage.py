"""A lab host going down whole, and coming back the way `make lab` starts it.

``kill_host``: kill -9 of every process of the host, as a power cut would
end them: whatever runs in its network namespace (the namespace holder,
libvirtd, the guests' libvirt_lxc controllers, the core, the gateways, their
log writers, HAProxy) and every descendant of those (the guests' processes,
which run in network namespaces of their own). Its mount namespace (the
private /run with libvirtd's state and the guests' root mounts) goes with
its last process. What a machine keeps over a power cut stays: the named
network namespace with its links, routes and nftables rules (the host's
network configuration), its data directory (the guests' volumes) and the
shared PostgreSQL.

``restart_host``: a new holder (a fresh mount namespace whose script starts
libvirtd), its SeaweedFS servers (appliance/lab/weed.py), then ``appliance
up``; with the holder still there only what is not running.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from appliance.lab import hostns, weed
from appliance.lab.topology import LabHost


class OutageError(RuntimeError):
    pass


def _netns_inode(h: LabHost) -> int:
    return os.stat(f"/run/netns/{h.netns}").st_ino


def _table() -> dict[int, tuple[int, int | None, str]]:
    """pid -> (parent pid, network namespace inode or None, state) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        try:
            net: int | None = os.stat(entry / "ns" / "net").st_ino
        except OSError:   # a zombie, or gone meanwhile
            net = None
        table[int(entry.name)] = (int(fields[1]), net, fields[0])
    return table


def host_processes(h: LabHost) -> set[int]:
    """The live (not zombie) processes of lab host ``h``: those in its network
    namespace and all their descendants."""
    return namespace_processes({_netns_inode(h)})


def namespace_processes(inodes: set[int]) -> set[int]:
    """The live processes in the network namespaces ``inodes`` (named or not any more)
    and all their descendants."""
    table = _table()
    found = {pid for pid, (_, net, _) in table.items() if net in inodes}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _, _) in table.items() if ppid in found and pid not in found}
        found |= more
        grew = bool(more)
    return {pid for pid in found if table[pid][2] != "Z" and pid != os.getpid()}


def kill_host(h: LabHost, timeout: float = 20.0) -> set[int]:
    """SIGKILL every process of ``h``, again until none is left (a process
    forked between the listing and the kill is found by the next round).
    Returns the pids killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while pids := host_processes(h):
        if time.monotonic() > deadline:
            raise OutageError(f"{h.name}: processes still alive after kill -9: {sorted(pids)}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return killed


def restart_host(h: LabHost, env: dict | None = None) -> int:
    """Start ``h`` again: its holder and libvirtd if they are gone, then its
    appliance. Returns the holder's pid."""
    holder = hostns.holder_pid(h)
    if holder is None:
        holder = hostns.start_holder(h, h.dir / "holder.log")
        hostns.wait_libvirtd(h, holder)
    weed.start((h,))   # its SeaweedFS servers (what still runs is left as it is)
    result = hostns.appliance(h, holder, "up", env)
    if result.returncode != 0:
        raise OutageError(f"{h.name}: appliance up failed:\n{result.stdout}{result.stderr}")
    return holder
