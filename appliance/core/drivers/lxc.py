"""The libvirt LXC guest driver (``lxc:///``). Contract: ``drivers/base.py``.

Per guest, on the host:

- ``<volumes>/<id>.img`` + ``<volumes>/<id>/``: the persistent volume
  (``core/volumes.py``), mounted while the guest runs. Inside it:
  ``mounts/<mount path>`` (bind-mounted into the guest), ``layer/{upper,work}``
  (the overlayfs layer: the guest's writes outside mount paths count against
  its storage size too, and are wiped on every start) and ``meta/ssh/``
  (the guest's SSH host keys, generated once per guest, never visible inside).
- ``<guests>/<id>/root``: the overlayfs mount (read-only image below, the
  layer above) that becomes the guest's ``/``.
- a transient libvirt domain ``ap-<id>`` (created at start, gone at stop), so
  libvirt holds no state for a stopped guest; its veth is ``ap-<id>``.

Guest init (``/usr/local/sbin/appliance-init``, written at every start) sets
the hostname, starts sshd and reaps orphans; on SIGTERM it forwards TERM to
every process and exits, which ends the guest.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from appliance.core import network
from appliance.core.drivers import nsexec
from appliance.core.drivers.base import (
    ExecResult, GuestDriver, GuestError, GuestNotFound, GuestNotRunning, GuestSpec,
    GuestStartError, GuestState, GuestUsage, PtyProcess,
)
from appliance.core.drivers.domain_xml import BindMount, BridgeInterface, DomainSpec, build_domain_xml
from appliance.core.volumes import VolumeError, VolumeStore

log = logging.getLogger(__name__)

DOMAIN_PREFIX = "ap-"
INIT_PATH = "/usr/local/sbin/appliance-init"
HOST_KEY_TYPES = ("ed25519", "ecdsa")
STOP_GRACE_SECONDS = 3.0
INIT_TIMEOUT_SECONDS = 10.0
LIBVIRT_LOG_DIR = Path("/var/log/libvirt/lxc")
INIT_SCRIPT = """#!/bin/sh
# Written by the appliance at every start of this guest.
exec >/var/log/appliance-init.log 2>&1
hostname -F /etc/hostname
mkdir -p /run/sshd && chmod 0755 /run/sshd
ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A
/usr/sbin/sshd -D &
trap 'kill -TERM -1; sleep 0.3; exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"""


def domain_name(guest_id: str) -> str:
    return DOMAIN_PREFIX + guest_id


def veth_name(guest_id: str) -> str:
    name = DOMAIN_PREFIX + guest_id
    return name if len(name) <= 15 else "ap" + hashlib.sha1(guest_id.encode()).hexdigest()[:13]


class LxcDriver(GuestDriver):
    def __init__(self, *, image_dir: str | os.PathLike, data_dir: str | os.PathLike,
                 bridge: str, subnet: str, uri: str = "lxc:///"):
        from appliance.core.image import image_path

        self.image = image_path(image_dir)
        self.guests_dir = Path(data_dir) / "guests"
        self.volumes = VolumeStore(Path(data_dir) / "volumes")
        self.bridge = bridge
        self.subnet = subnet
        self.uri = uri
        self._conn = None
        self._conn_lock = threading.Lock()

    @classmethod
    def from_config(cls, config) -> "LxcDriver":
        return cls(image_dir=config.image_dir, data_dir=config.data_dir,
                   bridge=config.bridge_name, subnet=config.guest_subnet)

    def prepare_host(self, *, build_image: bool = True) -> None:
        """libvirtd, bridge, NAT and the image: everything a start needs."""
        from appliance.core import host, image

        host.ensure_libvirtd()
        network.ensure_guest_network(self.bridge, self.subnet)
        if build_image:
            image.ensure_image(self.image.parent, log=log.info)

    # -- lifecycle -------------------------------------------------------------

    def spawn(self, spec: GuestSpec) -> None:
        created = self._create_volume(spec)
        try:
            self.start(spec)
        except BaseException:
            if created:
                self.destroy(spec.id)
            raise

    def start(self, spec: GuestSpec) -> None:
        if self._domain(spec.id) is not None:
            return
        if not self.volumes.exists(spec.id):
            raise GuestNotFound(f"guest {spec.id} does not exist")
        try:
            xml = self._prepare_runtime(spec)
            dom = self._connection().createXML(xml, 0)
            self._wait_for_init(dom)
        except BaseException as e:
            self._stop_quietly(spec.id)
            if isinstance(e, GuestError):
                raise
            raise GuestStartError(f"guest {spec.id} could not start: {_message(e)}") from e

    def _wait_for_init(self, dom, timeout: float = INIT_TIMEOUT_SECONDS) -> None:
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
                    raise GuestStartError(f"guest init exited at once: {_libvirt_log_tail(dom.name())}") from e
                if time.monotonic() > deadline:
                    raise GuestStartError(f"guest init did not come up within {timeout:.0f}s") from e
            time.sleep(0.002)

    def _stop_quietly(self, guest_id: str) -> None:
        try:
            self.stop(guest_id)
        except Exception:  # noqa: BLE001 - the original error matters more
            log.exception("cleanup after a failed start of %s", guest_id)

    def stop(self, guest_id: str) -> None:
        dom = self._domain(guest_id)
        if dom is not None:
            self._stop_domain(dom)
        self._teardown_runtime(guest_id)

    def destroy(self, guest_id: str) -> None:
        self.stop(guest_id)
        try:
            self.volumes.delete(guest_id)
        except VolumeError as e:
            raise GuestError(f"could not delete the volume of {guest_id}: {e}") from e
        shutil.rmtree(self.guests_dir / guest_id, ignore_errors=True)

    def state(self, guest_id: str) -> GuestState:
        if self._domain(guest_id) is not None:
            return GuestState.RUNNING
        return GuestState.STOPPED if self.volumes.exists(guest_id) else GuestState.MISSING

    def running_guests(self) -> list[str]:
        import libvirt

        try:
            doms = self._connection().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except libvirt.libvirtError as e:
            raise GuestError(_message(e)) from e
        return sorted(d.name()[len(DOMAIN_PREFIX):] for d in doms if d.name().startswith(DOMAIN_PREFIX))

    def usage(self, guest_id: str) -> GuestUsage:
        if not self.volumes.exists(guest_id):
            raise GuestNotFound(f"guest {guest_id} does not exist")
        mem_used = mem_limit = 0
        dom = self._domain(guest_id)
        if dom is not None:
            try:
                _, max_kib, used_kib, _, _ = dom.info()  # LXC: from the guest's memory cgroup
                mem_used, mem_limit = used_kib * 1024, max_kib * 1024
            except Exception:  # stopped between lookup and info
                pass
        vol = self.volumes.usage(guest_id)
        return GuestUsage(mem_used, mem_limit, vol.used_bytes, vol.size_bytes)

    # -- processes inside ------------------------------------------------------

    def exec(self, guest_id: str, argv: list[str], *, input: bytes | None = None,
             timeout: float | None = None, env: dict[str, str] | None = None) -> ExecResult:
        target = self._target(guest_id)
        try:
            return nsexec.run(target, argv, input=input, timeout=timeout, env=env)
        finally:
            nsexec.close_target(target)

    def open_pty(self, guest_id: str, argv: list[str] | None = None, *, cols: int = 80,
                 rows: int = 24, env: dict[str, str] | None = None) -> PtyProcess:
        target = self._target(guest_id)
        try:
            return nsexec.open_pty(target, argv or ["/bin/bash", "-l"], cols=cols, rows=rows, env=env)
        finally:
            nsexec.close_target(target)

    def init_pid(self, guest_id: str) -> int:
        """Host pid of the guest's init (the child of libvirt's LXC controller)."""
        dom = self._domain(guest_id)
        if dom is None:
            raise GuestNotRunning(f"guest {guest_id} is not running")
        controller = dom.ID()
        for task in os.listdir(f"/proc/{controller}/task"):
            children = Path(f"/proc/{controller}/task/{task}/children").read_text().split()
            if children:
                return int(children[0])
        raise GuestNotRunning(f"guest {guest_id} has no init process")

    def _target(self, guest_id: str) -> nsexec.GuestTarget:
        import libvirt
        import libvirt_lxc

        dom = self._domain(guest_id)
        if dom is None:
            raise GuestNotRunning(f"guest {guest_id} is not running")
        try:
            fds = libvirt_lxc.lxcOpenNamespace(dom, 0)
            pid = self.init_pid(guest_id)
        except (libvirt.libvirtError, OSError) as e:
            raise GuestNotRunning(f"guest {guest_id}: {_message(e)}") from e
        return nsexec.prepare_target(fds, pid)

    # -- runtime preparation -----------------------------------------------------

    def _create_volume(self, spec: GuestSpec) -> bool:
        try:
            return self.volumes.create(spec.id, spec.storage_gb)
        except VolumeError as e:
            raise GuestStartError(f"could not create the volume of {spec.id}: {e}") from e

    def _prepare_runtime(self, spec: GuestSpec) -> str:
        if not (self.image / "etc/os-release").exists():
            raise GuestStartError(f"guest image missing at {self.image}; run: python -m appliance.core.image build")
        vol = self.volumes.mount(spec.id)
        layer = vol / "layer"
        if layer.exists():
            shutil.rmtree(layer)
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        root = self.guests_dir / spec.id / "root"
        root.mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(root):
            _run("mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={self.image},upperdir={layer / 'upper'},workdir={layer / 'work'}", str(root))
        hostname = spec.hostname or spec.id
        _write(root / INIT_PATH.lstrip("/"), INIT_SCRIPT, 0o755)
        _write(root / "etc/hostname", hostname + "\n")
        _write(root / "etc/hosts", f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{spec.ip}\t{hostname}\n")
        _write(root / "etc/resolv.conf", _guest_resolv_conf())
        self._install_host_keys(spec.id, vol, root)

        mounts = []
        for path in spec.mount_paths:
            source = self.volumes.directory(spec.id, "mounts" + path, seed_from=self.image / path.lstrip("/"))
            (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
            mounts.append(BindMount(str(source), path))
        self._write_authorized_keys(spec, vol, root)

        domain = DomainSpec(
            name=domain_name(spec.id), root_dir=str(root), init=INIT_PATH,
            memory_mb=spec.memory_mb, cpus=spec.cpus, mounts=tuple(mounts),
            interface=BridgeInterface(
                bridge=self.bridge, mac=network.mac_for_ip(spec.ip), ip=spec.ip,
                prefix=network.prefix_len(self.subnet), gateway=network.gateway_ip(self.subnet),
                host_dev=veth_name(spec.id)),
        )
        return build_domain_xml(domain)

    def _install_host_keys(self, guest_id: str, vol: Path, root: Path) -> None:
        keys = vol / "meta" / "ssh"
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = []
        for kind in HOST_KEY_TYPES:
            key = keys / f"ssh_host_{kind}_key"
            if not key.exists():
                tmp = keys / f".{key.name}.new"
                for f in (tmp, Path(f"{tmp}.pub")):
                    f.unlink(missing_ok=True)
                _run("ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{guest_id}", "-f", str(tmp))
                os.rename(f"{tmp}.pub", f"{key}.pub")
                os.rename(tmp, key)
            dest = root / "etc/ssh" / key.name
            shutil.copyfile(key, dest)
            os.chmod(dest, 0o600)
            shutil.copyfile(f"{key}.pub", f"{dest}.pub")
            lines.append(f"HostKey /etc/ssh/{key.name}\n")
        _write(root / "etc/ssh/sshd_config.d/10-appliance-hostkeys.conf", "".join(lines))

    def _write_authorized_keys(self, spec: GuestSpec, vol: Path, root: Path) -> None:
        """Root's ~/.ssh/authorized_keys, wherever /root/.ssh lands (volume or layer)."""
        target = "/root/.ssh/authorized_keys"
        base, rel = root, target
        for path in sorted(spec.mount_paths, key=len, reverse=True):
            if target.startswith(path.rstrip("/") + "/"):
                base, rel = vol / ("mounts" + path), target[len(path.rstrip("/")):]
                break
        content = "".join(k.strip() + "\n" for k in spec.authorized_keys if k.strip())
        _write_beneath(base, rel, content)

    # -- teardown ----------------------------------------------------------------

    def _stop_domain(self, dom) -> None:
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
                raise GuestError(f"could not stop {dom.name()}: {_message(e)}") from e

    def _teardown_runtime(self, guest_id: str) -> None:
        root = self.guests_dir / guest_id / "root"
        for _ in range(50):
            if not os.path.ismount(root):
                break
            if subprocess.run(["umount", str(root)], capture_output=True).returncode != 0:
                time.sleep(0.05)  # the controller may still be exiting
        else:
            raise GuestError(f"could not unmount the root of {guest_id}")
        try:
            self.volumes.unmount(guest_id)
        except VolumeError as e:
            raise GuestError(f"could not unmount the volume of {guest_id}: {e}") from e

    # -- libvirt -----------------------------------------------------------------

    def _connection(self):
        import libvirt

        with self._conn_lock:
            if self._conn is None or not self._conn_alive():
                libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
                try:
                    self._conn = libvirt.open(self.uri)
                except libvirt.libvirtError as e:
                    raise GuestError(f"libvirt ({self.uri}) is not reachable: {_message(e)}") from e
            return self._conn

    def _conn_alive(self) -> bool:
        try:
            return self._conn.isAlive() == 1
        except Exception:
            return False

    def _domain(self, guest_id: str):
        """The running domain of the guest, or None."""
        import libvirt

        try:
            dom = self._connection().lookupByName(domain_name(guest_id))
            return dom if dom.isActive() else None
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise GuestError(_message(e)) from e


def _message(e: BaseException) -> str:
    getter = getattr(e, "get_error_message", None)
    return (getter() if getter else None) or str(e)


def _libvirt_log_tail(name: str, lines: int = 5) -> str:
    try:
        text = (LIBVIRT_LOG_DIR / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "no log"
    return " | ".join(text.strip().splitlines()[-lines:])


def _run(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GuestStartError(f"{cmd[0]} failed: {(proc.stderr or proc.stdout).strip()}")


def _write(path: Path, content: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.write_text(content)
    os.chmod(path, mode)


def _write_beneath(base: Path, rel: str, content: str) -> None:
    """Write base/rel (dirs 0700, file 0600, root-owned) without following any
    symlink under ``base``: the guest can plant links in its volume."""
    parts = [p for p in rel.split("/") if p]
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                raise GuestStartError(f"cannot write {rel}: {part} is not a directory ({e.strerror})") from e
            os.close(fd)
            fd = nfd
        name, tmp = parts[-1], f".{parts[-1]}.appliance-new"
        try:
            os.unlink(tmp, dir_fd=fd)
        except FileNotFoundError:
            pass
        ffd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        with os.fdopen(ffd, "w") as f:
            f.write(content)
        os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)


def _guest_resolv_conf() -> str:
    """The host's resolvers, minus loopback ones a guest cannot reach."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return ""
    keep = [line for line in lines
            if not (line.startswith("nameserver") and (" 127." in line or " ::1" in line))]
    return "\n".join(keep) + "\n"
