"""A running guest's libvirt domain: waiting for its init, finding it,
stopping the domain. (``domain_xml.py`` writes the domain's definition.)"""
from __future__ import annotations

import os
import time
from pathlib import Path

from appliance.drivers.base import GuestError, GuestStartError

STOP_GRACE_SECONDS = 3.0
# libvirt knows the init pid within milliseconds on a quiet host; a clean-clone run at
# load ~9 once waited past 10 s (two guests spawned back to back beside the install runs).
INIT_TIMEOUT_SECONDS = 30.0
LIBVIRT_LOG_DIR = Path("/var/log/libvirt/lxc")


def wait_for_init(dom, timeout: float = INIT_TIMEOUT_SECONDS) -> None:
    """createXML returns before libvirt knows the init pid; exec needs it."""
    import libvirt
    import libvirt_lxc

    deadline = time.monotonic() + timeout
    while True:
        try:
            for fd in libvirt_lxc.lxcOpenNamespace(dom, 0):
                os.close(fd)
            return
        except libvirt.libvirtError as e:
            if not dom.isActive():
                raise GuestStartError(f"guest init exited at once: {log_tail(dom.name())}") from e
            if time.monotonic() > deadline:
                raise GuestStartError(f"guest init did not come up within {timeout:.0f}s") from e
        time.sleep(0.002)


def init_pid(dom) -> int | None:
    """Host pid of the domain's init (the child of libvirt's LXC controller)."""
    controller = dom.ID()
    for task in os.listdir(f"/proc/{controller}/task"):
        children = Path(f"/proc/{controller}/task/{task}/children").read_text().split()
        if children:
            return int(children[0])
    return None


def stop(dom) -> None:
    """SIGTERM to the guest's init, then, after a grace time, destroy."""
    import libvirt

    try:
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_SIGNAL)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline and dom.isActive():
            time.sleep(0.02)
    except libvirt.libvirtError:
        pass
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError as e:
        if e.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            raise GuestError(f"could not stop {dom.name()}: {error_message(e)}") from e


def error_message(e: BaseException) -> str:
    getter = getattr(e, "get_error_message", None)
    return (getter() if getter else None) or str(e)


def log_tail(name: str, lines: int = 5) -> str:
    """The end of libvirt's log of the domain, for an error message."""
    try:
        text = (LIBVIRT_LOG_DIR / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "no log"
    return " | ".join(text.strip().splitlines()[-lines:])
