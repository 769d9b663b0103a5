"""The guest root filesystem: a Debian bookworm tree built once with debootstrap.

The image lives at ``<image_dir>/bookworm`` (``Config.image_dir``, outside the
repository) and is only ever read: each guest runs on its own overlayfs layer
over it (see ``drivers/lxc/rootfs.py``). A build goes into a temporary directory next
to the target and is renamed into place only when complete, so a half-built
tree is never used. ``<image>/.appliance-image`` records the image version;
bumping ``IMAGE_VERSION`` (package list or tweaks changed) makes
``image_ready()`` false and the next ``ensure_image()`` rebuilds.

SSH host keys are removed from the image: every guest generates its own.

Command line: ``python -m appliance.host.image build [--force] [--image-dir DIR]``.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

IMAGE_NAME = "bookworm"
IMAGE_VERSION = "2"
STAMP_FILE = ".appliance-image"
PACKAGES = (
    "openssh-server", "iproute2", "procps", "iputils-ping", "ca-certificates",
    "curl", "less", "nano", "vim-tiny", "psmisc", "netbase",
)
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
FALLBACK_MIRROR = "http://deb.debian.org/debian"


class ImageBuildError(RuntimeError):
    pass


def image_path(image_dir: str | os.PathLike) -> Path:
    return Path(image_dir) / IMAGE_NAME


def image_ready(image_dir: str | os.PathLike) -> bool:
    """True when a complete image of the current version is in place."""
    stamp = image_path(image_dir) / STAMP_FILE
    try:
        return stamp.read_text().split()[0] == IMAGE_VERSION
    except (FileNotFoundError, IndexError):
        return False


def debian_mirror(sources=APT_SOURCES) -> str:
    """The Debian archive URL apt on this host is configured with."""
    for entry in sources:
        files = sorted(entry.glob("*")) if entry.is_dir() else [entry]
        for f in files:
            try:
                text = f.read_text()
            except OSError:
                continue
            for url in _debian_urls(text):
                return url
    return FALLBACK_MIRROR


def _debian_urls(text: str):
    # one-line format: "deb [opts] URL bookworm main"; deb822: "URIs: URL" + "Suites: bookworm"
    for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M):
        yield m.group(1).rstrip("/")
    for stanza in re.split(r"\n\s*\n", text):
        uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
        suites = re.search(r"^Suites:\s*(.*)$", stanza, re.M)
        if uris and suites and "bookworm" in suites.group(1).split():
            yield uris.group(1).rstrip("/")


def ensure_image(image_dir: str | os.PathLike, *, log=print) -> Path:
    """Return the image path, building it first if missing or outdated."""
    if image_ready(image_dir):
        return image_path(image_dir)
    return build_image(image_dir, log=log)


def build_image(image_dir: str | os.PathLike, *, force: bool = False,
                mirror: str | None = None, log=print) -> Path:
    """Build the image atomically; concurrent callers wait for one build."""
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    target = image_path(image_dir)
    with open(image_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_ready(image_dir) and not force:
            return target
        prune_old_images(image_dir)
        mirror = mirror or debian_mirror()
        tmp = image_dir / f".{IMAGE_NAME}.building-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cache = image_dir / "debs"
        cache.mkdir(exist_ok=True)
        started = time.monotonic()
        log(f"debootstrap {IMAGE_NAME} from {mirror} into {tmp}")
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
               f"--cache-dir={cache}", IMAGE_NAME, str(tmp), mirror]
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                raise ImageBuildError(f"debootstrap failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
            _finish_tree(tmp)
            (tmp / STAMP_FILE).write_text(f"{IMAGE_VERSION} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
            _replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"image ready at {target} in {time.monotonic() - started:.1f}s")
        return target


def _finish_tree(root: Path) -> None:
    """Make the tree generic: no host keys, no package lists, no machine id."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    for f in (root / "var/cache/apt/archives").glob("*.deb"):
        f.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("guest\n")
    # PermitRootLogin defaults to prohibit-password; keys only, and no PAM
    # session bits that need a real login stack.
    dropin = root / "etc/ssh/sshd_config.d/appliance.conf"
    dropin.write_text("PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n")


def _replace_dir(new: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    busy = _used_by_overlays(target)
    if target.exists():
        target.rename(old)
    new.rename(target)
    # Running guests' overlays still read the old tree (changing a lower
    # layer under a live overlay is undefined): keep it until they are gone.
    if not busy:
        shutil.rmtree(old, ignore_errors=True)


def prune_old_images(image_dir: str | os.PathLike) -> None:
    """Remove replaced image trees once no overlay mount uses the image."""
    target = image_path(image_dir)
    if _used_by_overlays(target):
        return
    for old in Path(image_dir).glob(f".{IMAGE_NAME}.old-*"):
        if not _bind_mounted(old):
            shutil.rmtree(old, ignore_errors=True)


def _used_by_overlays(tree: Path) -> bool:
    """An overlay names the tree as lowerdir, or a (idmapped) bind mount of
    it exists: user-namespace guests use ``<run>/guests/<id>/lower``."""
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return True
    return f"lowerdir={tree}," in mounts or f"lowerdir={tree} " in mounts or _bind_mounted(tree)


def _bind_mounted(tree: Path) -> bool:
    """A mount whose root is this directory (found by inode: the tree may
    have been renamed since it was mounted)."""
    try:
        st = os.stat(tree)
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for line in lines:
        fields = line.split(" ")
        if fields[2] != dev or fields[3] == "/":
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        try:
            pst = os.stat(point)
        except OSError:
            continue
        if (pst.st_dev, pst.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.host.image")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the guest image if missing (or --force)")
    b.add_argument("--force", action="store_true")
    b.add_argument("--image-dir", default=None)
    sub.add_parser("path", help="print the image path")
    args = parser.parse_args(argv)
    image_dir = getattr(args, "image_dir", None)
    if not image_dir:
        from appliance import config
        image_dir = config.load().image_dir
    if args.cmd == "path":
        print(image_path(image_dir))
        return 0
    build_image(image_dir, force=args.force) if args.force else ensure_image(image_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
