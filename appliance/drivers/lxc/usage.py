"""A running guest's CPU time and memory, read from its cgroup files.

The files are found once through libvirt (the guest's init pid); after that a
reading is two or three small file reads and no libvirt round trip, which is
what lets the metrics sampler read 30 guests every few seconds cheaply.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from appliance.drivers.lxc import cgroups as guestcgroups
from appliance.drivers.lxc import domain as libvirt_domain


class CgroupUsage:
    def __init__(self) -> None:
        self._files: dict[str, guestcgroups.Accounting] = {}

    def forget(self, guest_id: str) -> None:
        self._files.pop(guest_id, None)

    def read(self, guest_id: str, find_domain: Callable[[], Any]) -> tuple[int, int, int]:
        """(CPU ns, memory used, memory limit); zeros when the guest is stopped."""
        acc = self._files.get(guest_id)
        if acc is not None:
            try:
                return guestcgroups.read_accounting(acc)
            except OSError:
                self.forget(guest_id)
        dom = find_domain()
        if dom is None:
            return 0, 0, 0
        pid = libvirt_domain.init_pid(dom)
        acc = guestcgroups.accounting(pid) if pid is not None else None
        with contextlib.suppress(OSError):
            if acc is not None:
                reading = guestcgroups.read_accounting(acc)
                self._files[guest_id] = acc
                return reading
        try:
            _, max_kib, used_kib, _, _ = dom.info()  # LXC: the memory cgroup
            return 0, used_kib * 1024, max_kib * 1024
        except Exception:  # stopped between lookup and info
            return 0, 0, 0
