"""The SSH gateway with the real OpenSSH client, on real LXC guests.

One appliance (core + HTTP + SSH gateway) on its own bridge ``apsg0``
(10.224.0.0/24). alice owns a running guest with ssh enabled; bob is another
user with his own key. Tests run in file order (the refusal tests change
alice's guest at the end).
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from access_support import (
    Person, launch, run, scp_argv, ssh_argv, start_appliance, stop_appliance, wait_port,
)
from harness import wait_for_sshd

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("libvirt LXC guests need root", allow_module_level=True)
pytest.importorskip("libvirt", reason="libvirt-python is not installed")

BRIDGE, SUBNET = "apsg0", "10.224.0.0/24"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = start_appliance(tmp_path_factory.mktemp("ssh-gateway"), BRIDGE, SUBNET)
    yield a
    stop_appliance(a, BRIDGE)


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def alice(app, admin, keys_dir):
    return Person(app, admin, keys_dir)


@pytest.fixture(scope="module")
def bob(app, admin, keys_dir):
    return Person(app, admin, keys_dir)


@pytest.fixture(scope="module")
def guest(app, alice):
    c = launch(app, alice, ssh_enabled=True, storage_gb=1)
    wait_for_sshd(c["external_ip"])
    return c


def ssh(app, person, cid, *command, user=None, extra=(), timeout=60, **kw):
    return run(ssh_argv(app, person.key_file, user or cid, *extra) + list(command), timeout=timeout, **kw)


def test_ssh_command_is_the_exact_command(app, guest):
    assert guest["ssh_command"] == f"ssh {guest['id']}@127.0.0.1 -p {app.ssh_port}"


def test_exec_runs_as_root_in_the_guest_and_returns_the_exit_code(app, guest, alice):
    cid = guest["id"]
    r = ssh(app, alice, cid, "hostname; id -un; echo to-stderr >&2; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout.decode().split() == [cid, "root"]
    assert r.stderr.decode().strip() == "to-stderr"
    assert ssh(app, alice, cid, "exit 0").returncode == 0
    assert ssh(app, alice, cid, "exit 3").returncode == 3


def test_stdin_reaches_the_command(app, guest, alice):
    data = os.urandom(3 * 1024 * 1024)
    r = run(ssh_argv(app, alice.key_file, guest["id"]) + ["sha256sum"], input=data, stdin=None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_interactive_shell_on_a_pty(app, guest, alice):
    """A real interactive login: the client's pty (script(1)) -> gateway -> guest pty."""
    argv = ssh_argv(app, alice.key_file, guest["id"], "-tt")
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.communicate(b"stty size; tty; echo marker-$((6*7)); exit 5\n", timeout=60)[0].decode(errors="replace")
    assert p.returncode == 5, out
    assert "marker-42" in out and "/dev/pts/" in out, out


def test_pty_size_and_window_change(app, guest, alice):
    import pty as ptymod

    pid, fd = ptymod.fork()
    if pid == 0:  # the child runs ssh on a real terminal of 100x30
        import fcntl
        import struct
        import termios
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        os.execvp("ssh", ssh_argv(app, alice.key_file, guest["id"], "-tt"))
    try:
        out = _talk(fd, b"stty size\n", b"30 100")
        import fcntl
        import struct
        import termios
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 132, 0, 0))
        os.kill(pid, 28)  # SIGWINCH, as a terminal emulator would
        time.sleep(0.3)
        out += _talk(fd, b"stty size\n", b"50 132")
        os.write(fd, b"exit 0\n")
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out


def _talk(fd, data: bytes, expect: bytes, timeout: float = 20) -> bytes:
    import select
    os.write(fd, data)
    seen = b""
    deadline = time.monotonic() + timeout
    while expect not in seen:
        left = deadline - time.monotonic()
        assert left > 0, seen
        if select.select([fd], [], [], left)[0]:
            seen += os.read(fd, 65536)
    return seen


def test_scp_50_mb_both_ways(app, guest, alice, tmp_path):
    src = tmp_path / "up.bin"
    with open(src, "wb") as f:
        f.write(os.urandom(50 * 1024 * 1024))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    cid = guest["id"]
    started = time.monotonic()
    r = run(scp_argv(app, alice.key_file, str(src), f"{cid}@127.0.0.1:/root/up.bin"), timeout=300)
    up = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    r = ssh(app, alice, cid, "sha256sum /root/up.bin")
    assert r.stdout.split()[0].decode() == digest
    back = tmp_path / "down.bin"
    started = time.monotonic()
    r = run(scp_argv(app, alice.key_file, f"{cid}@127.0.0.1:/root/up.bin", str(back)), timeout=300)
    down = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    print(f"\nscp 50 MB through the gateway: up {50 / up:.0f} MB/s, down {50 / down:.0f} MB/s")
    ssh(app, alice, cid, "rm -f /root/up.bin")


def test_sftp_subsystem(app, guest, alice, tmp_path):
    (tmp_path / "a.txt").write_text("hello sftp\n")
    batch = tmp_path / "batch"
    batch.write_text(f"put {tmp_path / 'a.txt'} /root/a.txt\nls -l /root/a.txt\nget /root/a.txt {tmp_path / 'b.txt'}\nrm /root/a.txt\n")
    argv = ["sftp", "-P", str(app.ssh_port), "-i", str(alice.key_file), "-b", str(batch),
            *ssh_argv(app, alice.key_file, guest["id"])[5:]]
    r = run(argv)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b.txt").read_text() == "hello sftp\n"


def test_local_port_forwarding(app, guest, alice):
    """ssh -L: the guest's sshd opens the connection, so localhost is the guest."""
    cid = guest["id"]
    server = subprocess.Popen(ssh_argv(app, alice.key_file, cid) + [
        "perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>q(127.0.0.1),LocalPort=>7777,"
        "Listen=>5,ReuseAddr=>1) or die; print qq(ready\\n); $|=1; $c=$s->accept; $l=<$c>; "
        "print $c qq(guest says: $l); close $c'"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert server.stdout.readline() == b"ready\n"
    port = _free_port()
    fwd = subprocess.Popen(ssh_argv(app, alice.key_file, cid, "-N", "-L", f"{port}:127.0.0.1:7777"),
                           stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        s.sendall(b"hi\n")
        reply = s.makefile("rb").readline()
        s.close()
        assert reply == b"guest says: hi\n"
    finally:
        fwd.terminate()
        fwd.wait(10)
        server.kill()
        server.wait(10)


def test_remote_port_forwarding(app, guest, alice):
    """ssh -R: the guest's sshd listens; connections come back to the client's side."""
    cid = guest["id"]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    lport = listener.getsockname()[1]

    def answer():
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            c.sendall(b"from the client side\n")
            c.close()
    threading.Thread(target=answer, daemon=True).start()
    fwd = subprocess.Popen(ssh_argv(app, alice.key_file, cid, "-N", "-o", "ExitOnForwardFailure=yes",
                                    "-R", f"127.0.0.1:7788:127.0.0.1:{lport}"), stderr=subprocess.PIPE)
    try:
        r = None
        for _ in range(50):
            r = ssh(app, alice, cid, "exec 3<>/dev/tcp/127.0.0.1/7788 && head -1 <&3")
            if r.returncode == 0 and r.stdout:  # the forward may still be being set up
                break
            time.sleep(0.2)
        assert r.stdout == b"from the client side\n", r.stderr
    finally:
        fwd.terminate()
        fwd.wait(10)
        listener.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_other_guest_user(app, guest, alice):
    cid = guest["id"]
    assert ssh(app, alice, cid, "useradd -m -s /bin/bash dev").returncode == 0
    r = ssh(app, alice, f"dev.{cid}", "id -un; pwd; exit 4", user=f"dev.{cid}")
    assert r.returncode == 4, r.stderr
    assert r.stdout.decode().split() == ["dev", "/home/dev"]
    r = ssh(app, alice, f"nobody-here.{cid}", "true", user=f"nobody-here.{cid}")
    assert r.returncode != 0


def test_host_key_is_kept_across_restarts(app, guest, alice, tmp_path):
    known = tmp_path / "known_hosts"
    r = run(ssh_argv(app, alice.key_file, guest["id"], known_hosts=known) + ["true"])
    assert r.returncode == 0 and known.exists(), r.stderr
    app.stop("ssh")
    app.start("ssh")
    wait_port("127.0.0.1", app.ssh_port)
    r = run(ssh_argv(app, alice.key_file, guest["id"], known_hosts=known) + ["echo same"])
    assert r.returncode == 0 and r.stdout == b"same\n", r.stderr


def test_only_publickey_auth_is_offered(app, guest):
    r = run(["ssh", "-p", str(app.ssh_port), "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             f"{guest['id']}@127.0.0.1", "true"])
    assert r.returncode == 255
    assert re.search(rb"Permission denied \(publickey\)", r.stderr), r.stderr


# -- refusals -----------------------------------------------------------------------------

def _refused(r) -> bool:
    return r.returncode == 255 and b"Permission denied" in r.stderr


def test_foreign_key_is_refused(app, guest, bob):
    assert _refused(ssh(app, bob, guest["id"], "true"))


def test_unknown_container_is_refused(app, guest, alice):
    assert _refused(ssh(app, alice, "zzzzzzzz", "true"))
    assert _refused(ssh(app, alice, "not/a-valid id", "true", user="not.a.valid"))


def test_deleted_key_is_refused_at_once(app, guest, alice, admin, keys_dir):
    extra = Person.__new__(Person)
    from compute_support import add_key, private_pem
    key_id, key = add_key(alice.client)
    extra.key_file = keys_dir / "alice-second"
    fd = os.open(extra.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(private_pem(key))
    # a key the owner registered after creating the container is admitted...
    assert ssh(app, extra, guest["id"], "true").returncode == 0
    assert alice.client.delete(f"/compute/ssh-keys/{key_id}").status_code == 200
    # ...and refused as soon as it is deleted from the account
    assert _refused(ssh(app, extra, guest["id"], "true"))


def test_disabled_flag_is_refused(app, guest, alice):
    cid = guest["id"]
    c = alice.client
    assert c.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": False}).json() == {"ssh_enabled": False}
    assert _refused(ssh(app, alice, cid, "true"))
    assert c.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": True}).status_code == 200
    assert ssh(app, alice, cid, "true").returncode == 0


def test_stopped_container_is_refused(app, guest, alice):
    cid = guest["id"]
    assert alice.client.post(f"/compute/containers/{cid}/stop").json()["status"] == "stopped"
    assert _refused(ssh(app, alice, cid, "true"))


def test_user_tokens_cannot_call_the_internal_service(app, alice):
    """The core refuses a user's token on the gateway's RPC (ACCESS_SERVICE)."""
    import grpc
    from appliance.v1 import sshgw_pb2, sshgw_pb2_grpc
    channel = grpc.insecure_channel(f"unix://{app.data_dir / 'core.sock'}")
    stub = sshgw_pb2_grpc.SshGatewayServiceStub(channel)
    request = sshgw_pb2.AuthorizeRequest(username="x", public_key="ssh-ed25519 AAAA")
    with pytest.raises(grpc.RpcError) as e:
        stub.Authorize(request, metadata=(("authorization", f"Bearer {alice.client.token}"),), timeout=5)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:
        stub.Authorize(request, timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
