"""The SSH gateway with the real OpenSSH client, on real LXC guests.

One appliance (core + HTTP + SSH gateway) on its own bridge ``apsg0``
(10.224.0.0/24). alice owns a running guest with ssh enabled; bob is another
user with his own key. Tests run in file order (the refusal tests change
alice's guest at the end). The limit tests restart the gateway with small
limits (``gateway_with``) and put the defaults back afterwards.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest
from access_support import (
    Person,
    launch,
    run,
    scp_argv,
    ssh_argv,
    start_appliance,
    stop_appliance,
    wait_port,
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
def spare(alice, keys_dir):
    """A second key of alice's, selected for her guest at creation: (id, key file)."""
    return _key_file(alice, keys_dir, "alice-spare")


@pytest.fixture(scope="module")
def guest(app, alice, spare):
    c = launch(app, alice, ssh_enabled=True, storage_gb=1, ssh_key_ids=[alice.key_id, spare[0]])
    wait_for_sshd(c["external_ip"])
    return c


def _key_file(person, keys_dir, name, client=None):
    """Registers a new key for ``person`` (through ``client``, default theirs):
    (key id, private key file for OpenSSH)."""
    from compute_support import add_key, private_pem
    key_id, key = add_key(client or person.client)
    path = keys_dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(private_pem(key))
    return key_id, path


class KeyFile:
    def __init__(self, path):
        self.key_file = path


@contextmanager
def gateway_with(app, **settings):
    """The SSH gateway restarted with these settings; the defaults back after."""
    saved = dict(app.env)
    app.env.update({f"APPLIANCE_{k.upper()}": str(v) for k, v in settings.items()})
    _restart_gateway(app)
    try:
        yield
    finally:
        app.env = saved
        _restart_gateway(app)


def _restart_gateway(app):
    app.stop("ssh")
    app.start("ssh")
    wait_port("127.0.0.1", app.ssh_port)


def rss_mb(app) -> float:
    pid = app.procs["ssh"].pid
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


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
    batch.write_text(f"put {tmp_path / 'a.txt'} /root/a.txt\nls -l /root/a.txt\n"
                     f"get /root/a.txt {tmp_path / 'b.txt'}\nrm /root/a.txt\n")
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


# -- limits (issue 11 item 6, issue 19 items 5 and 7) ------------------------------------

def _banner(sock: socket.socket, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    try:
        return sock.recv(100)
    except OSError:
        return b""


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True once the gateway closes ``sock`` (EOF or reset) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def test_unauthenticated_connections_are_closed_after_the_login_timeout(app, guest, alice):
    import paramiko
    with gateway_with(app, ssh_auth_timeout=3):
        silent = socket.create_connection(("127.0.0.1", app.ssh_port))
        banner_only = socket.create_connection(("127.0.0.1", app.ssh_port))
        banner_only.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        kex = paramiko.Transport(socket.create_connection(("127.0.0.1", app.ssh_port)))
        kex.start_client(timeout=10)   # key exchange done, never authenticates
        assert kex.is_active()
        started = time.monotonic()
        assert _closed_within(silent, 8)
        assert _closed_within(banner_only, 8)
        while kex.is_active() and time.monotonic() - started < 8:
            time.sleep(0.1)
        assert not kex.is_active(), "the unauthenticated SSH connection is still open"
        took = time.monotonic() - started
        kex.close()
        assert took > 1.5  # the timeout, not an immediate refusal
        # a client that logs in in time is not affected
        r = ssh(app, alice, guest["id"], "echo in")
        assert r.stdout == b"in\n", r.stderr


def test_a_logged_in_connection_without_channels_outlives_the_login_timeout(app, guest, alice, tmp_path):
    """`ssh -N` (a tunnel waiting for its first local connection, an idle
    ControlMaster) logs in and opens no channel: the login timeout is not for it."""
    control = tmp_path / "ctl-idle"
    with gateway_with(app, ssh_auth_timeout=2):
        master = subprocess.Popen(ssh_argv(app, alice.key_file, guest["id"], "-M", "-S", str(control), "-N"),
                                  stderr=subprocess.PIPE)
        try:
            for _ in range(100):
                if control.exists():
                    break
                time.sleep(0.1)
            time.sleep(5)   # well past the 2 s login timeout, no channel opened
            assert master.poll() is None, master.stderr.read()
            r = ssh(app, alice, guest["id"], "echo still-up", extra=["-S", str(control), "-o", "ControlMaster=no"])
            assert r.stdout == b"still-up\n", r.stderr
        finally:
            master.kill()
            master.wait()


def test_connections_per_source_and_in_total_are_capped(app, guest, alice):
    def connect(source):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", app.ssh_port))
        return s
    with gateway_with(app, ssh_max_connections_per_source=3, ssh_max_connections=5):
        time.sleep(1)   # the start-up probe of wait_port is gone
        held = [connect("127.0.0.2") for _ in range(3)]
        assert all(_banner(s).startswith(b"SSH-2.0-") for s in held)
        over = connect("127.0.0.2")
        assert _banner(over) == b"", "a 4th connection from one address got in"
        held += [connect("127.0.0.3") for _ in range(2)]
        assert all(_banner(s).startswith(b"SSH-2.0-") for s in held[3:])
        assert _banner(connect("127.0.0.4")) == b"", "a 6th connection in total got in"
        for s in held:
            s.close()
        time.sleep(0.5)
        r = ssh(app, alice, guest["id"], "echo again")
        assert r.stdout == b"again\n", r.stderr


def test_channels_are_capped_and_gateway_memory_is_bounded(app, guest, alice):
    """Issue 19 item 5: direct-tcpip channels to a guest port that never reads.
    At most ssh_max_channels_per_connection (10) open (OpenSSH sees the 11th
    refused); gateway memory stays bounded and comes back after close."""
    cid = guest["id"]
    sink = subprocess.Popen(ssh_argv(app, alice.key_file, cid) + [
        "perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>q(127.0.0.1),LocalPort=>7799,"
        "Listen=>64,ReuseAddr=>1) or die; print qq(ready\\n); $|=1; while($c=$s->accept){push @k,$c}'"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert sink.stdout.readline() == b"ready\n"
    port = _free_port()
    fwd = subprocess.Popen(ssh_argv(app, alice.key_file, cid, "-N", "-v", "-L", f"{port}:127.0.0.1:7799"),
                           stderr=subprocess.PIPE)
    socks = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        time.sleep(1)
        before = rss_mb(app)
        socks += [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(11)]
        chunk = b"x" * (1 << 20)
        for s in socks:   # fill every forward until the guest side stops taking bytes
            s.settimeout(0.5)
            for _ in range(64):
                try:
                    s.sendall(chunk)
                except (TimeoutError, OSError):
                    break
        time.sleep(2)
        peak = rss_mb(app)
        for s in socks:
            s.close()
        socks = []
        fwd.terminate()
        err = fwd.communicate(timeout=10)[1]
        time.sleep(3)
        after = rss_mb(app)
        print(f"\ngateway RSS: {before:.0f} MB before, {peak:.0f} MB with 12 filled forwards, {after:.0f} MB after")
        assert peak - before < 130, (before, peak)   # ~8 MB per forward; 480 MB before the fix
        assert after - before < 25, (before, after)
        assert b"open failed: resource shortage" in err, err[-3000:]
    finally:
        for s in socks:
            s.close()
        if fwd.poll() is None:
            fwd.kill()
            fwd.wait()
        sink.kill()
        sink.wait()


def test_a_long_user_name_barely_grows_the_logs(app, guest, alice):
    """Issue 19 item 7: a 200 KB user name is refused before any call to the
    core; neither log grows by more than a few KB."""
    import paramiko
    before = {name: len(app.log(name)) for name in ("ssh", "core")}
    for _ in range(3):
        t = paramiko.Transport(socket.create_connection(("127.0.0.1", app.ssh_port)))
        t.start_client(timeout=10)
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey("a" * 200_000, alice.pkey)
        t.close()
    time.sleep(0.5)
    grown = {name: len(app.log(name)) - before[name] for name in before}
    assert all(n < 4096 for n in grown.values()), grown


# -- refusals -----------------------------------------------------------------------------

def _refused(r) -> bool:
    return r.returncode == 255 and b"Permission denied" in r.stderr


def test_foreign_key_is_refused(app, guest, bob):
    assert _refused(ssh(app, bob, guest["id"], "true"))


def test_unknown_container_is_refused(app, guest, alice):
    assert _refused(ssh(app, alice, "zzzzzzzz", "true"))
    assert _refused(ssh(app, alice, "not/a-valid id", "true", user="not.a.valid"))


def test_a_key_added_later_reaches_no_existing_container(app, guest, alice, keys_dir):
    """Issue 19 item 10: a token that may only add keys cannot make itself root
    in the user's containers; only keys selected for the container (ssh_key_ids) log in."""
    r = alice.client.post("/api/tokens", json={"name": "keys-only", "expires_in": "30d",
                                               "scopes": {f"compute.{alice.client.user_id}.keys": ["create"]}})
    assert r.status_code == 200, r.text
    keys_only = alice.client.with_token(r.json()["token"])
    assert keys_only.get(f"/compute/containers/{guest['id']}").status_code == 403
    key_id, path = _key_file(alice, keys_dir, "alice-via-token", client=keys_only)
    assert _refused(ssh(app, KeyFile(path), guest["id"], "true"))
    # the same holds for a key the owner adds with her full session
    key_id, path = _key_file(alice, keys_dir, "alice-later")
    assert _refused(ssh(app, KeyFile(path), guest["id"], "true"))


def _open_session(app, key_file, cid):
    """A real OpenSSH session that stays open; returns once it runs in the guest."""
    p = subprocess.Popen(ssh_argv(app, key_file, cid) + ["echo up; exec sleep 600"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"up\n"
    return p


def _ends_within(p, seconds: float) -> float:
    started = time.monotonic()
    try:
        p.wait(seconds)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"the open session was still running {seconds} s after the revocation") from None
    return time.monotonic() - started


def test_deleted_key_is_refused_and_ends_open_sessions(app, guest, alice, spare):
    cid = guest["id"]
    key_id, path = spare
    session = _open_session(app, path, cid)   # a key selected at creation is admitted
    keep = _open_session(app, alice.key_file, cid)
    assert alice.client.delete(f"/compute/ssh-keys/{key_id}").status_code == 200
    took = _ends_within(session, 8)
    assert _refused(ssh(app, KeyFile(path), cid, "true"))
    # sessions with another key go on
    assert keep.poll() is None
    keep.kill()
    keep.wait()
    print(f"\nsession ended {took:.1f} s after the key was deleted")


def test_turning_ssh_off_ends_open_sessions(app, guest, alice):
    cid = guest["id"]
    session = _open_session(app, alice.key_file, cid)
    assert alice.client.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": False}).status_code == 200
    try:
        took = _ends_within(session, 8)
    finally:
        assert alice.client.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": True}).status_code == 200
    print(f"\nsession ended {took:.1f} s after SSH was turned off")
    assert ssh(app, alice, cid, "true").returncode == 0


def test_new_channels_on_an_open_connection_are_rechecked(app, guest, alice, tmp_path):
    """Issue 19 item 11: one OpenSSH connection (ControlMaster) stays open; after
    SSH is turned off, a new session on it is refused (periodic re-check off here)."""
    cid = guest["id"]
    control = tmp_path / "ctl"
    with gateway_with(app, ssh_recheck_seconds=3600):
        master = subprocess.Popen(ssh_argv(app, alice.key_file, cid, "-M", "-S", str(control), "-N"),
                                  stderr=subprocess.PIPE)
        try:
            for _ in range(100):
                if control.exists():
                    break
                time.sleep(0.1)
            mux = ["-S", str(control), "-o", "ControlMaster=no"]
            r = ssh(app, alice, cid, "echo via-master", extra=mux)
            assert r.stdout == b"via-master\n", r.stderr
            c = alice.client
            assert c.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": False}).status_code == 200
            try:
                r = ssh(app, alice, cid, "echo via-master", extra=mux)
                assert r.returncode == 255 and r.stdout == b"", r
                assert b"Session open refused by peer" in r.stderr, r.stderr
            finally:
                assert c.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": True}).status_code == 200
        finally:
            master.kill()
            master.wait()


def test_disabled_flag_is_refused(app, guest, alice):
    cid = guest["id"]
    c = alice.client
    assert c.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": False}).json() == {"ssh_enabled": False}
    assert _refused(ssh(app, alice, cid, "true"))
    assert c.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": True}).status_code == 200
    assert ssh(app, alice, cid, "true").returncode == 0


def _key_query(app, key_file, user) -> list[bytes]:
    """What the gateway answers to an unsigned query for this key (OpenSSH with
    only the public half at hand: it asks, and cannot sign)."""
    r = run(["ssh", "-v", "-p", str(app.ssh_port), "-i", str(key_file), "-o", "BatchMode=yes",
             "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "PreferredAuthentications=publickey",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", f"{user}@127.0.0.1", "true"])
    assert r.returncode == 255, r
    lines = [re.sub(rb"^(debug1: |\S+@127\.0\.0\.1: )", b"", line) for line in r.stderr.splitlines()
             if re.search(rb"Offering public key|Server accepts key|Authentications that can continue|"
                          rb"Permission denied", line)]
    assert any(b"Offering public key" in line for line in lines), r.stderr
    return lines


def test_key_query_answer_does_not_depend_on_the_container(app, guest, alice, tmp_path):
    """Issue 19: an unsigned public-key offer (anyone may hold the public half)
    reveals nothing about the container: missing, stopped, SSH off, running."""
    cid = guest["id"]
    probe = tmp_path / "probe"   # exists, but holds no private key: OpenSSH can only ask
    probe.write_text("not a private key\n")
    probe.chmod(0o600)
    probe.with_suffix(".pub").write_text(alice.client.get("/compute/ssh-keys").json()["ssh_keys"][0]["public_key"])
    answers = {"running": _key_query(app, probe, cid), "missing": _key_query(app, probe, "zzzzzzzz")}
    c = alice.client
    assert c.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": False}).status_code == 200
    answers["ssh off"] = _key_query(app, probe, cid)
    assert c.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": True}).status_code == 200
    assert c.post(f"/compute/containers/{cid}/stop").json()["status"] == "stopped"
    answers["stopped"] = _key_query(app, probe, cid)
    assert len({tuple(a) for a in answers.values()}) == 1, answers
    print("\nanswer to a key query, in every state:", answers["running"])


def test_stopped_container_is_refused(app, guest, alice):
    cid = guest["id"]
    if alice.client.get(f"/compute/containers/{cid}").json()["status"] != "stopped":
        assert alice.client.post(f"/compute/containers/{cid}/stop").json()["status"] == "stopped"
    assert _refused(ssh(app, alice, cid, "true"))
