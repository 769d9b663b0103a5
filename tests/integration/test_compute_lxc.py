"""Compute on real libvirt LXC guests, driven only through the REST API and the
status WebSocket, checked from outside (SSH to the guest's IP with the
user's key, the host's mounts, links and cgroups).

One appliance for the module, on its own bridge and subnet (``apct0``,
10.218.0.0/24) so it never meets a running appliance's guests. Guests are
shared between the tests, which run in file order: alice's guest A carries
the data-path tests, bob's guest B the isolation, death and cleanup ones.
"""
from __future__ import annotations

import glob
import io
import os
import time
import uuid

import pytest
from access_support import stop_appliance
from compute_support import LogStream, StatusSocket, add_key, new_user, private_pem
from harness import Appliance

from appliance import config as appliance_config
from appliance.host import image, network
from appliance.host import libvirtd as host

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("libvirt LXC guests need root", allow_module_level=True)
libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")
paramiko = pytest.importorskip("paramiko")


BRIDGE, SUBNET = "apct0", "10.218.0.0/24"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    host.ensure_libvirtd()
    image.ensure_image(appliance_config.load().image_dir)
    a = Appliance(tmp_path_factory.mktemp("compute-lxc"), guest_driver="lxc", bridge_name=BRIDGE,
                  guest_subnet=SUBNET, max_containers_per_user=1)
    a.start()
    yield a
    stop_appliance(a, BRIDGE)


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


class Person:
    def __init__(self, app, admin):
        self.client = new_user(app, admin)
        self.key_id, self.key = add_key(self.client)
        self.pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(private_pem(self.key)))


@pytest.fixture(scope="module")
def alice(app, admin):
    return Person(app, admin)


@pytest.fixture(scope="module")
def bob(app, admin):
    return Person(app, admin)


def launch(app, person: Person, **body) -> dict:
    with StatusSocket(app, person.client.token) as ws:
        started = time.monotonic()
        r = person.client.post("/compute/containers",
                               json={"name": "box", "ssh_key_ids": [person.key_id], **body})
        assert r.status_code == 200, r.text
        cid = r.json()["id"]
        event = ws.wait(cid, "running", "error", timeout=60)
        took = time.monotonic() - started
    assert event["status"] == "running", person.client.get(f"/compute/containers/{cid}").json()
    c = person.client.get(f"/compute/containers/{cid}").json()
    c["create_to_running"] = took
    return c


@pytest.fixture(scope="module")
def guest_a(app, alice):
    return launch(app, alice, storage_gb=1, mount_paths=["/root", "/data"])


@pytest.fixture(scope="module")
def guest_b(app, bob):
    return launch(app, bob, storage_gb=1)


def ssh(ip: str, pkey, command: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``command`` as root in the guest over SSH; (exit status, stdout+stderr)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    deadline = time.monotonic() + 20
    while True:
        try:
            client.connect(ip, username="root", pkey=pkey, timeout=5, allow_agent=False,
                           look_for_keys=False, banner_timeout=5, auth_timeout=5)
            break
        except (OSError, paramiko.SSHException) as e:
            if isinstance(e, paramiko.AuthenticationException) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        _, out, _ = client.exec_command("exec 2>&1; " + command, timeout=timeout)
        text = out.read().decode(errors="replace")
        return out.channel.recv_exit_status(), text
    finally:
        client.close()


def restart_and_wait(app, person, cid, action):
    with StatusSocket(app, person.client.token) as ws:
        result = action()
        event = ws.wait(cid, "running", "error", timeout=60)
    assert event["status"] == "running", person.client.get(f"/compute/containers/{cid}").json()
    return result


# -- creation and SSH ----------------------------------------------------------------

def test_create_runs_and_ssh_with_the_users_key(guest_a, guest_b, alice, bob):
    for guest, person in ((guest_a, alice), (guest_b, bob)):
        assert guest["status"] == "running" and guest["error"] is None
        assert guest["external_ip"].startswith("10.218.0.")
        rc, out = ssh(guest["external_ip"], person.pkey, "hostname; id -u; cat /root/.ssh/authorized_keys")
        assert rc == 0, out
        hostname, uid, keys = out.split("\n", 2)
        assert hostname == guest["id"] and uid == "0"
        assert person.client.get("/compute/ssh-keys").json()["ssh_keys"][0]["public_key"] in keys
    print(f"\ncreate -> running: A {guest_a['create_to_running'] * 1000:.0f} ms, "
          f"B {guest_b['create_to_running'] * 1000:.0f} ms")


def test_other_users_key_is_refused_by_the_guest(guest_a, bob):
    with pytest.raises(paramiko.AuthenticationException):
        ssh(guest_a["external_ip"], bob.pkey, "true")


def test_users_cannot_see_or_touch_each_others_guests(app, guest_a, guest_b, alice, bob):
    a, b = guest_a["id"], guest_b["id"]
    for person, foreign in ((bob, a), (alice, b)):
        c = person.client
        assert c.get(f"/compute/containers/{foreign}").status_code == 404
        assert c.post(f"/compute/containers/{foreign}/stop").status_code == 404
        assert c.put(f"/compute/containers/{foreign}/mounts", json={"mount_paths": ["/x"]}).status_code == 404
        assert c.delete(f"/compute/containers/{foreign}").status_code == 404
        assert [x["id"] for x in c.get("/compute/containers").json()["containers"]] != [foreign]
    assert bob.client.delete(f"/compute/ssh-keys/{alice.key_id}").status_code == 404
    assert alice.client.get(f"/compute/containers/{a}").json()["status"] == "running"
    assert bob.client.get(f"/compute/containers/{b}").json()["status"] == "running"


def test_container_logs_stream_the_init_log_live_to_its_owner_only(app, admin, guest_a, alice, bob):
    cid, ip = guest_a["id"], guest_a["external_ip"]
    marker = f"live-{uuid.uuid4().hex[:8]}"
    with LogStream(app, alice.client.token, cid) as stream:
        assert stream.status == 200
        assert stream.wait_for("appliance-init: starting")[0]["backlog"] is True
        stream.wait_for("sshd started")
        rc, out = ssh(ip, alice.pkey, f"echo {marker} >> /var/log/appliance-init.log")
        assert rc == 0, out
        event, waited = stream.wait_for(marker, timeout=3)
        assert event == {"source": "init", "line": marker, "backlog": False} and waited < 1.0
        stream.wait_for("Accepted publickey for root")   # sshd logs there too (-e)
    print(f"\ncontainer logs: a line written in the guest arrived {waited * 1000:.0f} ms later")
    with LogStream(app, admin.token, cid) as stream:
        assert stream.wait_for(marker)[0]["backlog"] is True
    refused = LogStream(app, bob.client.token, cid)
    assert refused.status == 404 and refused.body == {"error": f"container {cid!r} not found"}


def test_container_logs_never_follow_the_guests_symlinks_to_host_files(app, guest_a, alice, tmp_path):
    cid, ip = guest_a["id"], guest_a["external_ip"]
    secret_dir = tmp_path / "hostlog"
    secret_dir.mkdir()
    secret = f"HOST-SECRET-{uuid.uuid4().hex}"
    (secret_dir / "appliance-init.log").write_text(secret + "\n")
    with open("/etc/shadow") as f:
        shadow = f.readline().strip()
    attacks = ["ln -sf /etc/shadow /var/log/appliance-init.log",
               f"ln -sf {secret_dir}/appliance-init.log /var/log/appliance-init.log",
               "ln -sf ../../../../../../etc/shadow /var/log/appliance-init.log",
               f"mv /var/log /var/log.real && ln -s {secret_dir} /var/log",
               "rm /var/log && mv /var/log.real /var/log && rm /var/log/appliance-init.log && "
               "mkfifo /var/log/appliance-init.log"]
    try:
        for attack in attacks:
            rc, out = ssh(ip, alice.pkey, attack)
            assert rc == 0, (attack, out)
            with LogStream(app, alice.client.token, cid) as stream:
                stream.wait_for("is not a regular file: not read")
                time.sleep(0.6)   # a few more polls
                text = "\n".join(e["line"] for e in stream.events)
            assert secret not in text and shadow not in text and "root:" not in text, (attack, text)
    finally:
        ssh(ip, alice.pkey, "rm -f /var/log/appliance-init.log; [ -L /var/log ] && rm /var/log && "
                            "mv /var/log.real /var/log; touch /var/log/appliance-init.log")


def test_container_logs_never_read_a_host_file_bound_over_the_log(app, guest_a, alice):
    """Guest root bind-mounts a host file it can see but not read (the ACPI
    table in its /sys) over its log: the host reads the log with the guest's
    own permissions, so nothing of that file comes out."""
    cid, ip = guest_a["id"], guest_a["external_ip"]
    table = "/sys/firmware/acpi/tables/DSDT"
    with open(table, "rb") as f:
        host_bytes = f.read()
    rc, out = ssh(ip, alice.pkey, f"test -f {table} && ! cat {table} >/dev/null 2>&1 && "
                                  f"mount --bind {table} /var/log/appliance-init.log && echo bound")
    assert rc == 0 and "bound" in out, out   # visible, unreadable to the guest, bound over its log
    try:
        with LogStream(app, alice.client.token, cid) as stream:
            stream.wait_for("is not the guest's own readable file: not read")
            time.sleep(0.6)   # a few more polls
            text = "\n".join(e["line"] for e in stream.events)
        readable = host_bytes[:64].decode("utf-8", errors="replace")
        assert "DSDT" not in text and readable not in text, text
    finally:
        ssh(ip, alice.pkey, "umount /var/log/appliance-init.log")
    rc, out = ssh(ip, alice.pkey, "echo after-the-attack-$((6*7)) >> /var/log/appliance-init.log")
    assert rc == 0, out
    with LogStream(app, alice.client.token, cid) as stream:   # the guest's own log reads again
        stream.wait_for("after-the-attack-42")


def _host_state():
    conn = libvirt.open("lxc:///")
    try:
        domains = sorted(d.name() for d in conn.listAllDomains())
    finally:
        conn.close()
    return domains


def test_bad_inputs_are_4xx_and_create_nothing(app, guest_a, guest_b, alice, bob):
    volumes = sorted(os.listdir(app.data_dir / "volumes"))
    domains = _host_state()
    c = alice.client
    cases = [
        ({"instance_type": "xlarge"}, 400),
        ({"mount_paths": ["/proc/foo"]}, 400),
        ({"mount_paths": ["data"]}, 400),
        ({"mount_paths": ["/a/../b"]}, 400),
        ({"ssh_key_ids": [bob.key_id]}, 400),
        ({"memory_mb": 100000}, 400),
        ({}, 409),  # over alice's limit of 1
    ]
    for extra, status in cases:
        body = {"name": "nope", "ssh_key_ids": [alice.key_id], **extra}
        r = c.post("/compute/containers", json=body)
        assert r.status_code == status, (extra, r.text)
        assert r.headers["Content-Type"].startswith("application/json") and r.json()["error"]
    assert [x["id"] for x in c.get("/compute/containers").json()["containers"]] == [guest_a["id"]]
    assert sorted(os.listdir(app.data_dir / "volumes")) == volumes
    assert _host_state() == domains


# -- data paths ---------------------------------------------------------------------------

def test_mounts_persist_and_everything_else_resets(app, guest_a, alice):
    cid, ip, c = guest_a["id"], guest_a["external_ip"], alice.client
    rc, out = ssh(ip, alice.pkey, "echo one > /data/keep && echo two > /root/keep && echo three > /opt/gone "
                                  "&& mount | grep -c ' on /data '")
    assert rc == 0 and out.strip() == "1", out

    assert c.post(f"/compute/containers/{cid}/stop").json()["status"] == "stopped"
    assert c.get(f"/compute/containers/{cid}").json()["status"] == "stopped"
    r = restart_and_wait(app, alice, cid, lambda: c.post(f"/compute/containers/{cid}/start"))
    assert r.json()["status"] == "pending"
    rc, out = ssh(ip, alice.pkey, "cat /data/keep /root/keep; test -e /opt/gone && echo still-there; true")
    assert out.split() == ["one", "two"], out

    # a mount change restarts the guest; data under kept paths survives
    r = restart_and_wait(app, alice, cid, lambda: c.put(f"/compute/containers/{cid}/mounts",
                                                        json={"mount_paths": ["/root", "/data", "/srv/www"]}))
    assert r.json() == {"mount_paths": ["/root", "/data", "/srv/www"], "restarted": True}
    rc, out = ssh(ip, alice.pkey, "cat /data/keep; echo web > /srv/www/index; mount | grep -c ' on /srv/www '")
    assert out.split() == ["one", "1"], out

    # a path taken out of the list is no longer mounted; its data comes back with it
    restart_and_wait(app, alice, cid, lambda: c.put(f"/compute/containers/{cid}/mounts",
                                                    json={"mount_paths": ["/root", "/srv/www"]}))
    rc, out = ssh(ip, alice.pkey, "ls /data 2>/dev/null | wc -l; cat /srv/www/index")
    assert out.split() == ["0", "web"], out
    restart_and_wait(app, alice, cid, lambda: c.put(f"/compute/containers/{cid}/mounts",
                                                    json={"mount_paths": ["/root", "/data"]}))
    rc, out = ssh(ip, alice.pkey, "cat /data/keep /root/keep")
    assert out.split() == ["one", "two"], out


def test_volume_size_is_enforced_and_usage_is_live(guest_a, alice):
    cid, ip = guest_a["id"], guest_a["external_ip"]
    rc, out = ssh(ip, alice.pkey, "dd if=/dev/zero of=/data/fill bs=1M count=1200 conv=fsync; echo rc=$?; "
                                  "df -m /data | tail -1", timeout=120)
    assert "No space left on device" in out and "rc=0" not in out, out
    used = alice.client.get(f"/compute/containers/{cid}").json()["storage_used_gb"]
    assert 0.85 <= used <= 1.0, used
    ssh(ip, alice.pkey, "rm -f /data/fill")
    used = alice.client.get(f"/compute/containers/{cid}").json()["storage_used_gb"]
    assert used < 0.2, used
    # writes outside the mount paths count against the same volume
    rc, out = ssh(ip, alice.pkey, "dd if=/dev/zero of=/var/tmp/fill bs=1M count=1200; echo rc=$?; "
                                  "rm -f /var/tmp/fill", timeout=120)
    assert "No space left on device" in out, out


def test_memory_limit_kills_the_hog_not_the_host(app, guest_a, alice):
    cid, ip = guest_a["id"], guest_a["external_ip"]
    c = alice.client.get(f"/compute/containers/{cid}").json()
    assert c["memory_mb"] == 512 and 0 < c["memory_used_mb"] < 512
    # tail keeps the whole newline-free stream in memory: 900 MB > 512 MB
    rc, out = ssh(ip, alice.pkey, "head -c 900M /dev/zero | tail > /dev/null; echo exit=$?", timeout=120)
    assert "exit=137" in out, out  # SIGKILL from the OOM killer
    # the guest lives on, and so do the host and the appliance
    rc, out = ssh(ip, alice.pkey, "echo alive")
    assert out.strip() == "alive"
    assert alice.client.get(f"/compute/containers/{cid}").json()["status"] == "running"
    assert "ok" == __import__("requests").get(app.url + "/healthz").text


def test_cpu_quota_holds(guest_a, alice):
    """nano = 0.5 CPU: four busy loops for 3 s get ~1.5 CPU-seconds in all,
    whatever the host's CPU count (here: %d)."""
    script = (
        "pids=''; for i in 1 2 3 4; do sh -c 'while :; do :; done' & pids=\"$pids $!\"; done; "
        "sleep 3; t=0; for p in $pids; do set -- $(cat /proc/$p/stat); t=$((t + ${14} + ${15})); done; "
        "kill $pids; echo $t $(getconf CLK_TCK)"
    )
    rc, out = ssh(guest_a["external_ip"], alice.pkey, script)
    ticks, hz = map(int, out.split()[-2:])
    cpu_seconds = ticks / hz
    unlimited = min(4, os.cpu_count()) * 3
    print(f"\n4 busy loops for 3 s in nano: {cpu_seconds:.2f} CPU-s (unlimited would be ~{unlimited})")
    assert 0.8 <= cpu_seconds <= 2.0, out


# -- reconciliation and cleanup ------------------------------------------------------------

def _domain(name: str):
    conn = libvirt.open("lxc:///")
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError:
        return None


def test_core_restart_keeps_running_guests_and_marks_dead_ones_stopped(app, guest_a, guest_b, alice, bob):
    ssh(guest_a["external_ip"], alice.pkey, "touch /tmp/not-restarted")
    app.stop("core")
    _domain(f"ap-{guest_b['id']}").destroy()  # B dies while the core is down
    app.start("core")
    a = alice.client.get(f"/compute/containers/{guest_a['id']}").json()
    b = bob.client.get(f"/compute/containers/{guest_b['id']}").json()
    assert a["status"] == "running" and b["status"] == "stopped"
    rc, out = ssh(guest_a["external_ip"], alice.pkey, "ls /tmp/not-restarted")
    assert rc == 0, out  # the very same guest, never restarted
    restart_and_wait(app, bob, guest_b["id"], lambda: bob.client.post(f"/compute/containers/{guest_b['id']}/start"))
    assert ssh(guest_b["external_ip"], bob.pkey, "echo back")[1].strip() == "back"


def test_when_the_whole_host_went_down_its_running_containers_start_again(app, guest_a, guest_b, alice, bob):
    app.stop("core")
    for guest in (guest_a, guest_b):   # every guest gone with the core: the host went down (crash, reboot)
        _domain(f"ap-{guest['id']}").destroy()
    started = time.monotonic()
    app.start("core")
    for guest, person in ((guest_a, alice), (guest_b, bob)):
        deadline = time.monotonic() + 60
        while (c := person.client.get(f"/compute/containers/{guest['id']}").json())["status"] != "running":
            assert c["status"] in ("stopped", "pending", "initializing") and time.monotonic() < deadline, c
            time.sleep(0.2)
        assert ssh(guest["external_ip"], person.pkey, "echo back")[1].strip() == "back"
    print(f"\nboth containers running again {time.monotonic() - started:.1f} s after the core started")


def test_a_guest_that_dies_is_reported_stopped_on_the_socket(app, guest_b, bob):
    with StatusSocket(app, bob.client.token) as ws:
        _domain(f"ap-{guest_b['id']}").destroy()
        assert ws.wait(guest_b["id"], "stopped", timeout=15)["status"] == "stopped"
    assert bob.client.get(f"/compute/containers/{guest_b['id']}").json()["status"] == "stopped"


def _leftovers(app, cid: str) -> list[str]:
    found = []
    if _domain(f"ap-{cid}") is not None:
        found.append("domain")
    if network._link_exists(f"ap-{cid}"):
        found.append("veth")
    mounts = open("/proc/self/mountinfo").read()
    if cid in mounts:
        found.append("mount")
    if glob.glob(f"/sys/fs/cgroup/*/machine*/*ap-{cid}*"):
        found.append("cgroup")
    if any(cid in name for name in os.listdir(app.data_dir / "volumes")):
        found.append("volume")
    if (app.data_dir / "guests" / cid).exists():
        found.append("guest dir")
    return found


def test_delete_leaves_nothing_behind(app, admin, guest_a, guest_b, alice, bob):
    a, b = guest_a["id"], guest_b["id"]
    assert alice.client.delete(f"/compute/containers/{a}").json() == {"status": "ok"}
    assert _leftovers(app, a) == []
    assert alice.client.get(f"/compute/containers/{a}").status_code == 404
    # a user's removal takes their (running) guests along
    restart_and_wait(app, bob, b, lambda: bob.client.post(f"/compute/containers/{b}/start"))
    assert admin.delete(f"/admin/users/{bob.client.user_id}").status_code == 200
    assert _leftovers(app, b) == []
