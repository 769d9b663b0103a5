"""Host preparation for compute, run by ``appliance up`` (``cli.PREPARE_STEPS``),
and its release, run by ``appliance down`` (``cli.RELEASE_STEPS``), both
through the guest driver (``GuestDriver.prepare_host``/``stop_guests`` and its
ingress applier).

On LXC: libvirtd (started by hand when no service manager does), the guest
image (debootstrap, ~1 min once, then cached under ``image_dir``) and the
guests' bridge with NAT. A failure is reported and ``up`` goes on: auth and storage
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

from appliance import procs
from appliance.drivers.factory import make_driver
from appliance.host import libvirtd

VIRTLOGD_PIDFILE = Path("/run/virtlogd.pid")
FAILED = "compute: host preparation failed"


def _started_by_up(cfg) -> Path:
    return cfg.run_dir / "libvirt-started-by-up"


def prepare(cfg) -> None:
    try:
        was_running = libvirtd.libvirtd_pid() is not None
        driver = make_driver(cfg)
        try:
            driver.prepare_host(build_image=True)
        finally:
            driver.close()
        if not was_running and libvirtd.libvirtd_pid() is not None:
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            _started_by_up(cfg).write_text(f"{libvirtd.libvirtd_pid()} {procs.pid_from_file(VIRTLOGD_PIDFILE) or ''}\n")
    except Exception as e:  # noqa: BLE001 - everything else must still come up
        print(f"{FAILED}: {e}\n"
              "compute: containers cannot start until this is fixed; auth and storage run anyway",
              file=sys.stderr)


def _terminate(pid: int, timeout: float = 10.0) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)


def release(cfg) -> list[str]:
    """Stop what `up` and the core left running on the host; names what was stopped."""
    stopped = []
    driver = make_driver(cfg)
    try:
        if driver.ingress_applier(cfg).stop():
            stopped.append("ingress proxy")
        guests = driver.stop_guests()
        if guests:
            stopped.append(f"{len(guests)} guest(s)")
    finally:
        driver.close()
    record = _started_by_up(cfg)
    if record.exists():
        # the record may name no virtlogd: zip stops at the shorter
        for name, pid in zip(("libvirtd", "virtlogd"), record.read_text().split(), strict=False):
            pidfile = libvirtd.LIBVIRTD_PIDFILE if name == "libvirtd" else VIRTLOGD_PIDFILE
            if procs.pid_from_file(pidfile) == int(pid):  # still the process `up` started
                _terminate(int(pid))
                stopped.append(name)
        record.unlink()
    return stopped
