"""`python -m appliance.lab status`: what runs in each lab host and its memory (PSS)."""
from __future__ import annotations

import os
from pathlib import Path

from appliance.lab import hostns, pg
from appliance.lab.topology import HOSTS


def _pss_kib(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _netns(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def processes() -> dict[str, list[tuple[int, str, int]]]:
    """host name (and "postgresql") -> [(pid, command, PSS KiB)]."""
    holders = {h.name: hostns.holder_pid(h) for h in HOSTS}
    by_ns = {_netns(str(pid)): name for name, pid in holders.items() if pid is not None}
    found: dict[str, list[tuple[int, str, int]]] = {name: [] for name in [*holders, "postgresql"]}
    pg_data = str(pg.DATA).encode()
    pg_pid = None
    try:
        pg_pid = (pg.DATA / "postmaster.pid").read_text().split()[0]
    except OSError:
        pass
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
        owner = by_ns.get(_netns(entry.name))
        if owner is None and (pg_data in cmdline or (pg_pid is not None and ppid == pg_pid)):
            owner = "postgresql"
        if owner is not None:
            command = " ".join(part.decode(errors="replace") for part in cmdline.split(b"\0")[:6] if part)
            found[owner].append((int(entry.name), command, _pss_kib(entry.name)))
    return found


def report() -> int:
    total = 0
    for owner, procs in processes().items():
        kib = sum(p[2] for p in procs)
        total += kib
        print(f"{owner}: {len(procs)} processes, {kib / 1024:.0f} MiB PSS")
    print(f"lab total: {total / 1024:.0f} MiB PSS")
    return 0
