"""The in-root path resolver (``host/guestpath.py``) and its users: nothing
is ever opened, created, copied from or chowned on the host through a path
inside a guest's image, root or volume (issue 11, item 1).

Every test builds a small "guest tree" in a temp dir whose symlinks point at
a "host" directory *outside* it (another temp dir standing in for the host's
/run), and checks that the host side is untouched."""
from __future__ import annotations

import errno
import os
import uuid

import pytest

from appliance.core.compute import rules as compute_rules
from appliance.errors import Invalid
from appliance.host import guestpath, volumes


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def use_openat2(request):
    return request.param


@pytest.fixture
def trees(tmp_path):
    """root: a guest tree like the image; host: what its absolute links would
    reach if the host resolved them."""
    root, host = tmp_path / "root", tmp_path / f"host-{uuid.uuid4().hex[:6]}"
    (root / "run").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "etc" / "ssl" / "private").mkdir(parents=True)
    (root / "usr" / "lib" / "ssl").mkdir(parents=True)
    (root / "root").mkdir()
    (root / "root" / ".bashrc").write_text("guest bashrc\n")
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    os.chmod(host / "secret", 0o600)
    # the image's absolute links, retargeted at our stand-in for the host
    os.symlink(str(host), root / "var" / "run")                  # like /var/run -> /run
    os.symlink("/etc/ssl/private", root / "usr" / "lib" / "ssl" / "private")
    os.symlink("b", root / "a")                                  # a loop
    os.symlink("a", root / "b")
    os.symlink("../../../../../..", root / "up")                 # .. beyond the root
    os.symlink(str(host / "secret"), root / "filelink")           # a link to a file
    os.symlink("/etc", root / "etclink")                          # absolute, inside the tree
    return root, host


def host_listing(host):
    return sorted(p.name for p in host.iterdir())


def test_open_dir_refuses_every_kind_of_link(trees, use_openat2):
    root, host = trees
    for rel, code in [("var/run", errno.ELOOP), ("var/run/x", errno.ELOOP), ("a", errno.ELOOP),
                      ("a/x", errno.ELOOP), ("up", errno.ELOOP), ("up/etc", errno.ELOOP),
                      ("filelink", errno.ELOOP), ("usr/lib/ssl/private", errno.ELOOP),
                      ("root/.bashrc", errno.ENOTDIR)]:
        with pytest.raises(guestpath.GuestPathError) as e:
            guestpath.open_dir(root, rel, use_openat2=use_openat2)
        assert e.value.errno == code, rel
    with pytest.raises(FileNotFoundError):
        guestpath.open_dir(root, "missing/x", use_openat2=use_openat2)
    fd = guestpath.open_dir(root, "/etc/ssl/private", use_openat2=use_openat2)
    assert os.path.samestat(os.fstat(fd), os.stat(root / "etc/ssl/private"))
    os.close(fd)


@pytest.mark.parametrize("rel", ["..", "../x", "a/../b", "./x", "x/."])
def test_dot_components_are_refused_before_anything_happens(trees, rel):
    root, _ = trees
    with pytest.raises(guestpath.GuestPathError) as e:
        guestpath.make_dirs(root, rel)
    assert e.value.errno == errno.EINVAL
    assert not (root / "x").exists() and not (root.parent / "x").exists()


def test_make_dirs_never_creates_on_the_host(trees):
    root, host = trees
    before = host_listing(host)
    for rel in ["var/run/new", "var/run/new/deeper", "usr/lib/ssl/private/x", "a/x", "up/x"]:
        with pytest.raises(guestpath.GuestPathError):
            guestpath.make_dirs(root, rel)
    assert host_listing(host) == before
    assert not (root.parent.parent / "x").exists()
    fd, top = guestpath.make_dirs(root, "/data/one/two", mode=0o750)
    os.close(fd)
    assert top == "data" and (root / "data/one/two").is_dir()
    assert (root / "data/one").stat().st_mode & 0o777 == 0o750
    fd, top = guestpath.make_dirs(root, "/data/one/two")
    os.close(fd)
    assert top is None


def test_make_dirs_refuses_a_file_on_the_way(trees):
    root, _ = trees
    with pytest.raises(guestpath.GuestPathError) as e:
        guestpath.make_dirs(root, "root/.bashrc/x")
    assert e.value.errno == errno.ENOTDIR


def test_write_file_replaces_a_link_and_never_writes_through_one(trees):
    root, host = trees
    guestpath.write_file(root, "filelink", "guest data\n", mode=0o600)
    assert (host / "secret").read_text() == "host secret\n", "the link's target is untouched"
    assert not (root / "filelink").is_symlink() and (root / "filelink").read_text() == "guest data\n"
    with pytest.raises(guestpath.GuestPathError):
        guestpath.write_file(root, "var/run/planted", "x")
    assert host_listing(host) == ["secret"]
    guestpath.write_file(root, "/root/.ssh/authorized_keys", "k\n", mode=0o600, dir_mode=0o700)
    assert (root / "root/.ssh").stat().st_mode & 0o777 == 0o700
    assert (root / "root/.ssh/authorized_keys").stat().st_mode & 0o777 == 0o600


def test_resolve_follows_links_inside_the_root_only(trees):
    root, host = trees
    assert guestpath.resolve(root, "/etclink/ssl") == "/etc/ssl"
    assert guestpath.resolve(root, "/usr/lib/ssl/private/k") == "/etc/ssl/private/k"
    assert guestpath.resolve(root, "/up") == "/", ".. stops at the root"
    assert guestpath.resolve(root, "/up/etc/ssl") == "/etc/ssl"
    # an absolute link restarts at the guest's root, not the host's: host/secret is not found
    assert guestpath.resolve(root, "/var/run/secret") == str(host / "secret")
    assert not (root / str(host).lstrip("/")).exists()
    assert guestpath.resolve(root, "/filelink") == str(host / "secret")
    with pytest.raises(guestpath.GuestPathError) as e:
        guestpath.resolve(root, "/a/x")
    assert e.value.errno == errno.ELOOP


def test_first_symlink_names_the_link(trees):
    root, host = trees
    assert guestpath.first_symlink(root, "/var/run/x") == ("/var/run", str(host))
    assert guestpath.first_symlink(root, "/usr/lib/ssl/private/x") == ("/usr/lib/ssl/private", "/etc/ssl/private")
    assert guestpath.first_symlink(root, "/data/x") is None
    assert guestpath.first_symlink(root, "/root/.bashrc") is None


# -- mount path rules against the image -------------------------------------------

def test_mount_paths_through_image_links_are_refused_with_the_real_path(trees):
    root, host = trees
    for path in ["/var/run/aptest", "/usr/lib/ssl/private", "/usr/lib/ssl/private/x", "/a", "/etclink/x"]:
        with pytest.raises(Invalid) as e:
            compute_rules.mount_paths([path], image=root)
        assert "symbolic link" in e.value.message, path
    with pytest.raises(Invalid) as e:
        compute_rules.mount_paths(["/usr/lib/ssl/private"], image=root)
    assert "'/etc/ssl/private'" in e.value.message
    with pytest.raises(Invalid) as e:
        compute_rules.mount_paths(["/root/.bashrc"], image=root)
    assert "not a directory" in e.value.message
    assert compute_rules.mount_paths(["/root", "/data", "/etc/ssl/private"], image=root) == \
        ["/root", "/data", "/etc/ssl/private"]
    assert host_listing(host) == ["secret"]


# -- volume directories seeded from the image --------------------------------------

@pytest.fixture
def volume(tmp_path, monkeypatch):
    store = volumes.VolumeStore(tmp_path / "vols", mount_root=tmp_path / "mnt")
    (tmp_path / "mnt" / "v").mkdir(parents=True)
    monkeypatch.setattr(volumes.os.path, "ismount", lambda p: str(p) == str(tmp_path / "mnt" / "v"))
    return store, tmp_path / "mnt" / "v"


def test_volume_directory_never_seeds_from_the_host(trees, volume):
    root, host = trees
    store, mnt = volume
    for path in ["/var/run/aptest", "/usr/lib/ssl/private/x", "/a/x"]:
        with pytest.raises(volumes.VolumeError):
            store.directory("v", "mounts" + path, seed_from=(root, path))
    found = [str(p.relative_to(mnt)) for p in mnt.rglob("*")]
    assert not any("secret" in f for f in found), found
    assert host_listing(host) == ["secret"]
    got = store.directory("v", "mounts/root", seed_from=(root, "/root"))
    assert (got / ".bashrc").read_text() == "guest bashrc\n", "a plain image directory is still seeded"


def test_volume_directory_refuses_links_the_guest_planted(trees, volume):
    root, host = trees
    store, mnt = volume
    (mnt / "mounts" / "data").mkdir(parents=True)
    os.symlink(str(host), mnt / "mounts" / "data" / "sub")     # the guest plants a link
    with pytest.raises(volumes.VolumeError):
        store.directory("v", "mounts/data/sub/x", seed_from=(root, "/data/sub/x"))
    assert host_listing(host) == ["secret"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_volume_directory_shifts_new_dirs_to_the_guest(trees, volume):
    root, _ = trees
    store, mnt = volume
    base = 1 << 30
    got = store.directory("v", "mounts/root", seed_from=(root, "/root"), id_base=base)
    assert got.stat().st_uid == base and (got / ".bashrc").stat().st_uid == base
    assert (mnt / "mounts").stat().st_uid == base, "new parents too"


# -- room for sparse volumes (issue 19, "also") ---------------------------------------

def test_volumes_are_refused_beyond_free_space_minus_promises(tmp_path, monkeypatch):
    gib = volumes.GIB
    store = volumes.VolumeStore(tmp_path / "vols", margin_gb=1)
    monkeypatch.setattr(store, "free_bytes", lambda: 10 * gib)
    monkeypatch.setattr(volumes, "_run", lambda *cmd: None)      # no mkfs: the sparse file is what counts
    assert store.create("a", 4)                                # 4 promised, 1 margin
    store.reserve("b", 4)                                      # 8 + 1 of 10
    with pytest.raises(volumes.VolumeNoRoom) as e:
        store.reserve("c", 2)
    assert "not enough disk" in str(e.value)
    with pytest.raises(volumes.VolumeNoRoom):
        store.create("c", 2)                                   # also without a reservation
    assert not store.image("c").exists()
    store.create("b", 4)                                       # its own reservation does not count twice
    store.delete("a")
    store.reserve("c", 2)                                      # room again
    # what a volume has really allocated is no longer "promised": only the rest is
    with open(store.image("b"), "r+b") as f:
        f.write(b"x" * (1 << 20))
        os.fsync(f.fileno())
    assert store.promised_bytes() < 6 * gib


@pytest.mark.parametrize("use_openat2", [True, False])
def test_is_regular_file_never_follows_a_guest_link_to_the_host(tmp_path, monkeypatch, use_openat2):
    """guestinit.wait_ready's check (red team round 3): a link answers False
    whether or not its target exists on the host."""
    if not use_openat2:
        monkeypatch.setattr(guestpath, "_openat2_works", False)
    root, host = tmp_path / "guest", tmp_path / "host-only"
    (root / "run").mkdir(parents=True)
    host.write_text("x")
    (root / "run" / "ready").write_text("")
    (root / "run" / "to-host").symlink_to(host)
    (root / "run" / "to-missing").symlink_to(tmp_path / "missing")
    (root / "hostdir").symlink_to(tmp_path)
    assert guestpath.is_regular_file(root, "/run/ready")
    assert not guestpath.is_regular_file(root, "/run/to-host")
    assert not guestpath.is_regular_file(root, "/run/to-missing")
    assert not guestpath.is_regular_file(root, "/hostdir/host-only")
    assert not guestpath.is_regular_file(root, "/run")          # a directory
    assert not guestpath.is_regular_file(root, "/run/absent")
