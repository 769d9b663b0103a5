"""A throwaway Debian 12 host that Ansible reaches over real SSH.

The host is a debootstrapped root filesystem, built once and cached outside
the repository, with every Debian package the playbook installs baked in (the
host has no network, like an air-gapped server whose packages are already
there). Each test session runs a copy-on-write overlay of it (the cache stays
pristine) in its own network namespace, joined to this machine by a veth pair
whose two addresses the test creates: the only place test traffic goes.

Two ways to run it:

  * "systemd": `systemd-nspawn --boot`, so systemd is PID 1 of the host and
    the playbook's units are really enabled, started and restarted. Works
    here even though this machine itself has no systemd.
  * "offline" (fallback when nspawn is missing or cannot boot): sshd as the
    first process of fresh mount/PID/UTS namespaces, with SYSTEMD_OFFLINE=1
    passed to every session so `systemctl enable` works offline and Ansible's
    systemd module skips starting units with a warning.

Stopping the host ends every process in it and the mounts with it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

# Bump when the way the root filesystem is built changes, to rebuild caches.
# 2: PostgreSQL baked in (the cluster test's database host), not started at boot.
RECIPE = 2
SUITE = "bookworm"
MIRROR = os.environ.get("APPLIANCE_TESTHOST_MIRROR", "http://deb.debian.org/debian")
CACHE_DIR = Path(os.environ.get("APPLIANCE_TESTHOST_CACHE", "/var/cache/appliance/testhost"))

# What any Debian 12 server has before the playbook runs: an SSH server,
# sudo, Python for Ansible (python3-apt for its apt module), systemd.
BASE_PACKAGES = ["openssh-server", "sudo", "python3", "python3-apt", "systemd", "ca-certificates"]

SSHD_CONFIG = """\
# throwaway install-test host
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""


def log(msg: str) -> None:
    print(f"[testhost] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


@contextmanager
def locked(path: Path):
    """Serialise cache builds between concurrent test sessions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def playbook_packages(repo: Path) -> list[str]:
    """The Debian packages the playbook installs, read from the roles' defaults
    (every host's, and the database host's of a cluster)."""
    roles = repo / "playbooks/roles"
    every = yaml.safe_load((roles / "appliance_packages/defaults/main.yml").read_text())
    database = yaml.safe_load((roles / "appliance_db/defaults/main.yml").read_text())
    return list(every["appliance_packages_list"]) + list(database["appliance_db_packages"])


def rootfs(repo: Path) -> Path:
    """The cached root filesystem for the playbook's current package list; built if missing."""
    packages = sorted(set(BASE_PACKAGES + playbook_packages(repo)))
    key = hashlib.sha256(json.dumps([RECIPE, SUITE, packages]).encode()).hexdigest()[:16]
    root = CACHE_DIR / f"rootfs-{key}"
    with locked(CACHE_DIR / ".rootfs.lock"):
        if not (root / ".testhost-complete").exists():
            _build_rootfs(root, packages)
        (root / ".testhost-complete").touch()
        # Roots for older package lists are dead weight (~600 MB each); one
        # used in the last day may still serve another checkout (a branch).
        for old in CACHE_DIR.glob("rootfs-*"):
            if old.is_dir() and old != root and _unused_for_a_day(old):
                shutil.rmtree(old, ignore_errors=True)
    return root


def _unused_for_a_day(root: Path) -> bool:
    try:
        return time.time() - (root / ".testhost-complete").stat().st_mtime > 86400
    except FileNotFoundError:
        return True


def _build_rootfs(root: Path, packages: list[str]) -> None:
    started = time.monotonic()
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    log(f"building {root} (debootstrap {SUITE} + {len(packages)} packages; a few minutes, once)")
    logfile = CACHE_DIR / f"{root.name}.build.log"
    with open(logfile, "w") as out:
        # Each step runs in a private mount namespace so nothing stays mounted
        # if it dies half-way.
        run(["unshare", "--mount", "--propagation", "private",
             "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             SUITE, str(tmp), MIRROR], stdout=out, stderr=subprocess.STDOUT)
        (tmp / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
        (tmp / "usr/sbin/policy-rc.d").chmod(0o755)
        shutil.copy("/etc/resolv.conf", tmp / "etc/resolv.conf")
        script = f"""
            set -e
            R={shlex.quote(str(tmp))}
            mount -t proc proc "$R/proc"
            mount -t sysfs sysfs "$R/sys"
            mount --rbind /dev "$R/dev"
            chroot "$R" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
                apt-get install -y -q --no-install-recommends {' '.join(map(shlex.quote, packages))}
            chroot "$R" apt-get clean
            # Only the cluster's database host runs PostgreSQL: the playbook enables it there.
            chroot "$R" systemctl disable postgresql.service
        """
        run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=out, stderr=subprocess.STDOUT)
    (tmp / "usr/sbin/policy-rc.d").unlink()
    (tmp / "etc/resolv.conf").write_text("")
    for key in (tmp / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tmp / "etc/ssh/sshd_config.d/testhost.conf").write_text(SSHD_CONFIG)
    (tmp / "etc/hostname").write_text("testhost\n")
    (tmp / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 testhost\n")
    (tmp / ".testhost-complete").write_text(json.dumps({"packages": packages}) + "\n")
    tmp.rename(root)
    log(f"built {root} in {time.monotonic() - started:.0f} s")


# Subnets handed out by this session: the cluster's LAN and the single host start in
# threads at once, each before its address is on an interface.
_reserved: set[str] = set()
_reserved_lock = threading.Lock()


def _free_subnet() -> str:
    """A /30 (as 'a.b.c') not on any interface of this machine nor handed out already."""
    with _reserved_lock:
        used = run(["ip", "-4", "-o", "address", "show"], capture_output=True, text=True).stdout
        for i in range(256):
            third = (os.getpid() + i) % 256
            prefix = f"10.213.{third}"
            if f" {prefix}." not in used and prefix not in _reserved:
                _reserved.add(prefix)
                return prefix
    raise RuntimeError("no free 10.213.x.0/30 subnet")


# The install tests run beside the rest of the suite (background.py): their hosts and
# playbook runs share a cpu cgroup with the least weight, so they take the CPU the rest
# leaves idle and slow no other test. (A nice value would not do: with autogroups each
# session - every SSH login, every service of a host - competes as an equal of the whole
# test session, whatever its processes' nice.) The cgroup v1 cpu controller, as here;
# elsewhere nothing is moved.
BACKGROUND_CPU = Path("/sys/fs/cgroup/cpu/appliance-install-tests")
BACKGROUND_CPU_SHARES = 2   # of the default 1024


def to_background_cpu(pid: int) -> None:
    """Move *pid* (and what it starts from now on) into the background cpu cgroup."""
    if not BACKGROUND_CPU.parent.joinpath("cpu.shares").exists():
        return
    BACKGROUND_CPU.mkdir(exist_ok=True)
    (BACKGROUND_CPU / "cpu.shares").write_text(f"{BACKGROUND_CPU_SHARES}\n")
    (BACKGROUND_CPU / "cgroup.procs").write_text(f"{pid}\n")


# Every host started and not yet stopped: the session's end stops those left (stop_every_host).
_live: set[TestHost] = set()


def stop_every_host() -> None:
    for host in list(_live):
        host.stop()


class Lan:
    """The network the hosts of a cluster test share, as a real cluster's hosts
    share a LAN: a bridge in a namespace of its own (so nothing of this
    machine's own firewall sees the hosts' traffic), joined to this machine by
    one veth pair whose address (.1) the tests and Ansible use."""

    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.netns = f"aplan{tag}"
        self.veth = f"aplv{tag}"
        self.prefix = _free_subnet()
        self.control_address = f"{self.prefix}.1"

    def address(self, index: int) -> str:
        return f"{self.prefix}.{10 + index}"

    def start(self) -> Lan:
        try:
            run(["ip", "netns", "add", self.netns])
            run(["ip", "-n", self.netns, "link", "add", "br0", "type", "bridge"])
            run(["ip", "-n", self.netns, "link", "set", "br0", "up"])
            run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "ctl", "netns", self.netns])
            run(["ip", "-n", self.netns, "link", "set", "dev", "ctl", "master", "br0", "up"])
            run(["ip", "address", "add", f"{self.control_address}/24", "dev", self.veth])
            run(["ip", "link", "set", self.veth, "up"])
        except BaseException:
            self.stop()
            raise
        return self

    def join(self, netns: str, index: int) -> None:
        """Plug the host namespace *netns* into the bridge as its eth0."""
        port = f"h{index}"
        run(["ip", "link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", port, "netns", self.netns])
        run(["ip", "-n", self.netns, "link", "set", "dev", port, "master", "br0", "up"])
        run(["ip", "-n", netns, "address", "add", f"{self.address(index)}/24", "dev", "eth0"])

    def stop(self) -> None:
        run(["ip", "link", "delete", self.veth], check=False, stderr=subprocess.DEVNULL)
        run(["ip", "netns", "delete", self.netns], check=False, stderr=subprocess.DEVNULL)


class TestHost:
    """One running throwaway host. Use as a context manager. With a *lan*,
    the host is its *index*-th host (a cluster test), else it has a veth pair
    of its own to this machine."""

    def __init__(self, root: Path, name: str = "testhost", mode: str = "systemd",
                 lan: Lan | None = None, index: int = 0):
        self.lower = root
        self.mode = mode
        self.name = name
        self.lan, self.index = lan, index
        self.workdir = Path(tempfile.mkdtemp(prefix="appliance-testhost-", dir="/var/tmp"))
        tag = f"{os.getpid() % 100000}"
        self.netns = f"aptest{tag}" + (f"-{index}" if lan else "")
        self.veth = f"aptv{tag}"
        if lan:
            self.control_address, self.address = lan.control_address, lan.address(index)
        else:
            prefix = _free_subnet()
            self.control_address = f"{prefix}.1"
            self.address = f"{prefix}.2"
        self.key = self.workdir / "id_ed25519"
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Lock()

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> TestHost:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def close(self) -> None:
        self.stop()

    def start(self) -> None:
        _live.add(self)
        upper, work, merged = (self.workdir / d for d in ("upper", "work", "root"))
        for d in (upper, work, merged):
            d.mkdir()
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "install-test", "-f", str(self.key)])
        ssh_dir = upper / "root/.ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        (ssh_dir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        (upper / "root").chmod(0o700)
        # Fresh host keys for every host, and the sshd settings of this mode.
        (upper / "etc/ssh/sshd_config.d").mkdir(parents=True)
        run(["ssh-keygen", "-A", "-f", str(upper)], stdout=subprocess.DEVNULL)
        offline = "SetEnv SYSTEMD_OFFLINE=1\nUsePAM no\n" if self.mode == "offline" else ""
        (upper / "etc/ssh/sshd_config.d/testhost.conf").write_text(SSHD_CONFIG + offline)

        run(["ip", "netns", "add", self.netns])
        if self.lan:
            self.lan.join(self.netns, self.index)
        else:
            run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns])
            run(["ip", "address", "add", f"{self.control_address}/30", "dev", self.veth])
            run(["ip", "link", "set", self.veth, "up"])
            run(["ip", "-n", self.netns, "address", "add", f"{self.address}/30", "dev", "eth0"])
        run(["ip", "-n", self.netns, "link", "set", "eth0", "up"])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])

        r = shlex.quote(str(merged))
        overlay = (f"mount -t overlay overlay -o lowerdir={shlex.quote(str(self.lower))},"
                   f"upperdir={shlex.quote(str(upper))},workdir={shlex.quote(str(work))} {r}")
        self.log_path = self.workdir / "host.log"
        if self.mode == "systemd":
            # nspawn needs no systemd on this machine with --register=no --keep-unit.
            # The network namespace is the test's own, so the host gets
            # CAP_NET_ADMIN and a writable /proc/sys/net in it, as a real host has.
            # Each host in a cgroup of its own (see cgroup_dirs).
            enter = "".join(f"mkdir -p {shlex.quote(str(d))}; echo $$ > {shlex.quote(str(d))}/cgroup.procs; "
                            for d in self.cgroup_dirs)
            command = [
                "unshare", "--mount", "--propagation", "private", "sh", "-c",
                f"set -e; {overlay}; {enter}SYSTEMD_NSPAWN_API_VFS_WRITABLE=network "
                f"exec systemd-nspawn --quiet --boot --register=no --keep-unit "
                f"--capability=CAP_NET_ADMIN "
                f"--console=passive --machine={shlex.quote(self.name)} "
                f"--network-namespace-path=/run/netns/{self.netns} -D {r}",
            ]
        else:
            command = [
                "ip", "netns", "exec", self.netns,
                "unshare", "--mount", "--propagation", "private", "--uts", "--pid", "--fork",
                "--kill-child=SIGKILL", "sh", "-c", f"""
                set -e
                {overlay}
                mount -t proc proc {r}/proc
                mount -t sysfs sysfs {r}/sys
                mount --rbind /dev {r}/dev
                mount -t tmpfs -o mode=0755 tmpfs {r}/run
                mkdir -p {r}/run/sshd
                hostname {shlex.quote(self.name)}
                exec chroot {r} /usr/sbin/sshd -D -e
            """]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        to_background_cpu(self.proc.pid)   # before it forks the host (it mounts first)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"test host exited: {self.log_path.read_text()}")
            try:
                with socket.create_connection((self.address, 22), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not answer: {self.log_path.read_text()}")
            time.sleep(0.3)
        self._start_ssh_master()
        log(f"{self.name} up at {self.address} ({self.mode}, netns {self.netns}, root {merged})")

    def _start_ssh_master(self) -> None:
        """One SSH connection the tests' many `ssh()` calls share (a handshake each costs
        ~0.3-1 s on a busy machine); in the background (-f), uncaptured (a master holding a
        captured pipe hangs the call that made it). Without it each call connects anew."""
        run(["ssh", "-i", str(self.key), *self.ssh_options, "-o", "ControlMaster=yes",
             "-o", f"ControlPath={self.control_path}", "-o", "ControlPersist=yes",
             "-f", "-N", f"root@{self.address}"],
            check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=60)

    @property
    def cgroup_dirs(self) -> list[Path]:
        """This host's own cgroups, one per hierarchy systemd uses here. With --keep-unit nspawn
        puts the host in "payload" below its own cgroup: hosts started from one cgroup shared
        that tree, and two hosts' systemd starting a unit of the same name removed each other's
        cgroup ("Failed to attach to cgroup /system.slice/appliance-network.service")."""
        hybrid = [h for h in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified") if os.path.isdir(h)]
        return [Path(top, self.workdir.name) for top in hybrid or ["/sys/fs/cgroup"]]

    def _kill_cgroups(self) -> None:
        """SIGKILL every process in the host's cgroup (cgroup v2's cgroup.kill; without it,
        the SIGTERM that follows powers the host off cleanly)."""
        for kill in (top / "cgroup.kill" for top in self.cgroup_dirs):
            if kill.exists():
                kill.write_text("1")
                return

    @property
    def control_path(self) -> Path:
        return self.workdir / "ssh-master"

    def stop(self) -> None:
        with self._stopping:
            self._stop()
        _live.discard(self)

    def _stop(self) -> None:
        if self.control_path.exists():
            run(["ssh", "-o", f"ControlPath={self.control_path}", "-O", "exit", f"root@{self.address}"],
                check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=30)
        if self.proc is not None:
            # systemd mode: the host is thrown away, so every process of it, nspawn included,
            # is SIGKILLed at once (a clean power-off waited ~30 s on SeaweedFS's stops).
            # offline mode: unshare's death SIGKILLs sshd, PID 1 of the host's
            # PID namespace, and with it every process of the host. The mounts
            # go with the mount namespace.
            if self.mode == "systemd":
                self._kill_cgroups()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if not self.lan:
            run(["ip", "link", "delete", self.veth], check=False, stderr=subprocess.DEVNULL)
        run(["ip", "netns", "delete", self.netns], check=False, stderr=subprocess.DEVNULL)
        if self.mode == "systemd":
            deadline = time.monotonic() + 10   # a host killed at the timeout empties its cgroups just after
            for top in self.cgroup_dirs:   # innermost first
                for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                    while d.is_dir():
                        try:
                            d.rmdir()
                        except OSError as e:   # still busy: harmless here, but say so
                            if time.monotonic() > deadline:
                                log(f"cgroup {d} not removed: {e}")
                                break
                            time.sleep(0.2)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- access -----------------------------------------------------------------
    @property
    def ssh_options(self) -> list[str]:
        return ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]

    def ssh(self, command: str, *, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a shell command on the host as root, over SSH."""
        proc = subprocess.run(
            ["ssh", "-i", str(self.key), *self.ssh_options, "-o", "ControlMaster=no",
             "-o", f"ControlPath={self.control_path}", f"root@{self.address}", command],
            input=input, capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"on test host: {command!r} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def connection_vars(self) -> dict:
        """How Ansible reaches this host."""
        return {
            "ansible_host": self.address,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": " ".join(self.ssh_options),
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def inventory(self, host_vars: dict) -> Path:
        """An inventory file with this host in the `appliance` group."""
        path = self.workdir / "inventory.yml"
        host = {**self.connection_vars(), **host_vars}
        path.write_text(yaml.safe_dump({"appliance": {"hosts": {self.name: host}}}))
        return path
