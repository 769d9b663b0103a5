"""Red-team regression tests (round 3, guest isolation after the sec-guest merge).

Each test is an attack run as root inside a real guest (``driver.exec``) and
fails while the attack works. Own bridge and subnet (``aprd3``,
10.231.0.0/24); run under ``flock /tmp/appliance-lxc.lock``.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("libvirt LXC guests need root (run the tests as root)", allow_module_level=True)

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")

from guest_support import build_probe, guest_maker, lxc_driver, run  # noqa: E402

BRIDGE = "aprd3"
SUBNET = "10.231.0.0/24"
_ips = iter(f"10.231.0.{n}" for n in range(10, 250))
PROBE_SRC = Path(__file__).parent / "probe" / "redteam3.c"
IN_CLOEXEC = 0o2000000


@pytest.fixture(scope="module")
def probe_binary(tmp_path_factory) -> bytes:
    return build_probe(PROBE_SRC, tmp_path_factory.mktemp("rd3probe") / "rd3")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    with lxc_driver(tmp_path_factory.mktemp("redteam3"), BRIDGE, SUBNET) as drv:
        yield drv


@pytest.fixture
def make_guest(driver, probe_binary):
    with guest_maker(driver, _ips, "rd", probe_binary, "/usr/local/bin/rd3") as make:
        yield make


def _host_inotify_init() -> tuple[int, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(IN_CLOEXEC)
    err = ctypes.get_errno()
    if fd >= 0:
        os.close(fd)
    return fd, err


# -- per-user kernel counters shared with host root (ucounts) -------------------------


def test_guest_cannot_use_up_host_roots_inotify_instances(driver, make_guest):
    """The guest's user namespace is created by libvirt as host uid 0: every
    per-user namespace counter (inotify instances/watches, fanotify groups,
    user/net/mnt/... namespaces) of every uid in the guest is also counted,
    one level up, against host uid 0 in the initial namespace, whose limit is
    the host-wide sysctl (fs.inotify.max_user_instances = 128 here). A guest
    that opens 128 inotify instances leaves none to host root (libvirtd,
    systemd, the appliance) and none to any other guest. The probe uses 8
    processes (32,000 instances at most): raising the host-wide sysctl a
    little is no fix, the guest's total must be bounded on its own."""
    spec = make_guest()
    other = make_guest()
    assert _host_inotify_init()[0] >= 0   # the host can before the attack
    result = {}
    hog = threading.Thread(target=lambda: result.setdefault(
        "r", driver.exec(spec.id, ["rd3", "inotify", "32000", "4", "8"], timeout=30)))
    hog.start()
    try:
        time.sleep(2.0)                   # the guest holds its instances for 4 s
        host_fd, host_err = _host_inotify_init()
        _, other_out = run(driver, other, "rd3 inotify 1 0")
    finally:
        hog.join()
    guest_out = (result["r"].stdout + result["r"].stderr).decode(errors="replace").strip()
    print(f"\nguest: {guest_out}; host inotify_init1: {host_fd} ({os.strerror(host_err) if host_fd < 0 else 'ok'});"
          f" other guest: {other_out.strip()}")
    assert host_fd >= 0, f"host root could not create an inotify instance while a guest held its own ({guest_out})"
    assert "made=1 " in other_out, f"another tenant's guest could not create an inotify instance: {other_out}"


# -- cgroup view ------------------------------------------------------------------------


def _host_top_cgroups(hierarchy: str) -> set[str]:
    base = Path("/sys/fs/cgroup", hierarchy)
    return {p.name for p in base.iterdir() if p.is_dir()} if base.is_dir() else set()


@pytest.mark.parametrize("fstype,opts,hierarchy", [("cgroup2", "", "unified"),
                                                   ("cgroup", "none,name=systemd", "systemd")])
def test_guest_cannot_mount_the_hosts_cgroup_root(driver, make_guest, fstype, opts, hierarchy):
    """The init's ``unshare --cgroup`` roots the guest's cgroup namespace at
    its own cgroups only where the guest *has* one (the v1 controllers
    libvirt manages, and pids). In the unified (cgroup2) and name=systemd
    hierarchies no one moves the guest: its namespace root there is the
    host's root cgroup, and guest root mounting them sees the host's whole
    tree (host cgroup names, host-wide pressure/cpu stats, other tenants'
    cgroups wherever a host manager puts them)."""
    host_top = _host_top_cgroups(hierarchy)
    if not host_top:
        pytest.fail(f"the host has no {hierarchy} hierarchy with children to compare with")
    spec = make_guest()
    o = f"-o {opts} " if opts else ""
    code, out = run(driver, spec, f"mkdir -p /tmp/cg && mount -t {fstype} {o}none /tmp/cg && "
                                  "for d in /tmp/cg/*/; do basename \"$d\"; done; umount /tmp/cg")
    seen = {line.strip() for line in out.splitlines() if line.strip()}
    print(f"\n{hierarchy}: guest mount rc={code}, sees {sorted(seen)}; host top-level {sorted(host_top)}")
    assert not (seen & host_top), f"the guest mounted the host's {hierarchy} root: sees {sorted(seen & host_top)}"


# -- host-side path resolution of guest-controlled names -----------------------------


def test_ready_marker_is_not_resolved_against_the_hosts_root(driver, make_guest, tmp_path):
    """``guestinit.wait_ready`` (run before every first ``exec``/terminal of
    a guest the core has not seen ready, e.g. after a core restart) checks
    ``/proc/<init>/root/run/appliance-init.ready`` with a plain ``stat`` as
    host root. Guest root replaces the marker with an absolute symlink: the
    kernel resolves the target against the *host's* root, so the wait (0 s or
    5 s, visible as the delay of the tenant's next terminal) tells the guest
    whether a host path exists (e.g. ``/var/lib/appliance/volumes/<id>.img``
    of other tenants)."""
    from appliance.drivers.lxc import init as guestinit

    spec = make_guest()
    host_only = tmp_path / "host-only-file"
    host_only.write_text("x")
    missing = tmp_path / "missing-file"
    pid = driver.init_pid(spec.id)
    answers = {}
    for target in (host_only, missing):
        code, out = run(driver, spec, f"rm -f {guestinit.READY_FILE} && ln -s {target} {guestinit.READY_FILE} "
                                      f"&& test ! -e {target} && echo planted")
        assert code == 0 and "planted" in out, out   # the target does not exist in the guest
        answers[target.name] = guestinit.wait_ready(pid, timeout=0.3)
    print(f"\nwait_ready through a guest symlink: {answers}")
    assert answers["host-only-file"] == answers["missing-file"], \
        f"the host followed a guest symlink to its own filesystem: {answers}"


# -- socket buffers outside the TCP/UDP accounting --------------------------------------


def _memcg_usage(driver, spec) -> int:
    for line in Path(f"/proc/{driver.init_pid(spec.id)}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/memory{path}/memory.usage_in_bytes").read_text())
    pytest.fail("the guest has no v1 memory cgroup")


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def test_packet_socket_queues_are_charged_to_the_guest(driver, make_guest):
    """``memory.kmem.tcp.limit_in_bytes`` charges TCP and UDP buffers, but
    AF_PACKET (and raw IP) sockets queue clones of every loopback packet with
    no socket-memory accounting, and skbs are not kmem-charged: guest root
    (CAP_NET_RAW in its netns, SO_RCVBUF up to 2 * rmem_max) pins host memory per packet socket,
    4096 sockets per process, 1024 processes. Here 900 sockets in a 64 MiB
    guest."""
    spec = make_guest(memory_mb=64)
    limit = 64 * 1024 * 1024
    u0, a0 = _memcg_usage(driver, spec), _mem_available()
    nsock = 900
    hog = threading.Thread(target=lambda: run(
        driver, spec, f"rd3 pktq {nsock} 6 50 >/tmp/pktq.out & echo $! > /tmp/pktq.pid; wait", timeout=60))
    hog.start()
    try:
        # Until the probe says it is done making sockets (it stops at its first error), or is gone.
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and hog.is_alive():
            if "made=" in run(driver, spec, "cat /tmp/pktq.out 2>/dev/null")[1]:
                break
            time.sleep(0.5)
        time.sleep(1)
        report = run(driver, spec, "cat /tmp/pktq.out 2>/dev/null")[1].strip() or "no report (killed?)"
        _, out = run(driver, spec, "awk 'NR>1{s+=$7; n++} END{print s+0, n+0}' /proc/net/packet")
        queued, socks = (int(x) for x in out.split())
        u1, a1 = _memcg_usage(driver, spec), _mem_available()
    finally:
        a1 = _mem_available()
        run(driver, spec, "kill $(cat /tmp/pktq.pid)")
        hog.join()
        time.sleep(0.5)
        a2 = _mem_available()
    print(f"\nprobe: {report}; {socks} packet sockets queue {queued / 2**20:.0f} MiB; guest memcg {u0 / 2**20:.0f} -> "
          f"{u1 / 2**20:.0f} MiB (limit 64); host MemAvailable -{(a0 - a1) / 2**20:.0f} MiB while held, "
          f"+{(a2 - a1) / 2**20:.0f} MiB when the probe was killed (other helpers add noise)")
    assert queued <= limit or u1 - u0 >= queued // 2, \
        f"{queued / 2**20:.0f} MiB of packet-socket queues held outside the guest's 64 MiB memory limit"


def _host_mq_open() -> tuple[bool, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mq_open.restype = ctypes.c_int
    name = f"/rd3-host-{os.getpid()}".encode()
    q = libc.mq_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600, None)
    err = ctypes.get_errno()
    if q >= 0:
        libc.mq_close(q)
        libc.mq_unlink(name)
    return q >= 0, err


def test_guest_cannot_use_up_host_roots_message_queue_bytes(driver, make_guest):
    """Same shared counter, rlimit kind: RLIMIT_MSGQUEUE (800 KiB) of every
    guest uid is also counted against host uid 0's; ten default POSIX message
    queues in one guest leave none to host root or to any other guest."""
    spec = make_guest()
    other = make_guest()
    assert _host_mq_open()[0]
    result = {}
    hog = threading.Thread(target=lambda: result.setdefault(
        "r", driver.exec(spec.id, ["rd3", "mq", "1000", "4"], timeout=30)))
    hog.start()
    try:
        time.sleep(2.0)
        host_ok, host_err = _host_mq_open()
        _, other_out = run(driver, other, "rd3 mq 1 0")
    finally:
        hog.join()
    guest_out = (result["r"].stdout + result["r"].stderr).decode(errors="replace").strip()
    print(f"\nguest: {guest_out}; host mq_open: {'ok' if host_ok else os.strerror(host_err)}; "
          f"other guest: {other_out.strip()}")
    assert host_ok, f"host root could not open a message queue while a guest held its own ({guest_out})"
    assert "made=1 " in other_out, f"another tenant's guest could not open a message queue: {other_out}"
