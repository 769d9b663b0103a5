"""A real SeaweedFS set for tests (appliance/host/seaweedfs.py): the ``weed`` binary of
the venv on free loopback ports, in a temp dir.

``seaweedfs``: a module fixture giving a factory; each call starts one set and returns
its ``WeedSet`` (all stopped when the module ends)::

    import seaweed_support
    seaweedfs = seaweed_support.seaweedfs   # the fixture

    def test_x(seaweedfs):
        weed = seaweedfs(volumes=3, replication="010")   # racks r0 r1 r2, one volume server each
        weed.filer_url, weed.master_address, weed.jwt_key_file, weed.volumes[1].kill()
        token = weed.token()                               # a filer JWT valid 60 s

``seaweed_set(root, ...)``: the same as a context manager (benchmarks, other fixtures).
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest

from appliance.host.seaweedfs import WeedSet, ensure_jwt_key, filer_jwt


class TestWeedSet(WeedSet):
    """A WeedSet that signs its own filer tokens."""

    __test__ = False   # not a test class for pytest

    def token(self, seconds: float = 60, **claims) -> str:
        return filer_jwt(ensure_jwt_key(self.jwt_key_file), seconds, **claims)

    def auth(self, seconds: float = 60) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(seconds)}"}


def make_set(root: Path, volumes: int = 1, replication: str = "000", **settings) -> TestWeedSet:
    """Not started. Racks r0..r<n-1>: one volume server per rack, as one per host in a cluster.
    Small volumes (64 MB) so that tests do not fill the disk."""
    settings = {"volume_size_limit_mb": 64, "max_volumes": 40, "memory_limit_mb": 256, **settings}
    return TestWeedSet(root, root / "jwt_key", racks=[f"r{i}" for i in range(volumes)],
                       replication=replication, **settings)


@contextlib.contextmanager
def seaweed_set(root: Path | None = None, volumes: int = 1, replication: str = "000", **settings):
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="appliance-weed-")))
        weed = make_set(Path(root), volumes, replication, **settings)
        try:
            yield weed.start()
        finally:
            stop_quickly(weed)


def stop_quickly(weed: WeedSet) -> None:
    """A test's set is thrown away: the filer gets 1 s to stop (after a test killed a
    volume server it would hang until SIGKILL), then the rest stop as usual."""
    weed.filer.stop(timeout=1)
    weed.stop()


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory):
    started: list[WeedSet] = []

    def factory(volumes: int = 1, replication: str = "000", **settings) -> TestWeedSet:
        weed = make_set(tmp_path_factory.mktemp("weed"), volumes, replication, **settings)
        started.append(weed)
        return weed.start()

    yield factory
    for weed in started:
        stop_quickly(weed)


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket *pid* listens on (from /proc, IPv4 and IPv6)."""
    import ipaddress
    import os
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:   # 0A: LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            found.add((str(ipaddress.ip_address(raw)), int(hex_port, 16)))
    return found
