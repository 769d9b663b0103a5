"""Golden-file tests of the LXC domain XML builder.

Regenerate after an intended change: ``UPDATE_GOLDEN=1 pytest tests/unit/test_domain_xml.py``
and review the diff of ``tests/unit/golden/``.
"""
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.drivers.lxc.domain_xml import (
    BindMount,
    BridgeInterface,
    DomainSpec,
    IdMap,
    build_domain_xml,
    cpu_quota_us,
)
from appliance.host import network

GOLDEN = Path(__file__).parent / "golden"

NIC = BridgeInterface(bridge="apbr0", mac=network.mac_for_ip("10.217.0.7"), ip="10.217.0.7",
                      prefix=24, gateway="10.217.0.1", host_dev="ap-a1b2c3d4")

SPECS = {
    "minimal": DomainSpec(name="ap-min", root_dir="/srv/guests/min/root",
                          init="/usr/local/sbin/appliance-init", memory_mb=512, cpus=1),
    "nano": DomainSpec(
        name="ap-a1b2c3d4", root_dir="/var/lib/appliance/guests/a1b2c3d4/root",
        init="/usr/local/sbin/appliance-init", memory_mb=512, cpus=0.5, interface=NIC,
        mounts=(BindMount("/var/lib/appliance/volumes/a1b2c3d4/mounts/root", "/root"),
                BindMount("/var/lib/appliance/volumes/a1b2c3d4/mounts/srv/data", "/srv/data"))),
    "medium_readonly_env": DomainSpec(
        name="ap-m1", root_dir="/r", init="/sbin/init", memory_mb=4096, cpus=4, interface=NIC,
        mounts=(BindMount("/data/ro", "/ro", readonly=True),),
        init_args=("--flag", "x"), init_env=(("GUEST", "m1"),),
        uuid="2d3c9e1c-7a6f-4a53-9f1e-0f8a8a9c6b10"),
    "nano_userns": DomainSpec(
        name="ap-a1b2c3d4", root_dir="/run/appliance-guests/0123456789ab/guests/a1b2c3d4/root",
        init="/usr/local/sbin/appliance-init", memory_mb=512, cpus=0.5, interface=NIC,
        mounts=(BindMount("/run/appliance-guests/0123456789ab/volumes/a1b2c3d4/mounts/root", "/root"),),
        idmap=IdMap(target=1073872896, count=65536)),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_matches_golden_file(name):
    xml = build_domain_xml(SPECS[name])
    path = GOLDEN / f"{name}.xml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(xml)
    assert xml == path.read_text()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_golden_files_are_valid_libvirt_xml(name):
    validator = shutil.which("virt-xml-validate")
    if not validator or not shutil.which("xmllint"):   # the validator is a shell script around xmllint
        pytest.fail("virt-xml-validate (libvirt-clients) and xmllint (libxml2-utils) are needed: "
                    "run scripts/install-deps.sh")
    proc = subprocess.run([validator, str(GOLDEN / f"{name}.xml"), "domain"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_cpu_limit_is_a_cgroup_quota_not_vcpus():
    root = ET.fromstring(build_domain_xml(SPECS["nano"]))
    assert root.findtext("cputune/period") == "100000"
    assert root.findtext("cputune/quota") == "50000"
    assert root.findtext("memory") == "512" and root.find("memory").get("unit") == "MiB"


def test_quota_scales_with_cpus_and_has_a_floor():
    assert cpu_quota_us(2) == 200_000
    assert cpu_quota_us(0.25) == 25_000
    assert cpu_quota_us(0.001) == 1000


def test_interface_has_fixed_mac_address_and_default_route():
    iface = ET.fromstring(build_domain_xml(SPECS["nano"])).find("devices/interface")
    assert iface.find("mac").get("address") == "02:a9:0a:d9:00:07"
    assert iface.find("ip").attrib == {"address": "10.217.0.7", "family": "ipv4", "prefix": "24"}
    assert iface.find("route").get("gateway") == "10.217.0.1"


def test_root_filesystem_comes_first_then_mount_paths():
    targets = [fs.find("target").get("dir")
               for fs in ET.fromstring(build_domain_xml(SPECS["nano"])).findall("devices/filesystem")]
    assert targets == ["/", "/root", "/srv/data"]


def test_mac_is_derived_from_ip_and_stable():
    assert network.mac_for_ip("10.217.0.2") == network.mac_for_ip("10.217.0.2") == "02:a9:0a:d9:00:02"
    assert network.mac_for_ip("10.217.0.2") != network.mac_for_ip("10.217.0.3")


def test_ip_allocation_skips_gateway_and_used():
    assert network.gateway_ip("10.217.0.0/24") == "10.217.0.1"
    assert network.allocate_ip("10.217.0.0/24", []) == "10.217.0.2"
    assert network.allocate_ip("10.217.0.0/24", ["10.217.0.2", "10.217.0.4"]) == "10.217.0.3"
    with pytest.raises(network.NetworkError):
        network.allocate_ip("10.217.0.0/30", ["10.217.0.2"])


def test_user_namespace_maps_uids_and_gids_to_the_guest_range():
    idmap = ET.fromstring(build_domain_xml(SPECS["nano_userns"])).find("idmap")
    assert idmap.find("uid").attrib == {"start": "0", "target": "1073872896", "count": "65536"}
    assert idmap.find("gid").attrib == {"start": "0", "target": "1073872896", "count": "65536"}
    assert ET.fromstring(build_domain_xml(SPECS["nano"])).find("idmap") is None
