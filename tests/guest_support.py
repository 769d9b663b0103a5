"""Shared by the tests that drive the LXC driver directly and attack from
inside its guests (test_isolation, test_redteam_guest): a static probe built
from C, a driver on a bridge of its own, guests with the probe installed, and
shell commands run in them. Needs root and libvirt (import it after the
modules' root check)."""
from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from appliance import config as appliance_config
from appliance.drivers.base import GuestSpec
from appliance.drivers.lxc.driver import LxcDriver
from appliance.host import image, network
from appliance.host import libvirtd as host


def build_probe(src: Path, out: Path) -> bytes:
    """``src`` compiled statically to ``out`` (guests need nothing of the image); its bytes."""
    if not shutil.which("gcc"):
        pytest.fail("gcc is needed to build the attack probes: run scripts/install-deps.sh")
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


@contextmanager
def lxc_driver(data_dir: Path, bridge: str, subnet: str, **settings) -> Iterator[LxcDriver]:
    """An LXC driver on the shared image with a bridge and subnet of its own;
    its guests and network are removed afterwards."""
    host.ensure_libvirtd()
    image_dir = appliance_config.load().image_dir
    image.ensure_image(image_dir)
    driver = LxcDriver(image_dir=image_dir, data_dir=data_dir, bridge=bridge, subnet=subnet, **settings)
    driver.prepare_host(build_image=False)
    try:
        yield driver
    finally:
        for volume in Path(data_dir, "volumes").glob("*.img"):
            driver.destroy(volume.stem)
        network.remove_guest_network(bridge)


@contextmanager
def guest_maker(driver: LxcDriver, ips: Iterator[str], prefix: str, probe: bytes,
                probe_path: str) -> Iterator[Callable[..., GuestSpec]]:
    """make(**overrides) -> a running guest (256 MB, 1 CPU, 1 GB unless
    overridden) with ``probe`` at ``probe_path``; all destroyed afterwards."""
    made: list[str] = []

    def make(**overrides) -> GuestSpec:
        values = {"id": f"{prefix}{uuid.uuid4().hex[:8]}", "ip": next(ips), "memory_mb": 256, "cpus": 1.0,
                  "storage_gb": 1, **overrides}
        spec = GuestSpec(**values)
        made.append(spec.id)
        driver.spawn(spec)
        r = driver.exec(spec.id, ["sh", "-c", f"cat > {probe_path} && chmod 755 {probe_path}"], input=probe)
        assert r.exit_code == 0, r
        return spec

    try:
        yield make
    finally:
        for guest_id in made:
            driver.destroy(guest_id)


def run(driver: LxcDriver, spec: GuestSpec, script: str, timeout: float = 30) -> tuple[int, str]:
    """``script`` as root in the guest: (exit code, stdout + stderr)."""
    r = driver.exec(spec.id, ["sh", "-c", script], timeout=timeout)
    return r.exit_code, (r.stdout + r.stderr).decode(errors="replace")
