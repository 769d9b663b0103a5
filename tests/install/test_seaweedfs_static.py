"""Role appliance_seaweedfs rendered without a host (docs/seaweedfs-ansible.md):
what inventory/lab gets with `appliance_storage_backend: seaweedfs`, and a host alone."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from installrun import REPO, ansible_env, tool

from appliance import config as config_mod

ROLES = REPO / "playbooks/roles"
DEFAULTS = [f"-e@{ROLES}/{role}/defaults/main.yml" for role in (
    "appliance_common", "appliance_tls", "appliance_config", "appliance_cluster", "appliance_seaweedfs")]
DB_URL = "postgresql://appliance:p%40ss@192.0.2.11:5432/appliance"
KEY_NAMES = ("seaweedfs_jwt_key", "seaweedfs_volume_key", "seaweedfs_volume_read_key")
# What the role reads on the first host (slurp results), for security.toml.
KEYS = {"results": [{"source": f"/var/lib/appliance/{name}",
                     "content": base64.b64encode(f"{name}-k\n".encode()).decode()} for name in KEY_NAMES]}
TEMPLATES = {
    "appliance.toml": "appliance_config/templates/appliance.toml.j2",
    "filer.toml": "appliance_seaweedfs/templates/filer.toml.j2",
    "security.toml": "appliance_seaweedfs/templates/security.toml.j2",
    **{unit: "appliance_seaweedfs/templates/seaweedfs.service.j2"
       for unit in ("seaweedfs-master", "seaweedfs-volume", "seaweedfs-filer")},
    "firewall.nft": "appliance_seaweedfs/templates/firewall.nft.j2",
    "seaweedfs-firewall": "appliance_seaweedfs/templates/seaweedfs-firewall.service.j2",
}


# Every template rendered by lookups on the control node (no module runs: fast), as one JSON string.
RENDER = ("{% set ns = namespace(out={}) %}{% for name, src in templates.items() %}{% set ns.out = ns.out | combine("
          "{name: lookup('ansible.builtin.template', roles ~ '/' ~ src, template_vars={'item': name})}) %}"
          "{% endfor %}{{ ns.out | to_json }}")


def render_all(out: Path, inventory: str, db_url: str) -> None:
    """Every template of TEMPLATES for every host of *inventory*, in one run: out/<host>/<name>.
    (The unit template names its unit `item`, as the role's loop does.)"""
    proc = subprocess.run(
        [tool("ansible"), "appliance", "-i", inventory, "-c", "local", "-o", "-m", "ansible.builtin.debug",
         "-a", f"msg={RENDER}", "-e", f"ansible_python_interpreter={sys.executable}", *DEFAULTS,
         "-e", json.dumps({"appliance_storage_backend": "seaweedfs", "appliance_cluster_db_url": db_url,
                           "appliance_seaweedfs_keys": KEYS, "templates": TEMPLATES, "roles": str(ROLES)})],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    for line in proc.stdout.splitlines():
        host, _, result = line.partition(" | SUCCESS => ")
        (out / host).mkdir()
        for name, text in json.loads(json.loads(result)["msg"]).items():
            (out / host / name).write_text(text)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lab")
    render_all(out, "inventory/lab", DB_URL)
    return out


@pytest.fixture(scope="module")
def solo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("solo")
    (out / "hosts.yml").write_text("appliance:\n  hosts:\n    solo:\n      ansible_host: 192.0.2.50\n")
    render_all(out, str(out / "hosts.yml"), "")
    return out / "solo"


def exec_start(unit: str) -> list[str]:
    (line,) = [x for x in unit.splitlines() if x.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=").split()


def test_lab_host_config_points_at_its_own_filer_and_the_three_masters(lab):
    loaded = config_mod.load(lab / "lab2/appliance.toml", env={})   # check_storage accepts it
    assert (loaded.storage_backend, loaded.seaweedfs_embedded) == ("seaweedfs", False)
    assert loaded.seaweedfs_filer == "http://192.0.2.12:9888"
    assert loaded.seaweedfs_master == "192.0.2.11:9333,192.0.2.12:9333,192.0.2.13:9333"
    assert loaded.seaweedfs_replication == "010"
    assert loaded.seaweedfs_jwt_key_file == "/var/lib/appliance/seaweedfs_jwt_key"


def test_lab_units_bind_the_host_address_with_explicit_ports_racks_and_memory_limits(lab):
    masters = "-master=192.0.2.11:9333.19333,192.0.2.12:9333.19333,192.0.2.13:9333.19333"
    for unit, want in [
        ("seaweedfs-master", ["-port=9333", "-port.grpc=19333", "-defaultReplication=010", "-telemetry=false",
                              masters.replace("-master=", "-peers=")]),
        ("seaweedfs-volume", ["-port=9380", "-port.grpc=19380", "-rack=lab3", masters]),
        ("seaweedfs-filer", ["-port=9888", "-port.grpc=19888", "-defaultReplicaPlacement=010", masters]),
    ]:
        text = (lab / "lab3" / unit).read_text()
        argv = exec_start(text)
        assert argv[:4] == ["/opt/appliance/venv/bin/weed", "-logtostderr", "-config_dir=/etc/seaweedfs",
                            unit.removeprefix("seaweedfs-")]
        assert {"-ip=192.0.2.13", "-ip.bind=192.0.2.13", *want} <= set(argv), argv
        assert "\nEnvironment=GOMEMLIMIT=" in text and "\nMemoryMax=" in text and "\nUser=seaweedfs\n" in text
        assert not any("0.0.0.0" in a for a in argv)


def test_filer_store_is_the_cluster_postgresql_in_its_own_schema(lab):
    store = tomllib.loads((lab / "lab1/filer.toml").read_text())["postgres2"]
    assert store["enabled"] is True
    assert (store["hostname"], store["port"], store["username"], store["password"], store["database"],
            store["schema"]) == ("192.0.2.11", 5432, "appliance", "p@ss", "appliance", "seaweedfs")
    assert "%s" in store["createTable"] and "ON CONFLICT" in store["upsertQuery"]


def test_security_toml_carries_the_keys_read_on_the_first_host(lab):
    jwt = tomllib.loads((lab / "lab2/security.toml").read_text())["jwt"]
    assert jwt["filer_signing"]["key"] == jwt["filer_signing"]["read"]["key"] == "seaweedfs_jwt_key-k"
    assert jwt["signing"]["key"] == "seaweedfs_volume_key-k"
    assert jwt["signing"]["read"]["key"] == "seaweedfs_volume_read_key-k"


def test_a_host_alone_keeps_seaweedfs_on_loopback_with_one_copy(solo):
    toml = tomllib.loads((solo / "appliance.toml").read_text())
    assert (toml["seaweedfs_filer"], toml["seaweedfs_master"], toml["seaweedfs_replication"]) == (
        "http://127.0.0.1:9888", "127.0.0.1:9333", "000")
    assert {"-ip.bind=127.0.0.1", "-peers=none"} <= set(exec_start((solo / "seaweedfs-master").read_text()))
    filer = tomllib.loads((solo / "filer.toml").read_text())
    assert filer["leveldb2"] == {"enabled": True, "dir": "/var/lib/seaweedfs/filer/filerldb2"}


WEED_UNITS = ("seaweedfs-master", "seaweedfs-volume", "seaweedfs-filer")
PORTS = "9333, 19333, 9380, 19380, 9888, 19888"


def test_lab_firewall_admits_loopback_and_the_cluster_hosts_only_to_the_six_ports(lab):
    rules = (lab / "lab2/firewall.nft").read_text()
    # One `nft -f` replaces the table atomically.
    assert re.search(r"^table inet appliance_seaweedfs\ndelete table inet appliance_seaweedfs\n"
                     r"table inet appliance_seaweedfs \{$", rules, re.M), rules
    body = [line.strip() for line in rules.splitlines() if line.startswith("\t\t") and not line.strip().startswith("#")]
    assert body == [
        "type filter hook input priority filter - 10; policy accept;",
        f'iifname "lo" tcp dport {{ {PORTS} }} accept',
        f"ip saddr {{ 192.0.2.11, 192.0.2.12, 192.0.2.13 }} tcp dport {{ {PORTS} }} accept",
        f"tcp dport {{ {PORTS} }} drop",
    ], rules
    # nft itself accepts the file (in a network namespace of its own: no root, nothing of this machine's).
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "nft", "-c", "-f",
                           str(lab / "lab2/firewall.nft")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_lab_weed_units_start_after_the_firewall_which_loads_before_them(lab):
    for unit in WEED_UNITS:
        text = (lab / "lab3" / unit).read_text()
        assert "\nRequires=seaweedfs-firewall.service\nAfter=seaweedfs-firewall.service\n" in text, text
    firewall = (lab / "lab3/seaweedfs-firewall").read_text()
    assert "\nType=oneshot\nRemainAfterExit=yes\n" in firewall
    assert "\nExecStart=/usr/sbin/nft -f /etc/seaweedfs/firewall.nft\n" in firewall
    units = " ".join(f"{unit}.service" for unit in WEED_UNITS)
    assert f"\nBefore=network-pre.target shutdown.target {units}\n" in firewall


def test_a_host_alone_needs_no_firewall(solo):
    for unit in WEED_UNITS:
        assert "seaweedfs-firewall" not in (solo / unit).read_text()
