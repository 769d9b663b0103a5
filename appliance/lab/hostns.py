"""One long-lived mount namespace per lab host, in which that host's
libvirtd and appliance daemons run (the measured recipe of
/work/shared/design/ARCHITECTURE.md, "A three-host lab on one machine").

The holder is ``ip netns exec <host> unshare -m --propagation slave sh -c
SCRIPT``; the script mounts what this host must not share with the machine
and execs ``sleep infinity``, so the holder's pid names the namespaces
(``nsenter -t PID -m -n``) until ``down`` kills it:

- ``ip netns exec`` remounts /sys, which drops the cgroup mounts: a tmpfs on
  /sys/fs/cgroup and the v1 controllers again (no cgroup2: libvirt 9's LXC
  driver fails on a v2 mount next to v1 ones);
- a private tmpfs on /run: libvirtd's socket, pid file (/run/libvirtd.pid,
  which the appliance's host code reads), its running-domain XML, and the
  guests' root mounts (/run/appliance-guests) are this host's alone;
- private /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt and a copy
  of /etc/libvirt (without qemu, autostart and domain XML).
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from appliance.host import libvirtd as host_libvirtd
from appliance.lab.topology import LabHost

LIBVIRT_DIRS = ("/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt", "/etc/libvirt")


class LabHostError(RuntimeError):
    pass


def cgroup_v1_controllers(mounts: str | None = None) -> list[str]:
    """The machine's cgroup v1 hierarchies as mount options (``cpu``, ``name=systemd``...)."""
    text = mounts if mounts is not None else Path("/proc/mounts").read_text()
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup":
            options = [o for o in fields[3].split(",") if o not in ("rw", "ro", "relatime", "nosuid", "nodev",
                                                                  "noexec", "clone_children")]
            found.append(",".join(options))
    return found


def holder_script(h: LabHost, controllers: list[str]) -> str:
    lines = ["set -e", "mount -t tmpfs -o mode=755 cgroup_root /sys/fs/cgroup"]
    for options in controllers:
        directory = "/sys/fs/cgroup/" + options.split(",")[0].removeprefix("name=")
        lines.append(f"mkdir -p {directory} && mount -t cgroup -o {shlex.quote(options)} cgroup {directory}")
    lines.append("mount -t tmpfs -o mode=755 lab_run /run && mkdir -p /run/lock /run/libvirt")
    for target in LIBVIRT_DIRS:
        private = h.libvirt_dir / target.strip("/").replace("/", "_")
        lines.append(f"mount --bind {shlex.quote(str(private))} {target}")
    lines.append("libvirtd -d -p /run/libvirtd.pid")
    lines.append("exec sleep infinity")
    return "\n".join(lines) + "\n"


def prepare_dirs(h: LabHost) -> None:
    for target in LIBVIRT_DIRS:
        Path(target).mkdir(parents=True, exist_ok=True)   # bind targets must exist
        private = h.libvirt_dir / target.strip("/").replace("/", "_")
        if target == "/etc/libvirt":
            if private.exists():
                shutil.rmtree(private)
            shutil.copytree(target, private, symlinks=True,
                            ignore=lambda d, names: [n for n in names if n in ("qemu", "autostart")
                                                     or (d.endswith("lxc") and n.endswith(".xml"))])
        else:
            private.mkdir(parents=True, exist_ok=True)
    (h.libvirt_dir / "var_lib_libvirt" / "lxc").mkdir(exist_ok=True)
    (h.libvirt_dir / "var_log_libvirt" / "lxc").mkdir(exist_ok=True)


def start_holder(h: LabHost, log: Path) -> int:
    prepare_dirs(h)
    host_libvirtd.ensure_qemu_user()   # on a machine where `appliance up` never ran, libvirtd exits without it
    script = holder_script(h, cgroup_v1_controllers())
    with open(log, "ab") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", h.netns, "unshare", "-m", "--propagation", "slave",
                                 "sh", "-c", script], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    h.holder_pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def enter(pid: int) -> list[str]:
    """The argv prefix that runs a command in the host's network and mount namespaces."""
    return ["nsenter", "-t", str(pid), "-m", "-n", "--"]


def wait_libvirtd(h: LabHost, pid: int, timeout: float = 20.0) -> float:
    """Seconds until the host's libvirtd answers on lxc:/// in its namespace."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not Path(f"/proc/{pid}").exists():
            raise LabHostError(f"{h.name}: the namespace holder exited; see {h.dir / 'holder.log'}")
        probe = subprocess.run([*enter(pid), "virsh", "-q", "-c", "lxc:///", "version"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            return time.monotonic() - started
        time.sleep(0.1)
    raise LabHostError(f"{h.name}: libvirtd does not answer after {timeout:.0f}s")


def holder_pid(h: LabHost) -> int | None:
    try:
        pid = int(h.holder_pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if cmdline.startswith(b"sleep\0infinity") else None


def libvirtd_pid(holder: int) -> int | None:
    """libvirtd's pid from its pid file in the holder's private /run."""
    try:
        pid = int(Path(f"/proc/{holder}/root/run/libvirtd.pid").read_text())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "libvirtd" else None


def terminate(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def appliance(h: LabHost, holder: int, command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``appliance --config <host's> COMMAND`` inside the host's namespaces."""
    argv = [*enter(holder), sys.executable, "-m", "appliance.cli", "--config", str(h.config_file), command]
    # the daemons run this very checkout's code, whatever the venv's editable install points at
    code = str(Path(__file__).resolve().parents[2])
    # the host's settings come from its file alone: `make` exports APPLIANCE_DATA_DIR, and any
    # APPLIANCE_* of the caller would otherwise override every host's file
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=code,
                          env={**inherited, "PYTHONPATH": code, **(env or {})})
