"""Cores of several hosts in one test: their cluster certificates, made by the
real `appliance cluster ca` / `cluster cert` commands, and the settings that
put a core on the cluster port (docs/cluster-peers.md)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import ROOT, free_port


def cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "--config", "/dev/null", *args],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def make_certs(directory: Path, hosts) -> Path:
    """A cluster CA in ``directory``/ca and a certificate per host (for 127.0.0.1) in ``directory``/hosts."""
    cli("cluster", "ca", "--out", str(directory / "ca"))
    for host in hosts:
        cli("cluster", "cert", "--ca", str(directory / "ca"), "--name", host, "--ip", "127.0.0.1",
            "--out", str(directory / "hosts"))
    return directory


def peer_settings(certs: Path, host: str, port: int | None = None) -> dict:
    """A core's settings for the cluster port on 127.0.0.1 (a free port unless given)."""
    return dict(cluster_listen=f"127.0.0.1:{port or free_port()}", cluster_ca_file=certs / "ca" / "ca.pem",
                cluster_cert_file=certs / "hosts" / f"{host}.pem", cluster_key_file=certs / "hosts" / f"{host}.key")
