"""Role appliance_seaweedfs rendered without a host (docs/seaweedfs-ansible.md):
what inventory/lab gets with `appliance_storage_backend: seaweedfs`, and a host alone."""
from __future__ import annotations

import subprocess
import sys
import tomllib

from installrun import REPO, ansible_env, tool

from appliance import config as config_mod

ROLES = "playbooks/roles"
DEFAULTS = [f"-e@{ROLES}/{role}/defaults/main.yml" for role in (
    "appliance_common", "appliance_tls", "appliance_config", "appliance_cluster", "appliance_seaweedfs")]
DB_URL = "postgresql://appliance:p%40ss@192.0.2.11:5432/appliance"


def render(tmp_path, hosts: str, inventory: str, template: str, *extra: str) -> dict[str, str]:
    """The template rendered for each of *hosts* ({host: text})."""
    proc = subprocess.run(
        [tool("ansible"), hosts, "-c", "local", "-i", inventory, "-m", "ansible.builtin.template",
         "-a", f"src={ROLES}/{template} dest={tmp_path}/{{{{ inventory_hostname }}}}.out",
         "-e", f"ansible_python_interpreter={sys.executable}", *DEFAULTS,
         "-e", "appliance_storage_backend=seaweedfs", *(arg for var in extra for arg in ("-e", var))],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {h: (tmp_path / f"{h}.out").read_text() for h in hosts.split(",")}


def exec_start(unit: str) -> list[str]:
    (line,) = [x for x in unit.splitlines() if x.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=").split()


def test_lab_host_config_points_at_its_own_filer_and_the_three_masters(tmp_path):
    text = render(tmp_path, "lab2", "inventory/lab", "appliance_config/templates/appliance.toml.j2",
                  f"appliance_cluster_db_url={DB_URL}")["lab2"]
    (tmp_path / "appliance.toml").write_text(text)
    loaded = config_mod.load(tmp_path / "appliance.toml", env={})   # check_storage accepts it
    assert (loaded.storage_backend, loaded.seaweedfs_embedded) == ("seaweedfs", False)
    assert loaded.seaweedfs_filer == "http://192.0.2.12:9888"
    assert loaded.seaweedfs_master == "192.0.2.11:9333,192.0.2.12:9333,192.0.2.13:9333"
    assert loaded.seaweedfs_replication == "010"
    assert loaded.seaweedfs_jwt_key_file == "/var/lib/appliance/seaweedfs_jwt_key"


def test_lab_units_bind_the_host_address_with_explicit_ports_racks_and_memory_limits(tmp_path):
    masters = "-master=192.0.2.11:9333.19333,192.0.2.12:9333.19333,192.0.2.13:9333.19333"
    for item, want in [
        ("seaweedfs-master", ["-port=9333", "-port.grpc=19333", "-defaultReplication=010", "-telemetry=false",
                              masters.replace("-master=", "-peers=")]),
        ("seaweedfs-volume", ["-port=9380", "-port.grpc=19380", "-rack=lab3", masters]),
        ("seaweedfs-filer", ["-port=9888", "-port.grpc=19888", "-defaultReplicaPlacement=010", masters]),
    ]:
        unit = render(tmp_path, "lab3", "inventory/lab", "appliance_seaweedfs/templates/seaweedfs.service.j2",
                      f"item={item}", f"appliance_cluster_db_url={DB_URL}")["lab3"]
        argv = exec_start(unit)
        assert argv[:4] == ["/opt/appliance/venv/bin/weed", "-logtostderr", "-config_dir=/etc/seaweedfs",
                            item.removeprefix("seaweedfs-")]
        assert {"-ip=192.0.2.13", "-ip.bind=192.0.2.13", *want} <= set(argv), argv
        assert "Environment=GOMEMLIMIT=" in unit and "\nMemoryMax=" in unit and "\nUser=seaweedfs\n" in unit
        assert not any("0.0.0.0" in a for a in argv)


def test_filer_store_is_the_cluster_postgresql_in_its_own_schema(tmp_path):
    text = render(tmp_path, "lab1", "inventory/lab", "appliance_seaweedfs/templates/filer.toml.j2",
                  f"appliance_cluster_db_url={DB_URL}")["lab1"]
    store = tomllib.loads(text)["postgres2"]
    assert store["enabled"] is True
    assert (store["hostname"], store["port"], store["username"], store["password"], store["database"],
            store["schema"]) == ("192.0.2.11", 5432, "appliance", "p@ss", "appliance", "seaweedfs")
    assert "%s" in store["createTable"] and "ON CONFLICT" in store["upsertQuery"]


def test_a_host_alone_keeps_seaweedfs_on_loopback_with_one_copy(tmp_path):
    inventory = tmp_path / "single.yml"
    inventory.write_text("appliance:\n  hosts:\n    solo:\n      ansible_host: 192.0.2.50\n")
    out = tmp_path / "out"
    out.mkdir()
    toml = tomllib.loads(render(out, "solo", str(inventory), "appliance_config/templates/appliance.toml.j2")["solo"])
    assert (toml["seaweedfs_filer"], toml["seaweedfs_master"], toml["seaweedfs_replication"]) == (
        "http://127.0.0.1:9888", "127.0.0.1:9333", "000")
    unit = render(out, "solo", str(inventory), "appliance_seaweedfs/templates/seaweedfs.service.j2",
                  "item=seaweedfs-master")["solo"]
    assert {"-ip.bind=127.0.0.1", "-peers=none"} <= set(exec_start(unit))
    filer = tomllib.loads(render(out, "solo", str(inventory), "appliance_seaweedfs/templates/filer.toml.j2")["solo"])
    assert filer["leveldb2"] == {"enabled": True, "dir": "/var/lib/seaweedfs/filer/filerldb2"}


def test_security_toml_carries_the_keys_read_on_the_first_host(tmp_path):
    import base64
    import json
    keys = {"results": [{"source": f"/var/lib/appliance/{name}", "content": base64.b64encode(f"{name}-k\n".encode()).decode()}
                        for name in ("seaweedfs_jwt_key", "seaweedfs_volume_key", "seaweedfs_volume_read_key")]}
    text = render(tmp_path, "lab1", "inventory/lab", "appliance_seaweedfs/templates/security.toml.j2",
                  json.dumps({"appliance_seaweedfs_keys": keys}))["lab1"]
    toml = tomllib.loads(text)
    assert toml["jwt"]["filer_signing"]["key"] == toml["jwt"]["filer_signing"]["read"]["key"] == "seaweedfs_jwt_key-k"
    assert toml["jwt"]["signing"]["key"] == "seaweedfs_volume_key-k"
    assert toml["jwt"]["signing"]["read"]["key"] == "seaweedfs_volume_read_key-k"
