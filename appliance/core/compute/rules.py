"""What a container may be: instance types, mount paths, names, ingress ports.

Pure functions over request values; every failure is ``Invalid`` with a
message naming the field. See docs/compute.md for the tables.
"""
from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass

from appliance.errors import Invalid


@dataclass(frozen=True)
class InstanceType:
    name: str
    cpus: float          # enforced as a CFS quota: cpus x 100 ms per 100 ms period
    memory_mb: int       # enforced as the cgroup memory limit (and the max override)
    max_storage_gb: int

    def as_dict(self) -> dict:
        return {"name": self.name, "cpus": self.cpus, "memory_mb": self.memory_mb,
                "max_storage_gb": self.max_storage_gb}


# The original's names. nano/micro/mini keep its CPU and memory figures;
# tiny/small/medium had only CPU figures, memory here is 1 GB per CPU.
INSTANCE_TYPES: dict[str, InstanceType] = {t.name: t for t in (
    InstanceType("nano", 0.5, 512, 10),
    InstanceType("micro", 1.0, 1024, 20),
    InstanceType("mini", 2.0, 2048, 40),
    InstanceType("tiny", 1.0, 1024, 20),
    InstanceType("small", 2.0, 2048, 40),
    InstanceType("medium", 4.0, 4096, 80),
)}
DEFAULT_TYPE = "nano"
DEFAULT_STORAGE_GB = 5
MIN_MEMORY_MB = 128
MIN_STORAGE_GB = 1

DEFAULT_MOUNTS = ("/root",)
MAX_MOUNTS = 10
MAX_MOUNT_PATH = 255
# Under these the kernel or the container runtime owns the tree.
FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev", "/run")
# Files the appliance writes into the guest's root at every start (init,
# host name, resolver, sshd host keys): a mount path over any of them would
# hide them and the guest would not boot as configured.
MANAGED_FILES = ("/usr/local/sbin/appliance-init", "/etc/hostname", "/etc/hosts",
                 "/etc/resolv.conf", "/etc/ssh/sshd_config.d")

MAX_NAME = 63

INGRESS_SHARED_PORTS = (80, 443)
# Exclusive ports. Within the range, ports the host itself uses (the
# appliance's own ports, e.g. the default API port 8080, and anything bound
# at the time of the request) are refused later with 409 (core/compute/hostports.py).
INGRESS_PORT_RANGE = (8000, 8999)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def instance_type(name: str) -> InstanceType:
    name = name or DEFAULT_TYPE
    try:
        return INSTANCE_TYPES[name]
    except KeyError:
        raise Invalid(f"instance_type {name!r} is unknown (one of: {', '.join(INSTANCE_TYPES)})") from None


def memory_mb(itype: InstanceType, requested: int | None) -> int:
    if requested is None:
        return itype.memory_mb
    if not MIN_MEMORY_MB <= requested <= itype.memory_mb:
        raise Invalid(f"memory_mb must be between {MIN_MEMORY_MB} and {itype.memory_mb} for {itype.name}")
    return requested


def storage_gb(itype: InstanceType, requested: int | None) -> int:
    if requested is None:
        return min(DEFAULT_STORAGE_GB, itype.max_storage_gb)
    if not MIN_STORAGE_GB <= requested <= itype.max_storage_gb:
        raise Invalid(f"storage_gb must be between {MIN_STORAGE_GB} and {itype.max_storage_gb} for {itype.name}")
    return requested


def container_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_NAME:
        raise Invalid(f"name must be 1-{MAX_NAME} characters")
    if not name.isprintable():
        raise Invalid("name must not contain control characters")
    return name


def mount_path(path: str) -> str:
    if not isinstance(path, str) or not path:
        raise Invalid("mount_paths entries must be non-empty strings")
    if len(path) > MAX_MOUNT_PATH or not path.isprintable():
        raise Invalid(f"mount path {path!r} must be at most {MAX_MOUNT_PATH} printable characters")
    if not path.startswith("/"):
        raise Invalid(f"mount path {path!r} must be absolute")
    if ".." in path.split("/"):
        raise Invalid(f"mount path {path!r} must not contain '..'")
    if path == "/" or path.strip("/") == "":
        raise Invalid("mount path must not be '/'")
    normal = posixpath.normpath(path)
    if normal.startswith("//"):
        normal = normal[1:]
    if normal != path:
        raise Invalid(f"mount path {path!r} is not normalised (use {normal!r})")
    for root in FORBIDDEN_ROOTS:
        if _under(path, root):
            raise Invalid(f"mount path {path!r} must not be under {root}")
    for managed in MANAGED_FILES:
        if _under(managed, path):
            raise Invalid(f"mount path {path!r} would hide {managed}, which the appliance manages")
    return path


def mount_path_in_image(path: str, image) -> str:
    """Refuse a mount path that is not a plain directory path in the guest
    image: one passing through a symlink there (``/var/run -> /run``,
    ``/usr/lib/ssl/private -> /etc/ssl/private``) or naming a file. Choice
    (docs/compute.md): refuse with 400 and name the path the guest would
    really see, rather than mount somewhere else than asked. The driver
    refuses the same at start (it never resolves such a path on the host)."""
    from appliance.host import guestpath

    try:
        link = guestpath.first_symlink(image, path)
        if link is not None:
            real = guestpath.resolve(image, path)
            raise Invalid(f"mount path {path!r} passes through a symbolic link in the guest image "
                          f"({link[0]} -> {link[1]}); in the guest it is {real!r}")
        os.close(guestpath.open_dir(image, path))
    except FileNotFoundError:
        return path          # not in the image: made in the guest's root at start
    except guestpath.GuestPathError as e:
        if e.errno == errno.ELOOP:   # a loop of links
            raise Invalid(f"mount path {path!r}: {e.strerror} in the guest image") from None
        raise Invalid(f"mount path {path!r}: {e.strerror} in the guest image; a mount path must be "
                      "a directory") from None
    else:
        return path


def mount_paths(paths, *, default: tuple[str, ...] | None = None, image=None) -> list[str]:
    """``image``: the guest image's root directory (None: not checked, e.g. the
    fake driver); each path must then be a plain directory path in it."""
    paths = list(paths)
    if not paths and default is not None:
        return list(default)
    if len(paths) > MAX_MOUNTS:
        raise Invalid(f"at most {MAX_MOUNTS} mount_paths")
    clean = [mount_path(p) for p in paths]
    if image is not None:
        for p in clean:
            mount_path_in_image(p, image)
    if len(set(clean)) != len(clean):
        raise Invalid("mount_paths must not repeat a path")
    for a in clean:
        for b in clean:
            if a != b and _under(b, a):
                raise Invalid(f"mount paths must not be nested ({b!r} is under {a!r})")
    return clean


def ingress_rule(port: int, target_port: int | None) -> tuple[int, int]:
    lo, hi = INGRESS_PORT_RANGE
    if port not in INGRESS_SHARED_PORTS and not lo <= port <= hi:
        raise Invalid(f"ingress port {port} must be 80, 443 or {lo}-{hi}")
    target = port if target_port is None else target_port
    if not 1 <= target <= 65535:
        raise Invalid(f"ingress target_port {target} must be 1-65535")
    return port, target
