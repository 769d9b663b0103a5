"""Names, addresses and directories of the lab (one place, so `up` and `down` agree).

The LAN is 10.231.0.0/24 (host N at .N, the machine itself at .254 so the
APIs answer from its shell); host N's guests live on 10.217.N.0/24. The
machine's own guest subnet is 10.217.0.0/24, and its namespace holds no
route to the lab's guest subnets.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LAB_DIR = Path(os.environ.get("APPLIANCE_LAB_DIR", "/var/tmp/appliance-lab"))
LAN_NS = "lab-lan"
LAN_BRIDGE = "lanbr"
LAN_PREFIX = "10.231.0"
LAN_MASK = 24
ACCESS_LINK = "aplab0"            # the machine's own leg on the LAN
ACCESS_IP = f"{LAN_PREFIX}.254"
HTTP_PORT, SSH_PORT, CLUSTER_PORT = 8080, 2222, 7443
INGRESS_HTTP_PORT, INGRESS_HTTPS_PORT = 80, 443
PG_PORT = 5497
NAMES = ("a", "b", "c")


@dataclass(frozen=True)
class LabHost:
    letter: str
    number: int

    @property
    def name(self) -> str:
        return f"lab-{self.letter}"

    @property
    def netns(self) -> str:
        return self.name

    @property
    def lan_ip(self) -> str:
        return f"{LAN_PREFIX}.{self.number}"

    @property
    def guest_subnet(self) -> str:
        return f"10.217.{self.number}.0/24"

    @property
    def bridge(self) -> str:
        return f"labbr{self.number}"

    @property
    def dir(self) -> Path:
        return LAB_DIR / self.name

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def config_file(self) -> Path:
        return self.dir / "appliance.toml"

    @property
    def libvirt_dir(self) -> Path:
        """Private /run/libvirt, /var/lib/libvirt, ... of this host's libvirtd."""
        return self.dir / "libvirt"

    @property
    def holder_pidfile(self) -> Path:
        return self.dir / "holder.pid"

    @property
    def api(self) -> str:
        return f"http://{self.lan_ip}:{HTTP_PORT}"

    @property
    def cluster_address(self) -> str:
        return f"{self.lan_ip}:{CLUSTER_PORT}"


HOSTS = tuple(LabHost(letter, n) for n, letter in enumerate(NAMES, start=1))


def host(letter_or_name: str) -> LabHost:
    for h in HOSTS:
        if letter_or_name in (h.letter, h.name):
            return h
    raise KeyError(letter_or_name)
