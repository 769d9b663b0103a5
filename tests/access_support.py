"""Shared by the SSH gateway, terminal, ingress and red-team tests (and
bench_access): a real appliance (core + HTTP + SSH gateway) on its own bridge,
users with real guests created through REST, commands in those guests over
their own sshd, and an "outside" network namespace to reach them from."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from compute_support import add_key, new_user, private_pem, running
from harness import Appliance, free_port


def start_appliance(data_dir: Path, bridge: str, subnet: str, **settings) -> Appliance:
    from appliance import config as appliance_config
    from appliance.host import image
    from appliance.host import libvirtd as host

    host.ensure_libvirtd()
    # ACCESS_IMAGE_DIR: a private guest image (tests that must not share one)
    image_dir = os.environ.get("ACCESS_IMAGE_DIR") or appliance_config.load().image_dir
    image.ensure_image(image_dir)
    ssh_port = free_port()
    a = Appliance(data_dir, guest_driver="lxc", bridge_name=bridge, guest_subnet=subnet, image_dir=image_dir,
                  ssh_port=ssh_port, ssh_listen="127.0.0.1", compute_domain="compute.test", **settings)
    a.ssh_port = ssh_port
    a.start("core", "http", "ssh")
    wait_port("127.0.0.1", ssh_port)
    return a


def wait_port(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop_appliance(a: Appliance, bridge: str) -> None:
    from appliance.host import network

    admin = a.admin()
    for u in admin.get("/admin/users").json():
        if not u["is_admin"]:
            admin.delete(f"/admin/users/{u['user_id']}")
    for c in admin.get("/compute/containers").json()["containers"]:
        admin.delete(f"/compute/containers/{c['id']}")
    time.sleep(0.3)  # the last ingress sync
    a.close()
    from appliance.host import ingress_nft
    ingress_nft.remove_nft(bridge)
    _stop_haproxy(a.data_dir)
    network.remove_guest_network(bridge)


def _stop_haproxy(data_dir: Path) -> None:
    pidfile = Path(data_dir) / "run" / "haproxy.pid"
    if pidfile.exists():
        for pid in pidfile.read_text().split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"haproxy" in cmd:
                    os.kill(int(pid), 15)
            except (OSError, ValueError):
                pass


class Person:
    """A user with one registered ed25519 key, written to a file for OpenSSH."""

    def __init__(self, app: Appliance, admin, key_dir: Path):
        import paramiko

        self.client = new_user(app, admin)
        self.key_id, self.key = add_key(self.client)
        pem = private_pem(self.key)
        self.pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(pem))
        key_dir.mkdir(parents=True, exist_ok=True)
        self.key_file = key_dir / f"id_{self.client.info['username']}"
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pem)


def launch(app: Appliance, person: Person, **body) -> dict:
    """A running guest of ``person``'s with their key (a real guest may take a minute)."""
    return running(app, person.client, person.key_id, timeout=60, **body)




def ssh_argv(app: Appliance, key_file: Path, user: str, *extra: str, known_hosts: Path | None = None) -> list[str]:
    """The OpenSSH client command a user runs (ssh_command plus -i)."""
    return ["ssh", "-p", str(app.ssh_port), "-i", str(key_file), *_opts(known_hosts),
            *extra, f"{user}@127.0.0.1"]


def scp_argv(app: Appliance, key_file: Path, *paths: str, known_hosts: Path | None = None) -> list[str]:
    return ["scp", "-q", "-P", str(app.ssh_port), "-i", str(key_file), *_opts(known_hosts), *paths]


def _opts(known_hosts: Path | None) -> list[str]:
    return ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", f"UserKnownHostsFile={known_hosts or '/dev/null'}",
            "-o", "StrictHostKeyChecking=" + ("yes" if known_hosts and known_hosts.exists() else "accept-new"
                                             if known_hosts else "no"),
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]


def run(argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, timeout=timeout, stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)


def guest_sh(guest: dict, person: Person, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``command`` as root in the guest over the guest's own sshd (not through
    the appliance), as text; fails the test unless it exits 0."""
    r = run(["ssh", "-i", str(person.key_file), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
             f"root@{guest['external_ip']}", command], timeout=timeout, text=True)
    assert r.returncode == 0, (command, r.stdout, r.stderr)
    return r


def _ip(*argv: str, check: bool = True) -> None:
    r = subprocess.run(["ip", *argv], capture_output=True, text=True)
    assert r.returncode == 0 or not check, (argv, r.stderr)


@contextmanager
def outside_namespace(name: str, host_if: str, ns_if: str, host_ip: str, ns_ip: str, *,
                      route_via_host: bool = False) -> Iterator[str]:
    """A network namespace standing in for the outside world, joined to this
    host by a veth pair (``host_if`` with ``host_ip``/24 here, ``ns_if`` with
    ``ns_ip``/24 there); left over ones of the same names are removed first,
    this one afterwards. Yields the namespace's name."""
    _ip("netns", "del", name, check=False)
    _ip("link", "del", host_if, check=False)
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        _ip("addr", "add", f"{host_ip}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{ns_ip}/24", "dev", ns_if)
        _ip("-n", name, "link", "set", ns_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        if route_via_host:
            _ip("-n", name, "route", "add", "default", "via", host_ip)
        yield name
    finally:
        _ip("link", "del", host_if, check=False)
        _ip("netns", "del", name, check=False)
