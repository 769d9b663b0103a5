"""Declarative builder of the libvirt LXC domain XML for one guest.

``DomainSpec`` says what the guest is; ``build_domain_xml`` renders it, always
the same bytes for the same spec (golden-file tested). Notes on the choices:

- ``<os><type>exe</type><init>``: the guest runs our init script, not a
  full init system.
- The root is a ``<filesystem type='mount'>`` onto ``/`` (the guest's
  overlayfs); mount paths are further bind mounts from the volume.
- Memory: ``<memory>`` is the cgroup memory limit (OOM-kill inside the
  guest when exceeded). CPU: ``<vcpu>`` does not limit an LXC guest, so
  ``<cputune><period>/<quota>`` sets the cgroup CFS quota for the whole
  guest (quota = cpus x period), plus proportional ``<shares>``.
- Network: a veth on the bridge with a fixed MAC; ``<ip>`` and ``<route>``
  let libvirt configure the guest side before init runs (no DHCP).
- User namespace: ``<idmap>`` maps guest uids/gids 0..count-1 to the
  guest's own unprivileged host range (``host/idmap.py``); without it the
  guest's root is the host's root.
- Capabilities: ``<features><capabilities>`` drops ``drop_capabilities``
  from the guest's bounding set (``net_raw``: packet and raw sockets queue
  packet clones no memory cgroup is charged for; the seccomp filter of
  ``limits.py`` refuses them too, also in nested namespaces).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

CPU_PERIOD_US = 100_000
LIBVIRT_LXC_EMULATOR = "/usr/lib/libvirt/libvirt_lxc"


@dataclass(frozen=True)
class BindMount:
    source: str          # host directory
    target: str          # path inside the guest
    readonly: bool = False


@dataclass(frozen=True)
class BridgeInterface:
    bridge: str
    mac: str
    ip: str
    prefix: int
    gateway: str
    host_dev: str = ""   # host side veth name ("" = libvirt picks one)


@dataclass(frozen=True)
class IdMap:
    """Guest uids and gids 0..count-1 are host ids target..target+count-1."""
    target: int
    count: int = 65536


@dataclass(frozen=True)
class DomainSpec:
    name: str
    root_dir: str
    init: str
    memory_mb: int
    cpus: float
    interface: BridgeInterface | None = None
    mounts: tuple[BindMount, ...] = field(default_factory=tuple)
    init_args: tuple[str, ...] = field(default_factory=tuple)
    init_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    uuid: str = ""
    idmap: IdMap | None = None
    # libvirt's LXC controller, or a wrapper that execs it (drivers/lxc/limits.py)
    emulator: str = LIBVIRT_LXC_EMULATOR
    # capabilities taken from the guest (libvirt names: net_raw, sys_module, ...)
    drop_capabilities: tuple[str, ...] = ("net_raw",)


def cpu_quota_us(cpus: float, period_us: int = CPU_PERIOD_US) -> int:
    """CFS quota for ``cpus`` CPUs (at least the kernel's 1 ms minimum)."""
    return max(1000, int(round(cpus * period_us)))


def build_domain_xml(spec: DomainSpec) -> str:
    dom = ET.Element("domain", type="lxc")
    _text(dom, "name", spec.name)
    if spec.uuid:
        _text(dom, "uuid", spec.uuid)
    _text(dom, "memory", str(spec.memory_mb), unit="MiB")
    _text(dom, "currentMemory", str(spec.memory_mb), unit="MiB")
    _text(dom, "vcpu", str(max(1, math.ceil(spec.cpus))))
    tune = ET.SubElement(dom, "cputune")
    _text(tune, "shares", str(max(2, int(round(spec.cpus * 1024)))))
    _text(tune, "period", str(CPU_PERIOD_US))
    _text(tune, "quota", str(cpu_quota_us(spec.cpus)))

    os_el = ET.SubElement(dom, "os")
    _text(os_el, "type", "exe")
    _text(os_el, "init", spec.init)
    for arg in spec.init_args:
        _text(os_el, "initarg", arg)
    for key, value in spec.init_env:
        _text(os_el, "initenv", value, name=key)

    if spec.idmap:
        idmap = ET.SubElement(dom, "idmap")
        for kind in ("uid", "gid"):
            ET.SubElement(idmap, kind, start="0", target=str(spec.idmap.target), count=str(spec.idmap.count))

    if spec.drop_capabilities:
        caps = ET.SubElement(ET.SubElement(dom, "features"), "capabilities", policy="default")
        for cap in spec.drop_capabilities:
            ET.SubElement(caps, cap, state="off")

    _text(dom, "clock", None, offset="utc")
    _text(dom, "on_poweroff", "destroy")
    _text(dom, "on_reboot", "restart")
    _text(dom, "on_crash", "destroy")

    devices = ET.SubElement(dom, "devices")
    _text(devices, "emulator", spec.emulator)
    _filesystem(devices, BindMount(spec.root_dir, "/"))
    for mount in spec.mounts:
        _filesystem(devices, mount)
    if spec.interface:
        _interface(devices, spec.interface)
    _text(devices, "console", None, type="pty")

    ET.indent(dom, space="  ")
    return ET.tostring(dom, encoding="unicode") + "\n"


def _filesystem(parent: ET.Element, mount: BindMount) -> None:
    fs = ET.SubElement(parent, "filesystem", type="mount", accessmode="passthrough")
    ET.SubElement(fs, "source", dir=mount.source)
    ET.SubElement(fs, "target", dir=mount.target)
    if mount.readonly:
        ET.SubElement(fs, "readonly")


def _interface(parent: ET.Element, nic: BridgeInterface) -> None:
    iface = ET.SubElement(parent, "interface", type="bridge")
    ET.SubElement(iface, "mac", address=nic.mac)
    ET.SubElement(iface, "source", bridge=nic.bridge)
    if nic.host_dev:
        ET.SubElement(iface, "target", dev=nic.host_dev)
    ET.SubElement(iface, "ip", address=nic.ip, family="ipv4", prefix=str(nic.prefix))
    ET.SubElement(iface, "route", family="ipv4", address="0.0.0.0", prefix="0", gateway=nic.gateway)


def _text(parent: ET.Element, tag: str, text: str | None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    el.text = text
    return el
