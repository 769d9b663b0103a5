"""playbooks/site.yml against a throwaway Debian 12 host over real SSH.

The host (see testhost.py) normally boots with systemd as PID 1 under
systemd-nspawn, so the playbook's units are really started. Where nspawn is
missing or cannot boot, the host runs without systemd: the units are then
verified and enabled offline, the tests that need systemd skip and say so,
and the daemons are started by hand from the units' ExecStart lines to prove
the installed code answers.
"""
from __future__ import annotations

import hashlib
import json
import time
import tomllib
import urllib.error
import urllib.request

import pytest

from installrun import INVENTORY_VARS

pytestmark = pytest.mark.install

DAEMONS = ["appliance-core.service", "appliance-http.service", "appliance-ssh.service"]
UNITS = ["appliance-network.service", *DAEMONS]
VENV = "/opt/appliance/venv"
CONFIG = "/etc/appliance/appliance.toml"


def _ok(run):
    return run.returncode == 0 and all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values())


# -- the playbook's behaviour ---------------------------------------------------

def test_check_mode_on_fresh_host_succeeds(converged):
    run = converged.check_fresh
    assert _ok(run), run.explain()
    assert run.recap["testhost"]["changed"] > 0, "a fresh host should need changes"


def test_first_run_succeeds(converged):
    run = converged.first
    assert _ok(run), run.explain()


def test_second_run_reports_no_changes(converged):
    run = converged.second
    assert _ok(run), run.explain()
    assert run.recap["testhost"]["changed"] == 0, f"changed on rerun: {run.changed_tasks}"


def test_check_mode_on_installed_host_reports_no_changes(converged):
    run = converged.check_after
    assert _ok(run), run.explain()
    assert run.recap["testhost"]["changed"] == 0, f"check mode would change: {run.changed_tasks}"


def test_rerun_keeps_data_and_secrets(converged):
    before, after = converged.secrets_after_first, converged.secrets_after_second
    assert "jwt_secret" in before and "install-test-marker" in before, before
    assert before == after


# -- what is on the host --------------------------------------------------------

def test_system_user_and_directories(converged):
    host = converged.host
    name, _, uid, _, _, home, shell = host.ssh("getent passwd appliance").stdout.strip().split(":")
    assert int(uid) < 1000 and shell == "/usr/sbin/nologin" and home == "/var/lib/appliance"
    modes = host.ssh("stat -c '%n %U:%G %a' /etc/appliance /var/lib/appliance "
                     "/var/cache/appliance/images /opt/appliance").stdout.split("\n")
    assert modes[:4] == [
        "/etc/appliance root:appliance 750",
        "/var/lib/appliance root:appliance 750",
        "/var/cache/appliance/images root:root 755",
        "/opt/appliance root:root 755",
    ]


def test_config_rendered_from_inventory(converged):
    host = converged.host
    assert host.ssh(f"stat -c '%U:%G %a' {CONFIG}").stdout.strip() == "root:appliance 640"
    config = tomllib.loads(host.ssh(f"cat {CONFIG}").stdout)
    assert config["public_host"] == INVENTORY_VARS["appliance_config_public_host"]
    assert config["compute_domain"] == INVENTORY_VARS["appliance_config_compute_domain"]
    assert config["http_port"] == 8080 and config["ssh_port"] == 2222
    assert config["max_containers_per_user"] == 5
    assert config["login_max_failures"] == 7
    assert config["bridge_name"] == "apbr0" and config["guest_subnet"] == "10.217.0.0/24"
    # No secret in the config: the JWT secret lives in its own 0600 file.
    assert "jwt_secret" not in config and "admin_password" not in config


def test_installed_config_loader_accepts_rendered_config(converged):
    """The appliance's own loader (unknown keys are errors) reads the file."""
    out = converged.host.ssh(
        f"{VENV}/bin/python -c 'import dataclasses, json; from appliance import config; "
        f"print(json.dumps(dataclasses.asdict(config.load(\"{CONFIG}\"))))'").stdout
    loaded = json.loads(out)
    assert loaded["public_host"] == INVENTORY_VARS["appliance_config_public_host"]
    assert loaded["login_max_failures"] == 7


def test_jwt_secret_generated_on_host_root_only(converged):
    host = converged.host
    assert host.ssh("stat -c '%U:%G %a %s' /var/lib/appliance/jwt_secret").stdout.split()[:2] == [
        "root:root", "600"]
    assert len(host.ssh("cat /var/lib/appliance/jwt_secret").stdout.strip()) >= 32


def test_venv_holds_the_deployed_checkout_with_compute_extra(converged):
    host = converged.host
    out = host.ssh(f"{VENV}/bin/python -c 'import appliance, libvirt, os; "
                   f"print(os.path.dirname(appliance.__file__))'").stdout.strip()
    assert out.startswith(f"{VENV}/lib/python3")
    local = hashlib.sha256((converged.source / "appliance/config.py").read_bytes()).hexdigest()
    remote = host.ssh(f"sha256sum {out}/config.py").stdout.split()[0]
    assert remote == local, "the venv does not hold this checkout's code"
    assert host.ssh(f"test -x {VENV}/bin/appliance", check=False).returncode == 0


def test_bridge_and_sysctls_applied_in_test_host_netns(converged):
    host = converged.host
    (link,) = json.loads(host.ssh("ip -j address show dev apbr0").stdout)
    assert "UP" in link["flags"]
    assert {(a["local"], a["prefixlen"]) for a in link["addr_info"]} >= {("10.217.0.1", 24)}
    values = host.ssh("sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.route_localnet").stdout.split()
    assert values == ["1", "0"]  # route_localnet off: guests must not reach the host's loopback
    assert "net.ipv4.ip_forward = 1" in host.ssh("cat /etc/sysctl.d/60-appliance.conf").stdout


def test_units_verified_and_enabled(converged):
    host = converged.host
    paths = " ".join(f"/etc/systemd/system/{u}" for u in UNITS)
    verify = host.ssh(f"systemd-analyze verify {paths}", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for unit in UNITS:
        assert host.ssh(f"systemctl is-enabled {unit}", check=False).stdout.strip() == "enabled", unit
    for unit in DAEMONS:
        text = host.ssh(f"cat /etc/systemd/system/{unit}").stdout
        assert "Restart=on-failure" in text and "NoNewPrivileges=yes" in text
        assert f"ExecStart={VENV}/bin/appliance --config {CONFIG} " in text
    assert "ProtectSystem=strict" in host.ssh("cat /etc/systemd/system/appliance-http.service").stdout


def _need_systemd(converged):
    if converged.host.mode != "systemd":
        pytest.skip("the test host runs without systemd here (systemd-nspawn missing or could not "
                    "boot it): units were verified and enabled offline only")


def test_bridge_unit_ran_under_systemd(converged):
    _need_systemd(converged)
    state = converged.host.ssh("systemctl is-active appliance-network.service", check=False)
    assert state.stdout.strip() == "active", state.stdout + state.stderr


# -- what needs the appliance's code to run on the host ----------------------------

def test_admin_user_created_from_inventory(converged):
    out = converged.host.ssh(f"{VENV}/bin/appliance --config {CONFIG} user list").stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert any(INVENTORY_VARS["appliance_admin_username"] in row and "admin" in row for row in rows), out


def _start_by_hand(host, unit: str) -> None:
    """Start a daemon the way its unit would (same ExecStart, same environment)."""
    text = host.ssh(f"cat /etc/systemd/system/{unit}").stdout
    (command,) = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart=")]
    host.ssh(f"cd / && APPLIANCE_CONFIG={CONFIG} setsid --fork {command} "
             f">/var/log/{unit}.log 2>&1 </dev/null", timeout=30)


def _request(url: str, body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _logs(host) -> str:
    if host.mode == "systemd":
        return host.ssh("journalctl --no-pager -n 60 -u 'appliance-*'", check=False).stdout
    return host.ssh("tail -n 30 /var/log/appliance-*.log", check=False).stdout


@pytest.fixture(scope="module")
def daemons(converged):
    """The core and HTTP gateway answering on the test host: started by systemd
    (the playbook's units) where the host runs systemd, else by hand."""
    host = converged.host
    if host.mode != "systemd":
        for unit in ("appliance-core.service", "appliance-http.service"):
            _start_by_hand(host, unit)
    base = f"http://{host.address}:8080"
    deadline = time.monotonic() + 60
    while True:
        try:
            status, body = _request(f"{base}/healthz")
            if status == 200:
                return base
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"/healthz never answered on the test host ({host.mode}):\n{_logs(host)}")
        time.sleep(0.5)


def test_daemons_active_under_systemd(converged, daemons):
    _need_systemd(converged)
    for unit in DAEMONS:
        state = converged.host.ssh(f"systemctl is-active {unit}", check=False).stdout.strip()
        assert state == "active", f"{unit}: {state}\n{_logs(converged.host)}"


def test_installed_daemons_answer_healthz(converged, daemons):
    status, body = _request(f"{daemons}/healthz")
    assert (status, body.strip()) == (200, "ok"), _logs(converged.host)


def test_inventory_admin_logs_in(converged, daemons):
    status, body = _request(f"{daemons}/api/login", {
        "username": INVENTORY_VARS["appliance_admin_username"],
        "password": INVENTORY_VARS["appliance_admin_password"],
    })
    assert status == 200, f"{status} {body}\n{_logs(converged.host)}"
    assert json.loads(body).get("token"), body


def test_ssh_gateway_answers(converged, daemons):
    import socket
    host = converged.host
    if host.mode != "systemd":
        _start_by_hand(host, "appliance-ssh.service")
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((host.address, 2222), timeout=2) as s:
                assert s.recv(4) == b"SSH-"
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"the SSH gateway never answered on port 2222:\n{_logs(host)}")
            time.sleep(0.5)
