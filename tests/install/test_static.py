"""Checks of the install files that need no host: ansible-lint, syntax, vagrant validate."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from installrun import REPO, ansible_env, tool


def test_ansible_lint_passes():
    proc = subprocess.run(
        [tool("ansible-lint"), "--offline", "--nocolor", "playbooks/", "inventory/"],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


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
