"""Host preparation for compute, run by ``appliance up`` (``cli.PREPARE_STEPS``),
and its release, run by ``appliance down`` (``cli.RELEASE_STEPS``).

libvirtd (started by hand when no service manager does), the guest image
(debootstrap, ~1 min once, then cached under ``image_dir``) and the guests'
bridge with NAT. A failure is reported and ``up`` goes on: auth and storage
still start, and compute calls answer with the reason until it is fixed
(the core retries the libvirtd and bridge part on its own).

``down`` stops running guests (their volumes stay; the containers show as
stopped after the next ``up``), the ingress proxy, and libvirtd/virtlogd if
this ``up`` started them (a libvirtd run by a service manager is left alone).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from appliance.cli import PREPARE_STEPS, RELEASE_STEPS

VIRTLOGD_PIDFILE = Path("/run/virtlogd.pid")


def _started_by_up(cfg) -> Path:
    return cfg.run_dir / "libvirt-started-by-up"


def _pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def prepare(cfg) -> None:
    if cfg.guest_driver != "lxc":
        return
    try:
        from appliance.drivers.lxc.driver import LxcDriver
        from appliance.host import libvirtd as host
        was_running = host.libvirtd_pid() is not None
        LxcDriver.from_config(cfg).prepare_host(build_image=True)
        if not was_running and host.libvirtd_pid() is not None:
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            _started_by_up(cfg).write_text(f"{host.libvirtd_pid()} {_pid(VIRTLOGD_PIDFILE) or ''}\n")
    except Exception as e:  # noqa: BLE001 - everything else must still come up
        print(f"compute: host preparation failed: {e}\n"
              "compute: containers cannot start until this is fixed; auth and storage run anyway",
              file=sys.stderr)


def _terminate(pid: int, timeout: float = 10.0) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)


def release(cfg) -> list[str]:
    """Stop what `up` and the core left running on the host; names what was stopped."""
    if cfg.guest_driver != "lxc":
        return []
    stopped = []
    from appliance.core.compute.ingress import Haproxy
    haproxy = Haproxy(cfg)
    if haproxy.pids():
        haproxy.stop()
        stopped.append("ingress proxy")
    from appliance.host import libvirtd as host
    if host.libvirtd_pid() is not None:
        from appliance.drivers.lxc.driver import LxcDriver
        driver = LxcDriver.from_config(cfg)
        # Only this data dir's guests: one libvirtd may serve several appliances.
        guests = [g for g in driver.running_guests() if driver.volumes.exists(g)]
        for guest_id in guests:
            driver.stop(guest_id)
        if guests:
            stopped.append(f"{len(guests)} guest(s)")
    record = _started_by_up(cfg)
    if record.exists():
        for name, pid in zip(("libvirtd", "virtlogd"), record.read_text().split(), strict=False):
            pidfile = host.LIBVIRTD_PIDFILE if name == "libvirtd" else VIRTLOGD_PIDFILE
            if _pid(pidfile) == int(pid):  # still the process `up` started
                _terminate(int(pid))
                stopped.append(name)
        record.unlink()
    return stopped


PREPARE_STEPS.append(prepare)
RELEASE_STEPS.append(release)
