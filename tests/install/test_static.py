"""Checks of the install files that need no host: ansible-lint, syntax, vagrant validate."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib

import pytest
from installrun import REPO, ansible_env, tool

from appliance import config as config_mod


def test_ansible_lint_passes():
    proc = subprocess.run(
        [tool("ansible-lint"), "--offline", "--nocolor", "playbooks/", "inventory/"],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def render_config(dest, *extra_vars: str) -> dict:
    """playbooks/roles/appliance_config's template with the roles' defaults, for host cloud.example."""
    roles = "playbooks/roles"
    defaults = [f"-e@{roles}/{role}/defaults/main.yml"
                for role in ("appliance_common", "appliance_tls", "appliance_config")]
    proc = subprocess.run(
        [tool("ansible"), "cloud.example", "-c", "local", "-i", "cloud.example,", "-m", "ansible.builtin.template",
         "-a", f"src={roles}/appliance_config/templates/appliance.toml.j2 dest={dest}",
         "-e", f"ansible_python_interpreter={sys.executable}",
         *defaults,
         *(arg for var in extra_vars for arg in ("-e", var))],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tomllib.loads(dest.read_text())


def test_config_template_of_a_lab_host_joins_the_cluster(tmp_path):
    """inventory/lab is one cloud: lab2 gets its name, its own guest subnet,
    the cluster listener on its address and the certificate files."""
    roles = "playbooks/roles"
    defaults = [f"-e@{roles}/{role}/defaults/main.yml"
                for role in ("appliance_common", "appliance_tls", "appliance_config", "appliance_cluster")]
    dest = tmp_path / "appliance.toml"
    proc = subprocess.run(
        [tool("ansible"), "lab2", "-c", "local", "-i", "inventory/lab", "-m", "ansible.builtin.template",
         "-a", f"src={roles}/appliance_config/templates/appliance.toml.j2 dest={dest}",
         "-e", f"ansible_python_interpreter={sys.executable}", *defaults,
         "-e", "appliance_cluster_db_url=postgresql://appliance:pw@192.0.2.11:5432/appliance"],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    loaded = config_mod.load(dest, env={})
    assert (loaded.host_name, loaded.guest_subnet) == ("lab2", "10.217.1.0/24")
    assert loaded.cluster_listen == loaded.cluster_address == "192.0.2.12:7443"
    assert loaded.db_url == "postgresql://appliance:pw@192.0.2.11:5432/appliance"
    assert (loaded.cluster_ca_file, loaded.cluster_cert_file, loaded.cluster_key_file) == (
        "/etc/appliance/cluster/ca.pem", "/etc/appliance/cluster/host.pem", "/etc/appliance/cluster/host.key")


def test_config_template_of_a_host_alone_has_no_cluster_settings(tmp_path):
    rendered = render_config(tmp_path / "appliance.toml")
    assert rendered["guest_subnet"] == "10.217.0.0/24"
    assert rendered["host_name"] == "cloud.example"   # its containers' host: kept if it grows into a cluster
    assert not {"db_url", "cluster_listen", "cluster_ca_file"} & set(rendered), rendered


def test_config_template_advertises_the_public_host_and_listens_everywhere(tmp_path):
    rendered = render_config(tmp_path / "appliance.toml")
    assert rendered["public_host"] == "cloud.example" and rendered["ssh_listen"] == "0.0.0.0"
    assert "ssh_host" not in rendered
    loaded = config_mod.load(tmp_path / "appliance.toml", env={})  # the daemons' own loader accepts it
    assert (loaded.public_host, loaded.ssh_listen, loaded.ssh_port) == ("cloud.example", "0.0.0.0", 2222)


def test_config_template_writes_public_origins_only_when_set(tmp_path):
    assert "public_origins" not in render_config(tmp_path / "appliance.toml")
    origins = '{"appliance_config_public_origins": ["https://cloud.example.org", "https://dash.example.org:8443"]}'
    rendered = render_config(tmp_path / "appliance.toml", origins)
    assert rendered["public_origins"] == "https://cloud.example.org,https://dash.example.org:8443"
    as_text = render_config(tmp_path / "text.toml", "appliance_config_public_origins=https://cloud.example.org")
    assert as_text["public_origins"] == "https://cloud.example.org"
    loaded = config_mod.load(tmp_path / "appliance.toml", env={})
    assert loaded.public_origins == rendered["public_origins"]


def test_config_template_reads_the_old_listen_variable_name(tmp_path):
    rendered = render_config(tmp_path / "appliance.toml", "appliance_config_ssh_host=10.9.8.7")
    assert rendered["ssh_listen"] == "10.9.8.7" and rendered["public_host"] == "cloud.example"
    rendered = render_config(tmp_path / "appliance.toml", "appliance_config_ssh_listen=10.1.1.1")
    assert rendered["ssh_listen"] == "10.1.1.1"


@pytest.mark.parametrize("inventory", ["single", "lab"])
def test_example_inventories_keep_the_old_listen_variable_name_working(inventory):
    """The role's default derives appliance_config_ssh_listen from the old name
    appliance_config_ssh_host; an inventory that sets ssh_listen itself (group_vars
    outrank role defaults) would silently ignore an old-name override."""
    import yaml

    for path in (REPO / "inventory" / inventory).rglob("*.yml"):
        text = yaml.safe_load(path.read_text()) or {}
        assert "appliance_config_ssh_listen" not in text, f"{path} overrides the role's ssh_listen default"


@pytest.mark.parametrize("inventory", ["single", "lab"])
def test_example_inventories_parse_with_site_playbook(inventory):
    proc = subprocess.run(
        [tool("ansible-playbook"), "--syntax-check", "-i", f"inventory/{inventory}", "playbooks/site.yml"],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hosts = subprocess.run(
        [tool("ansible-inventory"), "-i", f"inventory/{inventory}", "--graph", "appliance"],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=120)
    assert hosts.returncode == 0 and "|--" in hosts.stdout, hosts.stdout + hosts.stderr


def test_vagrantfile_validates(tmp_path):
    if not shutil.which("vagrant"):
        pytest.fail("vagrant is needed (vagrant, vagrant-libvirt): run scripts/install-deps.sh")
    env = {**os.environ,
           "VAGRANT_CHECKPOINT_DISABLE": "1",  # no phoning home
           "VAGRANT_DEFAULT_PROVIDER": "libvirt",
           "VAGRANT_HOME": str(tmp_path / "home"),
           "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot")}
    proc = subprocess.run(["vagrant", "validate"], cwd=REPO / "vagrant", env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    plugins = subprocess.run(["vagrant", "plugin", "list"], cwd=REPO / "vagrant", env=env,
                             capture_output=True, text=True, timeout=300)
    assert "vagrant-libvirt" in plugins.stdout, plugins.stdout + plugins.stderr
