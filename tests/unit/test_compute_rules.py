"""Instance types, mount paths, names and ingress ports (compute_rules)."""
import pytest

from appliance.core.compute import rules
from appliance.errors import Invalid


def test_instance_types_keep_the_original_names_and_figures():
    figures = {n: (t.cpus, t.memory_mb) for n, t in rules.INSTANCE_TYPES.items()}
    assert figures["nano"] == (0.5, 512) and figures["micro"] == (1.0, 1024) and figures["mini"] == (2.0, 2048)
    assert [figures[n][0] for n in ("tiny", "small", "medium")] == [1.0, 2.0, 4.0]
    assert rules.instance_type("").name == "nano"
    with pytest.raises(Invalid, match="unknown"):
        rules.instance_type("xlarge")


def test_overrides_stay_within_the_type():
    nano = rules.INSTANCE_TYPES["nano"]
    assert rules.memory_mb(nano, None) == 512 and rules.memory_mb(nano, 128) == 128
    assert rules.storage_gb(nano, None) == 5 and rules.storage_gb(nano, 10) == 10
    for bad in (127, 513):
        with pytest.raises(Invalid, match="memory_mb"):
            rules.memory_mb(nano, bad)
    for bad in (0, 11):
        with pytest.raises(Invalid, match="storage_gb"):
            rules.storage_gb(nano, bad)


@pytest.mark.parametrize("path", ["/root", "/data", "/srv/www", "/home/me/work", "/var/lib/postgresql",
                                  "/etc/nginx", "/opt/a b"])
def test_good_mount_paths(path):
    assert rules.mount_path(path) == path


@pytest.mark.parametrize("path, needle", [
    ("", "non-empty"), ("root", "absolute"), ("/", "'/'"), ("//", "'/'"), ("/a/../b", ".."),
    ("/a/./b", "normalised"), ("/a/", "normalised"), ("//a", "normalised"), ("/proc", "/proc"),
    ("/sys/fs", "/sys"), ("/dev", "/dev"), ("/run/x", "/run"), ("/etc", "manages"), ("/usr", "manages"),
    ("/usr/local/sbin", "manages"), ("/etc/ssh", "manages"), ("/a\nb", "printable"), ("/" + "a" * 300, "255"),
])
def test_bad_mount_paths(path, needle):
    with pytest.raises(Invalid) as e:
        rules.mount_path(path)
    assert needle in e.value.message


def test_mount_path_lists():
    assert rules.mount_paths([], default=rules.DEFAULT_MOUNTS) == ["/root"]
    assert rules.mount_paths([]) == []
    assert rules.mount_paths(["/a", "/ab"]) == ["/a", "/ab"]
    for bad, needle in ((["/a", "/a/b"], "nested"), (["/x", "/x"], "repeat"), ([f"/{i}" for i in range(11)], "10")):
        with pytest.raises(Invalid) as e:
            rules.mount_paths(bad)
        assert needle in e.value.message


def test_names_and_ingress_ports():
    assert rules.container_name("dev-box") == "dev-box"
    for bad in ("", "x" * 64, "a\tb"):
        with pytest.raises(Invalid):
            rules.container_name(bad)
    assert rules.ingress_rule(80, None) == (80, 80) and rules.ingress_rule(8080, 3000) == (8080, 3000)
    for port, target in ((22, None), (9000, None), (443, 0), (8000, 65536)):
        with pytest.raises(Invalid):
            rules.ingress_rule(port, target)
