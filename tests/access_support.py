"""Shared by the SSH gateway, terminal and ingress tests (and bench_access):
a real appliance (core + HTTP + SSH gateway) on its own bridge, and users
with real guests created through REST."""
from __future__ import annotations

import io
import os
import subprocess
import time
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
    import socket
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
    from appliance.core.compute import ingress
    ingress.remove_nft(bridge)
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
