"""Host preparation for libvirt LXC guests: daemons, mount propagation, sysctls.

``ensure_libvirtd()`` is idempotent and cheap when libvirtd already answers on
``lxc:///``. Without systemd as PID 1 it starts ``virtlogd -d`` and
``libvirtd -d`` itself. On hosts that mount cgroup2 at
``/sys/fs/cgroup/unified`` next to the v1 controllers (libvirt 9.0 LXC fails
with "Unable to create directory /sys/fs/cgroup/unified"), libvirtd is started
in its own mount namespace without that mount::

    unshare -m --propagation slave sh -c 'umount /sys/fs/cgroup/unified; exec libvirtd -d'

Guest roots and volumes are mounted on the host *after* libvirtd starts, so
``/`` is made recursively shared first (what systemd does on every boot):
the slave namespace then receives those mounts and their unmounts.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

from appliance import procs

LXC_URI = "lxc:///"
UNIFIED_CGROUP = "/sys/fs/cgroup/unified"
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
LIBVIRTD_PIDFILE = Path("/run/libvirtd.pid")
QEMU_DRIVER_GLOB = "/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so"
QEMU_USER = "libvirt-qemu"


class HostSetupError(RuntimeError):
    pass


def ensure_libvirtd(timeout: float = 20.0) -> None:
    """Make sure libvirtd answers on lxc:/// (starting daemons if needed)."""
    if _lxc_answers():
        check_mount_propagation()
        return
    if _has_systemd():
        _run(["systemctl", "start", "virtlogd", "libvirtd"])
    else:
        make_root_shared()
        for d in ("/var/log/libvirt/lxc", "/run/libvirt", "/var/lib/libvirt/lxc"):
            os.makedirs(d, exist_ok=True)
        if not VIRTLOGD_SOCKET.exists() or procs.pid_from_file(Path("/run/virtlogd.pid")) is None:
            _run(["virtlogd", "-d"])
        if libvirtd_pid() is None:
            ensure_qemu_user()
            _start_libvirtd()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _lxc_answers():
            check_mount_propagation()
            return
        time.sleep(0.1)
    raise HostSetupError(f"libvirtd does not answer on {LXC_URI} after {timeout:.0f}s")


def check_mount_propagation() -> None:
    """Guest roots are mounted on the host after libvirtd started: when
    libvirtd has a mount namespace of its own, its / must receive our mounts."""
    pid = libvirtd_pid()
    if pid is None:
        return
    try:
        if os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            return
        fields = _root_mountinfo_fields(f"/proc/{pid}/mountinfo")
    except OSError:
        return
    if "master:" not in fields and "shared:" not in fields:
        raise HostSetupError(
            "libvirtd runs in a mount namespace that does not receive host mounts; "
            "restart it after `mount --make-rshared /` (guest roots are mounted after libvirtd starts: "
            "its namespace must receive them)")


def libvirtd_pid() -> int | None:
    return procs.pid_from_file(LIBVIRTD_PIDFILE)


def make_root_shared() -> None:
    """``mount --make-rshared /`` unless / already propagates."""
    if "shared:" not in _root_mountinfo_fields():
        _run(["mount", "--make-rshared", "/"])


def enable_ip_forwarding() -> None:
    """Guests reach the outside through the host's NAT."""
    write_sysctl("net/ipv4/ip_forward", "1")


def write_sysctl(name: str, value: str) -> None:
    path = Path("/proc/sys") / name
    if path.read_text().strip() != value:
        path.write_text(value + "\n")


def _start_libvirtd() -> None:
    if os.path.ismount(UNIFIED_CGROUP):
        cmd = ["unshare", "-m", "--propagation", "slave", "sh", "-c",
               f"umount {UNIFIED_CGROUP}; exec libvirtd -d"]
    else:
        cmd = ["libvirtd", "-d"]
    _run(cmd)


def ensure_qemu_user() -> None:
    """libvirtd refuses to start at all when its QEMU driver module is installed
    (a Recommends of libvirt-daemon) but the ``libvirt-qemu`` user that
    libvirt-daemon-system would create is missing. Create that system user."""
    if not glob.glob(QEMU_DRIVER_GLOB):
        return
    if subprocess.run(["getent", "passwd", QEMU_USER], stdout=subprocess.DEVNULL).returncode == 0:
        return
    _run(["useradd", "--system", "--user-group", "--no-create-home",
          "--home-dir", "/var/lib/libvirt", "--shell", "/usr/sbin/nologin", QEMU_USER])


def _lxc_answers() -> bool:
    import libvirt
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # no stderr noise
    try:
        conn = libvirt.open(LXC_URI)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def _has_systemd() -> bool:
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def _root_mountinfo_fields(mountinfo: str = "/proc/self/mountinfo") -> str:
    fields = ""
    for line in Path(mountinfo).read_text().splitlines():
        parts = line.split(" - ")[0].split()
        if parts[4] == "/":
            fields = " ".join(parts[6:])  # the last one is on top
    return fields




def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise HostSetupError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stdout.strip()}")
