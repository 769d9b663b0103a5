"""A guest's files on the host, and its root put together at each start.

Per guest:

- ``<data>/volumes/<id>.img`` (the persistent volume, ``host/volumes.py``),
  mounted at ``<run>/volumes/<id>/`` while the guest runs. Inside it:
  ``mounts/<mount path>`` (bind-mounted into the guest), ``layer/{upper,work}``
  (the overlayfs layer: the guest's writes outside mount paths count against
  its storage size too, and are wiped on every start), ``meta/ssh/`` (the
  guest's SSH host keys, generated once per guest, never visible inside) and
  ``meta/idmap`` (the uid base its files were written with, ``shift_volume``).
- ``<run>/guests/<id>/lower``: an idmapped mount of the read-only image
  (``host/idmap.py``), so the one root-owned image reads as owned by the
  guest's root; a privileged guest uses the image itself.
- ``<run>/guests/<id>/root``: the overlayfs mount (lower below, the layer
  above) that becomes the guest's ``/``.

``<run>`` (``run_dir``, default ``/run/appliance-guests/<hash of data dir>``)
holds only mount points. It exists because a user-namespace guest's root
(an unprivileged host uid) must be able to traverse the path to its root
and its volume (libvirt pivots into them as that uid), while the data
directory stays private (0750). Its directories are 0711: traversable,
not listable.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

from appliance.drivers.base import GuestError, GuestSpec, GuestStartError
from appliance.drivers.lxc.domain_xml import BindMount
from appliance.drivers.lxc.fsutil import (
    GuestOwner,
    is_mounted,
    make_dirs_in_guest,
    make_traversable,
    run,
    unmount,
    write_in_guest,
    write_private,
)
from appliance.host import guestpath, idmap
from appliance.host.volumes import VolumeError, VolumeStore
from appliance.revert import Reverter

log = logging.getLogger(__name__)

INIT_PATH = "/usr/local/sbin/appliance-init"
HOST_KEY_TYPES = ("ed25519", "ecdsa")


def default_run_dir(data_dir: str | os.PathLike) -> Path:
    key = hashlib.sha1(os.fsencode(os.path.realpath(data_dir))).hexdigest()[:12]
    return Path("/run/appliance-guests") / key


class GuestRootfs:
    """The image, the volumes and the run directory of one driver."""

    def __init__(self, image: Path, run_dir: Path, volumes: VolumeStore):
        self.image = image
        self.run_dir = run_dir
        self.guests_dir = run_dir / "guests"
        self.volumes = volumes

    def root(self, guest_id: str) -> Path:
        return self.guests_dir / guest_id / "root"

    def lower(self, guest_id: str) -> Path:
        return self.guests_dir / guest_id / "lower"

    def check_image(self) -> None:
        if not (self.image / "etc/os-release").exists():
            raise GuestStartError(f"guest image missing at {self.image}; run: python -m appliance.host.image build")

    def assemble(self, spec: GuestSpec, ids: idmap.IdRange | None, init_script: str) -> tuple[Path, list[BindMount]]:
        """Mount the guest's volume and root and write into them what the
        appliance provides (init, host name, resolvers, host keys, root's
        authorized keys). Returns the root and the guest's bind mounts. The
        image must be there (``check_image``).

        If a step fails, the earlier ones are undone: nothing of this guest
        stays mounted and its (empty) mount points are removed. Kept on
        purpose: the shared 0711 directories of ``<run>``, a volume re-shifted
        to the guest's current id range, host keys made for the guest (made
        once per guest), the directories of its mount paths in the volume,
        and the files written into the layer (wiped at the next start)."""
        own = GuestOwner(ids)
        # The undos look at what is mounted, so each is registered before its
        # step: a step that fails half way (or finds a dead guest's mounts)
        # is undone too.
        with Reverter() as revert:
            make_traversable(self.run_dir, "guests", "volumes")
            make_traversable(self.guests_dir, spec.id)
            revert.add(self.remove_dirs, spec.id)
            revert.add(self.unmount_volume, spec.id)
            vol = self.volumes.mount(spec.id)
            revert.add(self.unmount_root, spec.id)   # the overlay root and the idmapped image
            shift_volume(spec.id, vol, ids)
            self._reset_layer(spec.id, vol, own)
            lower = self._mount_lower(spec.id, ids)
            root = self._mount_root(spec.id, lower, vol / "layer")
            write_guest_config(root, spec, init_script, own)
            install_host_keys(spec.id, vol, root, own)
            mounts = self._mount_sources(spec, vol, root, ids, own)
            write_authorized_keys(spec, vol, root, own)
            revert.success()
        return root, mounts

    def _reset_layer(self, guest_id: str, vol: Path, own: GuestOwner) -> None:
        """A fresh overlay layer, owned like the guest's "/"."""
        layer = vol / "layer"
        root = self.root(guest_id)
        if is_mounted(root):   # left by a guest that died without a stop: its layer goes next
            run("umount", str(root))
        if layer.exists():
            shutil.rmtree(layer)
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        # the upper dir's owner and mode are those of the guest's "/"
        os.chmod(layer / "upper", self.image.stat().st_mode & 0o7777)
        own(layer / "upper")

    def _mount_lower(self, guest_id: str, ids: idmap.IdRange | None) -> Path:
        if ids is None:
            return self.image
        lower = self.lower(guest_id)
        lower.mkdir(parents=True, exist_ok=True)
        if not is_mounted(lower):
            try:
                idmap.idmapped_bind_mount(self.image, lower, ids)
            except OSError as e:
                raise GuestStartError(f"could not make the idmapped image mount: {e}") from e
        return lower

    def _mount_root(self, guest_id: str, lower: Path, layer: Path) -> Path:
        root = self.root(guest_id)
        root.mkdir(parents=True, exist_ok=True)
        if not is_mounted(root):
            run("mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={lower},upperdir={layer / 'upper'},workdir={layer / 'work'}", str(root))
        return root

    def _mount_sources(self, spec: GuestSpec, vol: Path, root: Path, ids: idmap.IdRange | None,
                       own: GuestOwner) -> list[BindMount]:
        mounts = []
        for path in spec.mount_paths:
            # resolved inside the image, the volume and the root, never on the host
            source = self.volumes.directory(spec.id, "mounts" + path, seed_from=(self.image, path),
                                            id_base=ids.base if ids else 0)
            make_dirs_in_guest(root, path, own)
            mounts.append(BindMount(str(source), path))
        return mounts

    # -- teardown ----------------------------------------------------------------

    def disassemble(self, guest_id: str) -> None:
        """Undo ``assemble``: unmount the root, the image and the volume,
        remove the mount points."""
        self.unmount_root(guest_id)
        self.unmount_volume(guest_id)
        self.remove_dirs(guest_id)

    def unmount_root(self, guest_id: str) -> None:
        """Unmount the guest's root and its idmapped image mount."""
        root = self.root(guest_id)
        for _ in range(50):
            if not is_mounted(root):
                break
            if not unmount(root):
                time.sleep(0.05)  # the controller may still be exiting
        else:
            raise GuestError(f"could not unmount the root of {guest_id}")
        lower = self.lower(guest_id)
        while is_mounted(lower):
            if not unmount(lower):
                raise GuestError(f"could not unmount the image of {guest_id}")

    def unmount_volume(self, guest_id: str) -> None:
        try:
            self.volumes.unmount(guest_id)
        except VolumeError as e:
            raise GuestError(f"could not unmount the volume of {guest_id}: {e}") from e

    def remove_dirs(self, guest_id: str) -> None:
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


def shift_volume(guest_id: str, vol: Path, ids: idmap.IdRange | None) -> None:
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
            write_private(record, f"{new} {idmap.RANGE_SIZE}\n", 0o600)
        return
    started = time.monotonic()
    n = 0
    if (vol / "mounts").exists():
        n = idmap.remap_tree(vol / "mounts", old, new, idmap.RANGE_SIZE)
    write_private(record, f"{new} {idmap.RANGE_SIZE}\n", 0o600)
    log.info("volume of %s: %d entries moved from id base %d to %d in %.2fs",
             guest_id, n, old, new, time.monotonic() - started)


def write_guest_config(root: Path, spec: GuestSpec, init_script: str, own: GuestOwner) -> None:
    """The init script, host name, hosts file and resolvers of the guest."""
    hostname = spec.hostname or spec.id
    write_in_guest(root, INIT_PATH, init_script, 0o755, own)
    write_in_guest(root, "/etc/hostname", hostname + "\n", owner=own)
    write_in_guest(root, "/etc/hosts", f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{spec.ip}\t{hostname}\n", owner=own)
    write_in_guest(root, "/etc/resolv.conf", guest_resolv_conf(), owner=own)


def install_host_keys(guest_id: str, vol: Path, root: Path, own: GuestOwner) -> None:
    """The guest's SSH host keys (made once, kept in the volume's ``meta/ssh``)
    copied into its root, and sshd configured to use them."""
    keys = vol / "meta" / "ssh"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = []
    for kind in HOST_KEY_TYPES:
        key = keys / f"ssh_host_{kind}_key"
        if not key.exists():
            tmp = keys / f".{key.name}.new"
            for f in (tmp, Path(f"{tmp}.pub")):
                f.unlink(missing_ok=True)
            run("ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{guest_id}", "-f", str(tmp))
            os.rename(f"{tmp}.pub", f"{key}.pub")
            os.rename(tmp, key)
        write_in_guest(root, f"/etc/ssh/{key.name}", key.read_text(), 0o600, own)
        write_in_guest(root, f"/etc/ssh/{key.name}.pub", Path(f"{key}.pub").read_text(), 0o644, own)
        lines.append(f"HostKey /etc/ssh/{key.name}\n")
    write_in_guest(root, "/etc/ssh/sshd_config.d/10-appliance-hostkeys.conf", "".join(lines), owner=own)


def write_authorized_keys(spec: GuestSpec, vol: Path, root: Path, own: GuestOwner) -> None:
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


def guest_resolv_conf() -> str:
    """The host's resolvers, minus loopback ones a guest cannot reach."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return ""
    keep = [line for line in lines
            if not (line.startswith("nameserver") and (" 127." in line or " ::1" in line))]
    return "\n".join(keep) + "\n"
