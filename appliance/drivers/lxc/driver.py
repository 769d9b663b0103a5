"""The libvirt LXC guest driver (``lxc:///``). Contract: ``drivers/base.py``.

Per guest, on the host:

- ``<data>/volumes/<id>.img`` (the persistent volume, ``host/volumes.py``),
  mounted at ``<run>/volumes/<id>/`` while the guest runs. Inside it:
  ``mounts/<mount path>`` (bind-mounted into the guest), ``layer/{upper,work}``
  (the overlayfs layer: the guest's writes outside mount paths count against
  its storage size too, and are wiped on every start) and ``meta/ssh/``
  (the guest's SSH host keys, generated once per guest, never visible inside).
- ``<run>/guests/<id>/root``: the overlayfs mount (read-only image below, the
  layer above) that becomes the guest's ``/``.
- a transient libvirt domain ``ap-<id>`` (created at start, gone at stop), so
  libvirt holds no state for a stopped guest; its veth is ``ap-<id>``.

Isolation (``docs/isolation.md``):

- user namespace: each guest's uids/gids 0..65535 are a host range of its own
  (``drivers/idmap.py``, persisted in ``<data_dir>/idmap/<id>``). The lower
  layer of the overlay is an idmapped mount of the image
  (``<run>/guests/<id>/lower``), so the one root-owned image reads as owned by
  the guest's root; the layer and the volume's mount directories hold files
  with the guest's host ids (the volume's ``meta/idmap`` records the base
  they were written with, and a changed base is re-shifted at start).
- a pids cgroup of its own (libvirt 9 leaves LXC guests in the root pids
  cgroup): ``<pids>/machine/ap-<id>.appliance`` with ``pids.max``. Init waits
  until the driver has moved it there, then takes a fresh cgroup namespace
  rooted at its own cgroups, and only then starts anything.
- network: per-guest anti-spoofing entries and the guard chains of
  ``host/network.py``.

``<run>`` (``run_dir``, default ``/run/appliance-guests/<hash of data dir>``)
holds only mount points. It exists because a user-namespace guest's root
(an unprivileged host uid) must be able to traverse the path to its root
and its volume (libvirt pivots into them as that uid), while the data
directory stays private (0750). Its directories are 0711: traversable,
not listable.

Guest init (``/usr/local/sbin/appliance-init``, written at every start) sets
the hostname, starts sshd and reaps orphans; on SIGTERM it forwards TERM to
every process and exits, which ends the guest.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from appliance.drivers.base import (
    ExecResult,
    GuestDriver,
    GuestError,
    GuestNoRoom,
    GuestNotFound,
    GuestNotRunning,
    GuestSpec,
    GuestStartError,
    GuestState,
    GuestUsage,
    PtyProcess,
)
from appliance.drivers.lxc import cgroups as guestcgroups
from appliance.drivers.lxc import init as guestinit
from appliance.drivers.lxc import limits as guestlimits
from appliance.drivers.lxc import nsexec, ucounts
from appliance.drivers.lxc.domain_xml import (
    BindMount,
    BridgeInterface,
    DomainSpec,
    IdMap,
    build_domain_xml,
)
from appliance.drivers.lxc.init import (
    CGROUP_REMOUNT,
    INIT_PIDS_GATE,
    INIT_SCRIPT,
    READY_FILE,
)
from appliance.host import guestpath, idmap, network
from appliance.host.volumes import VolumeError, VolumeNoRoom, VolumeStore

log = logging.getLogger(__name__)

DOMAIN_PREFIX = "ap-"
INIT_PATH = "/usr/local/sbin/appliance-init"
HOST_KEY_TYPES = ("ed25519", "ecdsa")
STOP_GRACE_SECONDS = 3.0
INIT_TIMEOUT_SECONDS = 10.0
LIBVIRT_LOG_DIR = Path("/var/log/libvirt/lxc")
DEFAULT_PIDS_MAX = 1024
PIDS_CGROUP_SUFFIX = ".appliance"


def default_run_dir(data_dir: str | os.PathLike) -> Path:
    key = hashlib.sha1(os.fsencode(os.path.realpath(data_dir))).hexdigest()[:12]
    return Path("/run/appliance-guests") / key


def domain_name(guest_id: str) -> str:
    return DOMAIN_PREFIX + guest_id


def veth_name(guest_id: str) -> str:
    name = DOMAIN_PREFIX + guest_id
    return name if len(name) <= 15 else "ap" + hashlib.sha1(guest_id.encode()).hexdigest()[:13]


class LxcDriver(GuestDriver):
    def __init__(self, *, image_dir: str | os.PathLike, data_dir: str | os.PathLike,
                 bridge: str, subnet: str, uri: str = "lxc:///", userns: bool = True,
                 pids_max: int = DEFAULT_PIDS_MAX, public_ports: tuple[int, ...] = (),
                 run_dir: str | os.PathLike | None = None, tcp_memory_mb: int = 64,
                 nofile: int = 4096, volume_margin_gb: float = 2,
                 msgqueue_bytes: int = 262144, sigpending: int = 1024):
        """``userns=False`` runs privileged guests (guest root = host root):
        only for measuring what the user namespace costs. ``pids_max`` is
        the default when a spec has none (0: no limit, only for measuring
        what the limit costs). ``public_ports``: host TCP ports
        guests may reach on the host (everything else on the host is closed
        to them, see ``network.ensure_guest_network``). ``tcp_memory_mb``,
        ``nofile``: kernel limits per guest (``guestlimits``; 0: none, only for
        measuring). ``volume_margin_gb``: free disk kept when reserving volumes.
        ``msgqueue_bytes``, ``sigpending``: per guest uid (``ucounts``)."""
        from appliance.host.image import image_path

        self.image = image_path(image_dir)
        self.data_dir = Path(data_dir)
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(data_dir)
        self.guests_dir = self.run_dir / "guests"
        self.volumes = VolumeStore(self.data_dir / "volumes", mount_root=self.run_dir / "volumes",
                                   margin_gb=volume_margin_gb)
        self.idranges = idmap.IdRangeAllocator(Path(data_dir) / "idmap")
        self.bridge = bridge
        self.subnet = subnet
        self.uri = uri
        self.userns = userns
        self.pids_max = pids_max
        self.public_ports = tuple(public_ports)
        self.tcp_memory_mb = tcp_memory_mb
        self.nofile = nofile
        self.rlimits = ucounts.guest_rlimits(msgqueue_bytes, sigpending)
        self._conn: Any = None  # a libvirt.virConnect (libvirt-python has no type hints)
        self._conn_lock = threading.Lock()
        self._ready: set[str] = set()   # guests whose init has finished setting up

    def reserve_storage(self, guest_id: str, storage_gb: float) -> None:
        try:
            self.volumes.reserve(guest_id, storage_gb)
        except VolumeNoRoom as e:
            raise GuestNoRoom(str(e)) from e

    def release_storage(self, guest_id: str) -> None:
        self.volumes.release(guest_id)

    def guest_image(self) -> Path:
        return self.image

    @classmethod
    def from_config(cls, config) -> LxcDriver:
        # the appliance's public services: all a guest may open on the host
        public = (config.http_port, config.ssh_port, config.ingress_http_port, config.ingress_https_port)
        return cls(image_dir=config.image_dir, data_dir=config.data_dir,
                   bridge=config.bridge_name, subnet=config.guest_subnet, public_ports=public,
                   tcp_memory_mb=config.guest_tcp_memory_mb, nofile=config.guest_nofile,
                   volume_margin_gb=config.volume_free_margin_gb,
                   msgqueue_bytes=config.guest_msgqueue_bytes, sigpending=config.guest_sigpending)

    def prepare_host(self, *, build_image: bool = True) -> None:
        """libvirtd, bridge, NAT and the image: everything a start needs."""
        from appliance.host import image
        from appliance.host import libvirtd as host

        host.ensure_libvirtd()
        ucounts.raise_host_limits()   # counters guests share with host root
        network.ensure_guest_network(self.bridge, self.subnet, public_ports=self.public_ports)
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
            network.add_guest_port(self.bridge, veth_name(spec.id), network.mac_for_ip(spec.ip), spec.ip)
            dom = self._connection().createXML(xml, 0)
            self._wait_for_init(dom)
            self._limit_tcp(spec)      # before the init gate opens (in _limit_pids)
            ucounts.limit_process(self.init_pid(spec.id), self.rlimits)
            self._limit_pids(spec, dom)
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
        self._ready.discard(guest_id)
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
        self._remove_guest_dir(guest_id)
        self.idranges.release(guest_id)

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
            if guest_id not in self._ready and guestinit.wait_ready(pid):
                self._ready.add(guest_id)   # exec waits until the init has set the guest up
            # libvirt hands out ipc/mnt/net/pid/user/uts; the guest's cgroup
            # namespace (made by its init) is joined too.
            fds.append(os.open(f"/proc/{pid}/ns/cgroup", os.O_RDONLY | os.O_CLOEXEC))
        except (libvirt.libvirtError, OSError) as e:
            raise GuestNotRunning(f"guest {guest_id}: {_message(e)}") from e
        return nsexec.prepare_target(fds, pid, seccomp=guestlimits.Program(guestlimits.seccomp_filter()),
                                     nofile=self.nofile, rlimits=self.rlimits)

    def id_range(self, guest_id: str) -> idmap.IdRange | None:
        """The guest's host uid/gid range (None: privileged guests)."""
        return self.idranges.get(guest_id) if self.userns else None

    # -- kernel limits (guestlimits) ------------------------------------------------

    def _limit_tcp(self, spec: GuestSpec) -> None:
        limit = min(self.tcp_memory_mb, spec.memory_mb) * 1024 * 1024
        files = nsexec._cgroup_procs_files(self.init_pid(spec.id))
        memory = next((os.path.dirname(p) for p in files if "/memory/" in p), None)
        guestlimits.limit_tcp_memory(memory, limit)

    def _emulator(self) -> str:
        try:
            return str(guestlimits.ensure_wrapper(self.data_dir / "bin", self.nofile or 1048576))
        except guestlimits.GuestLimitError as e:
            raise GuestStartError(str(e)) from e

    # -- pids ----------------------------------------------------------------------

    def pids_cgroup(self, guest_id: str) -> Path | None:
        """The guest's own pids cgroup directory (cgroup v1), None without a pids hierarchy."""
        base = nsexec._cgroup_mounts().get("pids")
        return Path(base, "machine", domain_name(guest_id) + PIDS_CGROUP_SUFFIX) if base else None

    def _limit_pids(self, spec: GuestSpec, dom) -> None:
        """Move the guest (not libvirt's controller) into its pids cgroup.

        The init script waits for this before it starts anything, so no
        guest process can be forked outside the limit."""
        limit = spec.pids_max or self.pids_max
        if limit <= 0:
            return
        cg = self.pids_cgroup(spec.id)
        init = self.init_pid(spec.id)
        if cg is None:   # cgroup v2 only: libvirt's guest cgroup has pids.max itself
            for line in Path(f"/proc/{init}/cgroup").read_text().splitlines():
                if line.startswith("0::"):
                    unified = nsexec._cgroup_mounts().get("unified")
                    f = Path(unified or "/sys/fs/cgroup", line[3:].lstrip("/"), "pids.max")
                    if f.exists():
                        f.write_text(f"{limit}\n")
                        return
            raise GuestStartError("no pids cgroup controller on this host: cannot limit processes")
        cg.mkdir(parents=True, exist_ok=True)
        (cg / "pids.max").write_text(f"{limit}\n")
        controller = str(dom.ID())
        memory_procs = next(p for p in nsexec._cgroup_procs_files(init) if "/memory/" in p)
        # still before the gate: the guest's own unified/systemd cgroups
        guestcgroups.enter(domain_name(spec.id) + PIDS_CGROUP_SUFFIX,
                           [p for p in Path(memory_procs).read_text().split() if p != controller])
        procs = str(cg / "cgroup.procs")
        while True:   # until every guest process is inside (children follow their parent)
            moved = 0
            for pid in Path(memory_procs).read_text().split():
                if pid == controller or pid in (cg / "cgroup.procs").read_text().split():
                    continue
                try:
                    with open(procs, "w") as f:
                        f.write(pid)
                    moved += 1
                except ProcessLookupError:
                    pass
            if not moved:
                return

    def _remove_pids_cgroup(self, guest_id: str) -> None:
        cg = self.pids_cgroup(guest_id)
        if cg is None or not cg.exists():
            return
        for _ in range(100):
            try:
                cg.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:   # EBUSY while the last guest processes exit
                time.sleep(0.02)
        raise GuestError(f"could not remove the pids cgroup of {guest_id}")

    # -- runtime preparation -----------------------------------------------------

    def _create_volume(self, spec: GuestSpec) -> bool:
        try:
            return self.volumes.create(spec.id, spec.storage_gb)
        except VolumeError as e:
            raise GuestStartError(f"could not create the volume of {spec.id}: {e}") from e

    def _prepare_runtime(self, spec: GuestSpec) -> str:
        if not (self.image / "etc/os-release").exists():
            raise GuestStartError(f"guest image missing at {self.image}; run: python -m appliance.host.image build")
        ids = self.idranges.ensure(spec.id) if self.userns else None
        own = _Owner(ids)
        _traversable(self.run_dir, "guests", "volumes")
        _traversable(self.guests_dir, spec.id)
        vol = self.volumes.mount(spec.id)
        self._shift_volume(spec.id, vol, ids)
        layer = vol / "layer"
        root = self.guests_dir / spec.id / "root"
        if is_mounted(root):   # left by a guest that died without a stop: its layer goes next
            _run("umount", str(root))
        if layer.exists():
            shutil.rmtree(layer)
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        # the upper dir's owner and mode are those of the guest's "/"
        os.chmod(layer / "upper", self.image.stat().st_mode & 0o7777)
        own(layer / "upper")
        lower = self.image
        if ids is not None:
            lower = self.guests_dir / spec.id / "lower"
            lower.mkdir(parents=True, exist_ok=True)
            if not is_mounted(lower):
                try:
                    idmap.idmapped_bind_mount(self.image, lower, ids)
                except OSError as e:
                    raise GuestStartError(f"could not make the idmapped image mount: {e}") from e
        root.mkdir(parents=True, exist_ok=True)
        if not is_mounted(root):
            _run("mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={lower},upperdir={layer / 'upper'},workdir={layer / 'work'}", str(root))
        hostname = spec.hostname or spec.id
        limit_pids = self._pids_controller_available() and (spec.pids_max or self.pids_max) > 0
        init = INIT_SCRIPT.format(pids_gate=INIT_PIDS_GATE if limit_pids else "", ready=READY_FILE,
                                  cgroup_view=CGROUP_REMOUNT if limit_pids else "")
        _write_in(root, INIT_PATH, init, 0o755, own)
        _write_in(root, "/etc/hostname", hostname + "\n", owner=own)
        _write_in(root, "/etc/hosts", f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{spec.ip}\t{hostname}\n", owner=own)
        _write_in(root, "/etc/resolv.conf", _guest_resolv_conf(), owner=own)
        self._install_host_keys(spec.id, vol, root, own)

        mounts = []
        for path in spec.mount_paths:
            # resolved inside the image, the volume and the root, never on the host
            source = self.volumes.directory(spec.id, "mounts" + path, seed_from=(self.image, path),
                                            id_base=ids.base if ids else 0)
            _mkdirs(root, path, own)
            mounts.append(BindMount(str(source), path))
        self._write_authorized_keys(spec, vol, root, own)

        domain = DomainSpec(
            name=domain_name(spec.id), root_dir=str(root), init=INIT_PATH,
            memory_mb=spec.memory_mb, cpus=spec.cpus, mounts=tuple(mounts),
            interface=BridgeInterface(
                bridge=self.bridge, mac=network.mac_for_ip(spec.ip), ip=spec.ip,
                prefix=network.prefix_len(self.subnet), gateway=network.gateway_ip(self.subnet),
                host_dev=veth_name(spec.id)),
            idmap=IdMap(ids.base, ids.count) if ids else None,
            emulator=self._emulator(),
        )
        return build_domain_xml(domain)

    @staticmethod
    def _pids_controller_available() -> bool:
        """A v1 pids hierarchy (the init gate waits for the move into it)."""
        return "pids" in nsexec._cgroup_mounts()

    def _shift_volume(self, guest_id: str, vol: Path, ids: idmap.IdRange | None) -> None:
        """The volume's files carry the host ids of the guest's range; the
        base they were written with is in ``meta/idmap`` (none: 0, a volume
        of a privileged guest). A different base is re-shifted once."""
        record = vol / "meta" / "idmap"
        try:
            old = int(record.read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            old = 0
        new = ids.base if ids else 0
        if old == new:
            if not record.exists():
                _write(record, f"{new} {idmap.RANGE_SIZE}\n", 0o600)
            return
        started = time.monotonic()
        n = 0
        if (vol / "mounts").exists():
            n = idmap.remap_tree(vol / "mounts", old, new, idmap.RANGE_SIZE)
        _write(record, f"{new} {idmap.RANGE_SIZE}\n", 0o600)
        log.info("volume of %s: %d entries moved from id base %d to %d in %.2fs",
                 guest_id, n, old, new, time.monotonic() - started)

    def _install_host_keys(self, guest_id: str, vol: Path, root: Path, own: _Owner) -> None:
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
            _write_in(root, f"/etc/ssh/{key.name}", key.read_text(), 0o600, own)
            _write_in(root, f"/etc/ssh/{key.name}.pub", Path(f"{key}.pub").read_text(), 0o644, own)
            lines.append(f"HostKey /etc/ssh/{key.name}\n")
        _write_in(root, "/etc/ssh/sshd_config.d/10-appliance-hostkeys.conf", "".join(lines), owner=own)

    def _write_authorized_keys(self, spec: GuestSpec, vol: Path, root: Path, own: _Owner) -> None:
        """Root's ~/.ssh/authorized_keys, wherever /root/.ssh lands (volume or layer)."""
        target = "/root/.ssh/authorized_keys"
        base, rel = root, target
        for path in sorted(spec.mount_paths, key=len, reverse=True):
            if target.startswith(path.rstrip("/") + "/"):
                base, rel = vol, "mounts" + target
                break
        content = "".join(k.strip() + "\n" for k in spec.authorized_keys if k.strip())
        try:
            guestpath.write_file(base, rel, content, mode=0o600, owner=own.pair, dir_mode=0o700)
        except OSError as e:
            raise GuestStartError(f"cannot write {target}: {e.strerror}") from e

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
            if not is_mounted(root):
                break
            if subprocess.run(["umount", str(root)], capture_output=True).returncode != 0:
                time.sleep(0.05)  # the controller may still be exiting
        else:
            raise GuestError(f"could not unmount the root of {guest_id}")
        lower = self.guests_dir / guest_id / "lower"
        while is_mounted(lower):
            if subprocess.run(["umount", str(lower)], capture_output=True).returncode != 0:
                raise GuestError(f"could not unmount the image of {guest_id}")
        self._remove_pids_cgroup(guest_id)
        guestcgroups.remove(domain_name(guest_id) + PIDS_CGROUP_SUFFIX)
        network.remove_guest_port(self.bridge, veth_name(guest_id))
        try:
            self.volumes.unmount(guest_id)
        except VolumeError as e:
            raise GuestError(f"could not unmount the volume of {guest_id}: {e}") from e

    def _remove_guest_dir(self, guest_id: str) -> None:
        """Remove the (empty) mount points of a stopped guest. Never recursive:
        the lower mount point is a bind mount of the shared image."""
        d = self.guests_dir / guest_id
        for sub in (d / "root", d / "lower", d):
            if is_mounted(sub):
                raise GuestError(f"{sub} is still mounted")
            try:
                sub.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("leaving %s: %s", sub, e)
                return

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


def is_mounted(path: str | os.PathLike) -> bool:
    """Whether something is mounted at ``path`` (from mountinfo: unlike
    ``os.path.ismount`` this sees bind mounts within one filesystem)."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split(" ", 5)[4]
                if _unescape(point) == target:
                    return True
    except OSError:
        return os.path.ismount(path)
    return False


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


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


def _traversable(base: Path, *names: str) -> None:
    """mkdir -p base/name with mode 0711 (also base and its new parents)."""
    missing = []
    p = base
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o711)
    for name in names:
        d = base / name
        if not d.exists():
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o711)


class _Owner:
    """Gives what the driver writes into a guest to the guest's root (its
    host base id), or leaves it to host root for a privileged guest."""

    def __init__(self, ids: idmap.IdRange | None):
        self.ids = ids
        self.pair = (ids.base, ids.base) if ids is not None else None

    def __call__(self, path: Path) -> None:
        if self.ids is not None:
            os.lchown(path, self.ids.base, self.ids.base)


def _write(path: Path, content: str, mode: int = 0o644) -> None:
    """Replace a file in a host-private place (the volume's ``meta/``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.write_text(content)
    os.chmod(path, mode)


def _write_in(root: Path, path: str, content: str, mode: int = 0o644, owner: _Owner | None = None) -> None:
    """Replace a file of the guest's root, resolved inside it (``guestpath``)."""
    try:
        guestpath.write_file(root, path, content, mode=mode, owner=owner.pair if owner else None,
                             dir_mode=0o755)
    except OSError as e:
        raise GuestStartError(f"cannot write {path} in the guest: {e.strerror}") from e


def _mkdirs(root: Path, path: str, owner: _Owner) -> None:
    """Create root/path like ``mkdir -p`` inside the guest's root (no symlink
    followed: the image's ``/var/run -> /run`` must not become the host's /run),
    giving new directories to the guest."""
    try:
        fd, _ = guestpath.make_dirs(root, path, owner=owner.pair)
    except OSError as e:
        raise GuestStartError(f"mount path {path!r}: {e.strerror} in the guest's root") from e
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
