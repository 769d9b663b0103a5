"""A running guest's libvirt domain: waiting for its init, finding it,
stopping the domain. (``domain_xml.py`` writes the domain's definition.)"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from appliance.drivers.base import GuestError, GuestStartError

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 3.0
# libvirt knows the init pid within milliseconds on a quiet host; a clean-clone run at
# load ~9 once waited past 10 s (two guests spawned back to back beside the install runs).
INIT_TIMEOUT_SECONDS = 30.0
# A guest whose init runs (a child of its controller) while libvirtd still knows no init pid
# after this long has lost libvirtd's init event for good (InitUnknown).
INIT_LOST_SECONDS = 5.0
LIBVIRT_LOG_DIR = Path("/var/log/libvirt/lxc")


class InitUnknown(GuestStartError):
    """The guest's init runs but libvirtd will never learn its pid: the controller
    sends the init event to the first client of its monitor socket only, and at load
    a start now and then ends with libvirtd's monitor not that client (the controller's
    log shows a client gone at once: "End of file while reading data"). Every call
    needing the init pid (namespaces, the shutdown signal) fails for that domain."""


INIT_ATTEMPTS = 3   # createXML tries when libvirtd lost the init event (InitUnknown)


def create(conn, xml: str):
    """The running domain of ``xml``, its init pid known to libvirtd; a start whose
    init event libvirtd lost is destroyed and made again, up to INIT_ATTEMPTS."""
    for attempt in range(1, INIT_ATTEMPTS + 1):
        dom = conn.createXML(xml, 0)
        try:   # the last try waits the whole timeout: libvirtd may be slow, not deaf
            wait_for_init(dom, lost_after=INIT_LOST_SECONDS if attempt < INIT_ATTEMPTS else INIT_TIMEOUT_SECONDS)
            return dom
        except InitUnknown as e:
            if attempt == INIT_ATTEMPTS:
                raise
            log.warning("starting %s again (attempt %d): %s", dom.name(), attempt + 1, e)
            dom.destroy()
    raise AssertionError("unreachable")


def wait_for_init(dom, timeout: float = INIT_TIMEOUT_SECONDS, lost_after: float = INIT_LOST_SECONDS) -> None:
    """createXML returns before libvirt knows the init pid; exec needs it."""
    import libvirt
    import libvirt_lxc

    started = time.monotonic()
    while True:
        try:
            for fd in libvirt_lxc.lxcOpenNamespace(dom, 0):
                os.close(fd)
            return
        except libvirt.libvirtError as e:
            if not dom.isActive():
                raise GuestStartError(f"guest init exited at once: {log_tail(dom.name())}") from e
            waited = time.monotonic() - started
            if waited > lost_after and _init_running(dom):
                raise InitUnknown(f"libvirtd has no init pid for {dom.name()} after {waited:.0f}s though its "
                                  f"init runs: {log_tail(dom.name(), 2)}") from e
            if waited > timeout:
                raise GuestStartError(f"guest init did not come up within {timeout:.0f}s") from e
        time.sleep(0.01)


def _init_running(dom) -> bool:
    try:
        return init_pid(dom) is not None
    except (OSError, ValueError):
        return False


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
