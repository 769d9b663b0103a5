"""The libvirt LXC guest driver (``lxc:///``). Contract: ``drivers/base.py``.

Per guest, on the host: its volume and root (``rootfs.py``: the layout, and
the run directory of mount points), a transient libvirt domain ``ap-<id>``
(created at start, gone at stop, so libvirt holds no state for a stopped
guest; its veth is ``ap-<id>``) and its cgroups (``cgroups.py``).

Isolation (``docs/isolation.md``):

- user namespace: each guest's uids/gids 0..65535 are a host range of its own
  (``host/idmap.py``, persisted in ``<data_dir>/idmap/<id>``); the image is
  mounted idmapped below the guest's overlay root (``rootfs.py``).
- a pids cgroup of its own (``cgroups.py``). Init waits until the driver has
  moved it there, then takes a fresh cgroup namespace rooted at its own
  cgroups, and only then starts anything (``init.py``).
- kernel limits: TCP buffer memory, open files, seccomp (``limits.py``),
  per-uid counters (``ucounts.py``).
- network: per-guest anti-spoofing entries and the guard chains of
  ``host/network.py``.

Guest init (``/usr/local/sbin/appliance-init``, written at every start,
``init.py``) sets the hostname, starts sshd and reaps orphans; on SIGTERM it
forwards TERM to every process and exits, which ends the guest.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

from appliance.drivers.base import (
    ExecResult,
    GuestDriver,
    GuestError,
    GuestLog,
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
from appliance.drivers.lxc import domain as libvirt_domain
from appliance.drivers.lxc import init as guestinit
from appliance.drivers.lxc import limits as guestlimits
from appliance.drivers.lxc import nsexec, ucounts
from appliance.drivers.lxc.domain import error_message as _message
from appliance.drivers.lxc.domain_xml import (
    BridgeInterface,
    DomainSpec,
    IdMap,
    build_domain_xml,
)
from appliance.drivers.lxc.rootfs import INIT_PATH, GuestRootfs, default_run_dir
from appliance.drivers.lxc.usage import CgroupUsage
from appliance.host import idmap, network
from appliance.host.volumes import VolumeError, VolumeNoRoom, VolumeStore
from appliance.revert import Reverter

log = logging.getLogger(__name__)

DOMAIN_PREFIX = "ap-"
DEFAULT_PIDS_MAX = 1024


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
        ``nofile``: kernel limits per guest (``limits.py``; 0: none, only for
        measuring). ``volume_margin_gb``: free disk kept when reserving volumes.
        ``msgqueue_bytes``, ``sigpending``: per guest uid (``ucounts``)."""
        from appliance.host.image import image_path

        self.image = image_path(image_dir)
        self.data_dir = Path(data_dir)
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(data_dir)
        self.volumes = VolumeStore(self.data_dir / "volumes", mount_root=self.run_dir / "volumes",
                                   margin_gb=volume_margin_gb)
        self.rootfs = GuestRootfs(self.image, self.run_dir, self.volumes)
        self.guests_dir = self.rootfs.guests_dir
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
        # Running guests' cgroup files (usage() reads them without asking libvirt).
        self._usage = CgroupUsage()

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

    def set_peer_networks(self, peers: list[tuple[str, str]]) -> None:
        network.set_peer_networks(self.bridge, self.subnet, peers)

    # -- lifecycle -------------------------------------------------------------

    def spawn(self, spec: GuestSpec) -> None:
        with Reverter() as revert:
            if self._create_volume(spec):
                revert.add(self.destroy, spec.id)   # volume, id range, mount points
            self.start(spec)
            revert.success()

    def start(self, spec: GuestSpec) -> None:
        """Each step registers its undo first (they look at what is there, so
        a step that fails half way is undone too); if one fails, the undos
        run newest first and leave the guest stopped, as before the start."""
        if self._domain(spec.id) is not None:
            return
        if not self.volumes.exists(spec.id):
            raise GuestNotFound(f"guest {spec.id} does not exist")
        veth = veth_name(spec.id)
        try:
            with Reverter() as revert:
                xml = self._prepare_runtime(spec)   # undoes its own steps if one fails
                revert.add(self.rootfs.disassemble, spec.id)
                revert.add(network.remove_guest_port, self.bridge, veth)
                network.add_guest_port(self.bridge, veth, network.mac_for_ip(spec.ip), spec.ip)
                revert.add(self._remove_cgroups, spec.id)   # once the domain is gone
                revert.add(self._stop_guest_domain, spec.id)
                dom = libvirt_domain.create(self._connection(), xml)
                self._limit_tcp(spec)      # before the init gate opens (in _limit_pids)
                ucounts.limit_process(self.init_pid(spec.id), self.rlimits)
                self._limit_pids(spec, dom)
                revert.success()
        except BaseException as e:
            if isinstance(e, GuestError):
                raise
            raise GuestStartError(f"guest {spec.id} could not start: {_message(e)}") from e

    def stop(self, guest_id: str) -> None:
        self._ready.discard(guest_id)
        self._usage.forget(guest_id)
        self._stop_guest_domain(guest_id)
        self._teardown_runtime(guest_id)

    def destroy(self, guest_id: str) -> None:
        self.stop(guest_id)
        try:
            self.volumes.delete(guest_id)
        except VolumeError as e:
            raise GuestError(f"could not delete the volume of {guest_id}: {e}") from e
        self.rootfs.remove_dirs(guest_id)
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
        cpu_ns, mem_used, mem_limit = self._usage.read(guest_id, lambda: self._domain(guest_id))
        vol = self.volumes.usage(guest_id)
        return GuestUsage(mem_used, mem_limit, vol.used_bytes, vol.size_bytes, cpu_ns=cpu_ns)

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

    def open_log(self, guest_id: str) -> GuestLog:
        if not self.volumes.exists(guest_id):
            raise GuestNotFound(f"guest {guest_id} does not exist")
        pid = self.init_pid(guest_id)
        try:
            log = guestinit.InitLog(pid, self.id_range(guest_id))
        except ProcessLookupError:
            raise GuestNotRunning(f"guest {guest_id} has stopped") from None
        try:
            moved = self.init_pid(guest_id) != pid
        except GuestNotRunning:
            moved = True
        if moved:   # stopped or restarted in between: that pid is not its init
            log.close()
            raise GuestNotRunning(f"guest {guest_id} stopped or restarted; try again")
        return log

    def init_pid(self, guest_id: str) -> int:
        """Host pid of the guest's init (the child of libvirt's LXC controller)."""
        dom = self._domain(guest_id)
        if dom is None:
            raise GuestNotRunning(f"guest {guest_id} is not running")
        pid = libvirt_domain.init_pid(dom)
        if pid is None:
            raise GuestNotRunning(f"guest {guest_id} has no init process")
        return pid

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
        guestlimits.limit_tcp_memory(guestcgroups.memory_cgroup(self.init_pid(spec.id)), limit)

    def _emulator(self) -> str:
        try:
            return str(guestlimits.ensure_wrapper(self.data_dir / "bin", self.nofile or 1048576))
        except guestlimits.GuestLimitError as e:
            raise GuestStartError(str(e)) from e

    # -- pids (guestcgroups) ---------------------------------------------------------

    def pids_cgroup(self, guest_id: str) -> Path | None:
        """The guest's own pids cgroup directory (cgroup v1), None without a pids hierarchy."""
        return guestcgroups.pids_cgroup(_cgroup_name(guest_id))

    def _limit_pids(self, spec: GuestSpec, dom) -> None:
        """Move the guest into its pids cgroup: its init starts nothing before."""
        limit = spec.pids_max or self.pids_max
        if limit > 0:
            guestcgroups.limit_pids(_cgroup_name(spec.id), limit, self.init_pid(spec.id), dom.ID())

    @staticmethod
    def _remove_cgroups(guest_id: str) -> None:
        guestcgroups.remove_pids_cgroup(_cgroup_name(guest_id))
        guestcgroups.remove(_cgroup_name(guest_id))

    # -- runtime preparation -----------------------------------------------------

    def _create_volume(self, spec: GuestSpec) -> bool:
        try:
            return self.volumes.create(spec.id, spec.storage_gb)
        except VolumeError as e:
            raise GuestStartError(f"could not create the volume of {spec.id}: {e}") from e

    def _prepare_runtime(self, spec: GuestSpec) -> str:
        """The guest's root and volume, ready for libvirt: its domain XML.
        ``rootfs.assemble`` undoes its own steps if one fails."""
        self.rootfs.check_image()
        ids = self.idranges.ensure(spec.id) if self.userns else None
        emulator = self._emulator()
        gate = guestcgroups.pids_controller_available() and (spec.pids_max or self.pids_max) > 0
        root, mounts = self.rootfs.assemble(spec, ids, guestinit.script(pids_gate=gate))
        domain = DomainSpec(
            name=domain_name(spec.id), root_dir=str(root), init=INIT_PATH,
            memory_mb=spec.memory_mb, cpus=spec.cpus, mounts=tuple(mounts),
            interface=BridgeInterface(
                bridge=self.bridge, mac=network.mac_for_ip(spec.ip), ip=spec.ip,
                prefix=network.prefix_len(self.subnet), gateway=network.gateway_ip(self.subnet),
                host_dev=veth_name(spec.id)),
            idmap=IdMap(ids.base, ids.count) if ids else None,
            emulator=emulator,
        )
        return build_domain_xml(domain)

    # -- teardown ----------------------------------------------------------------

    def _stop_guest_domain(self, guest_id: str) -> None:
        dom = self._domain(guest_id)
        if dom is not None:
            libvirt_domain.stop(dom)

    def _teardown_runtime(self, guest_id: str) -> None:
        self.rootfs.unmount_root(guest_id)
        self._remove_cgroups(guest_id)
        network.remove_guest_port(self.bridge, veth_name(guest_id))
        self.rootfs.unmount_volume(guest_id)

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

    # -- the rest of the GuestDriver seam (drivers/base.py) ------------------------

    def stored_guests(self) -> set[str]:
        return {p.stem for p in Path(self.volumes.root).glob("*.img")}

    def guest_host_keys(self, guest_id: str) -> list[str]:
        """Read from ``<volume>/meta/ssh`` (mounted while the guest runs)."""
        keys = []
        for pub in sorted((Path(self.volumes.mountpoint(guest_id)) / "meta" / "ssh").glob("ssh_host_*_key.pub")):
            try:
                keys.append(" ".join(pub.read_text().split()[:2]))
            except OSError:
                continue
        return keys

    def stop_guests(self) -> list[str]:
        from appliance.host import libvirtd

        if libvirtd.libvirtd_pid() is None:
            return []   # no libvirtd: no guest runs (and none is started by asking)
        # Only this data dir's guests: one libvirtd may serve several appliances.
        guests = [g for g in self.running_guests() if self.volumes.exists(g)]
        for guest_id in guests:
            self.stop(guest_id)
        return guests

    def ingress_applier(self, config):
        from appliance.drivers.lxc.ingress import LxcIngress

        return LxcIngress(config)

    def close(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as e:  # noqa: BLE001 - closing a dead connection
                log.debug("closing the libvirt connection: %s", e)


def _cgroup_name(guest_id: str) -> str:
    return guestcgroups.name_for(domain_name(guest_id))
