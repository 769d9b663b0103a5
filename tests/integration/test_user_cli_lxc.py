"""The user's client with a real guest: `create --wait`, `ssh NAME -- CMD` through the real
OpenSSH client and the appliance's SSH gateway, and `shell` over the terminal WebSocket.
One appliance on its own bridge ``apcli0`` (10.242.0.0/24) and one guest for the module;
run under the machine-wide lock (flock /tmp/appliance-lxc.lock)."""
from __future__ import annotations

import os
import subprocess

import pytest
from access_support import start_appliance, stop_appliance
from client_support import User
from harness import wait_for_sshd

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("libvirt LXC guests need root", allow_module_level=True)
pytest.importorskip("libvirt", reason="libvirt-python is not installed")

BRIDGE, SUBNET = "apcli0", "10.242.0.0/24"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = start_appliance(tmp_path_factory.mktemp("user-cli-lxc"), BRIDGE, SUBNET)
    yield a
    stop_appliance(a, BRIDGE)


@pytest.fixture(scope="module")
def dora(app, tmp_path_factory):
    admin = User(tmp_path_factory.mktemp("admin"))
    admin.login(app, "admin", app.admin_password)
    admin.ok("admin", "user", "add", "dora", "--password-stdin", input="pw-dora-1\n")
    person = User(tmp_path_factory.mktemp("dora"))
    person.login(app, "dora", "pw-dora-1")
    person.key = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(person.key)], check=True)
    person.ok("key", "add", f"{person.key}.pub")
    return person


@pytest.fixture(scope="module")
def guest(dora):
    made = dora.json("create", "box", "--ssh", "--storage", "1", "--wait", timeout=180)
    assert made["status"] == "running" and made["external_ip"], made
    wait_for_sshd(made["external_ip"])
    return made


def test_create_wait_returns_a_running_guest(dora, guest):
    assert dora.json("show", "box")["status"] == "running"


def test_ssh_runs_a_command_through_the_real_openssh_client(dora, guest):
    r = dora.run("ssh", "box", "-i", str(dora.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                 "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "--", "echo", "ok", timeout=60)
    assert r.returncode == 0 and r.stdout == "ok\n", (r.stdout, r.stderr)
    failing = dora.run("ssh", guest["id"], "-i", str(dora.key), "-o", "BatchMode=yes",
                       "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                       "-o", "LogLevel=ERROR", "--", "exit", "7", timeout=60)
    assert failing.returncode == 7     # ssh's own exit status: the client execs it


def test_shell_over_the_terminal_websocket(dora, guest):
    r = dora.run("shell", "box", input="echo sum-$((20+22))\nexit\n", timeout=60)
    assert r.returncode == 0 and "sum-42" in r.stdout, (r.stdout, r.stderr)


def test_exec_over_the_terminal_websocket(dora, guest):
    r = dora.run("exec", "box", "--", "sh", "-c", "echo 'two  spaces'; echo err >&2; exit 5", timeout=60)
    assert r.returncode == 5 and r.stdout == "two  spaces\nerr\n", (r.stdout, r.stderr)


def test_rm_needs_force_while_running(dora, guest):
    refused = dora.run("rm", "box")
    assert refused.returncode == 1 and "--force" in refused.stderr
    dora.ok("rm", "--force", "box")
    assert dora.run("show", "box").returncode == 3
