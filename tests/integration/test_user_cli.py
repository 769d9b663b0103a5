"""The user's client (`appliance login`, `ls`, `cp`, `token`, ...; docs/cli.md), run as a
subprocess against one real appliance (core + gateway; the fake guest driver: the real
guests' part is test_user_cli_lxc.py). Exit codes: 0, 1 error, 2 usage, 3 not found, 4 denied."""
from __future__ import annotations

import configparser
import hashlib
import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from client_support import CLIENT, CuttingProxy, User
from harness import Appliance

MB = 1 << 20


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("user-cli"), guest_driver="fake")
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app, tmp_path_factory):
    person = User(tmp_path_factory.mktemp("admin-config"))
    person.login(app, "admin", app.admin_password)
    return person


@pytest.fixture(scope="module")
def alice(app, admin, tmp_path_factory):
    admin.ok("admin", "user", "add", "alice", "--password-stdin", input="pw-alice-1\n")
    person = User(tmp_path_factory.mktemp("alice-config"))
    person.login(app, "alice", "pw-alice-1")
    return person


def _sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MB):
            h.update(block)
    return h.hexdigest()


def test_login_stores_a_private_config_and_whoami_answers(app, alice):
    me = alice.json("whoami")
    assert me["username"] == "alice" and me["is_admin"] is False and me["url"] == app.url
    assert stat.S_IMODE(alice.config.stat().st_mode) == 0o600
    stored = json.loads(alice.config.read_text())
    assert stored["current"] == "127.0.0.1" and stored["remotes"]["127.0.0.1"]["token"]
    assert [r["name"] for r in alice.json("remote", "ls") if r["current"]] == ["127.0.0.1"]
    assert "* 127.0.0.1" in alice.ok("remote", "ls")


def test_several_remotes(app, tmp_path):
    person = User(tmp_path / "cfg")
    person.ok("remote", "add", "spare", "http://127.0.0.1:9")     # nothing listens there
    person.login(app, "admin", app.admin_password, "--name", "main")
    assert person.json("whoami")["remote"] == "main"
    person.ok("remote", "use", "spare")
    down = person.run("ls")
    assert down.returncode == 4 and "not logged in to spare" in down.stderr   # no token for it
    assert person.run("--remote", "main", "ls").returncode == 0
    person.ok("remote", "rm", "spare")
    assert person.json("remote", "ls") == [{"name": "main", "url": app.url, "username": "admin",
                                            "current": True, "logged_in": True, "kind": "session"}]
    assert person.run("remote", "use", "spare").returncode == 3


def test_exit_codes(app, alice, tmp_path):
    assert alice.run("show", "no-such-container").returncode == 3
    assert alice.run("files", "rm", "default/no-such-file").returncode == 3
    denied = alice.run("admin", "user", "ls")
    assert denied.returncode == 4 and "admin" in denied.stderr     # the server's message
    usage = alice.run("cp", "just-one-arg")
    assert usage.returncode == 2 and "Usage:" in usage.stderr
    stranger = User(tmp_path / "stranger")
    wrong = stranger.run("login", app.url, "-u", "alice", "--password-stdin", input="wrong\n")
    assert wrong.returncode == 4 and "invalid username or password" in wrong.stderr
    assert not stranger.config.exists()
    gone = stranger.run("login", "http://127.0.0.1:9", "-u", "x", "--password-stdin", input="y\n")
    assert gone.returncode == 1 and "cannot reach" in gone.stderr


def test_keys_and_containers(alice, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f",
                    str(tmp_path / "id")], check=True)
    key = alice.json("key", "add", str(tmp_path / "id.pub"))
    assert key["name"] == "alice@laptop" and key["fingerprint"].startswith("SHA256:")
    assert alice.json("key", "add", str(tmp_path / "id.pub"))["id"] == key["id"]   # not added twice
    made = alice.json("create", "web", "--wait", "--ingress", "8080", "--mount", "/data", "--ssh")
    assert made["status"] == "running" and made["name"] == "web" and made["ssh_enabled"] is True
    assert [c["id"] for c in alice.json("ls")] == [made["id"]]
    assert alice.json("show", "web")["id"] == made["id"]                 # by name or id
    completion = subprocess.run([CLIENT], env={**alice.env, "COMP_WORDS": "appliance show w", "COMP_CWORD": "2",
                                               "_APPLIANCE_COMPLETE": "bash_complete"},
                                capture_output=True, text=True, timeout=60)
    # bash completion from the server: names and ids that start so (an id is random: "w01vvwvf" was one)
    assert sorted(completion.stdout.split()) == sorted(
        ["plain,web"] + ([f"plain,{made['id']}"] if made["id"].startswith("w") else [])), completion
    assert [r["port"] for r in alice.json("ingress", "ls", made["id"])] == [8080]
    assert alice.json("mounts", "web")["mount_paths"] == ["/data"]
    assert alice.ok("ssh", "web", "--print", "--", "echo", "ok").startswith("ssh -p ") is False
    printed = alice.ok("ssh", "web", "--print", "-i", "k", "--", "echo", "ok").split()
    assert printed[:3] == ["ssh", "-i", "k"] and printed[-3:] == ["--", "echo", "ok"]
    assert f"{made['id']}@127.0.0.1" in printed
    assert alice.json("stop", "web")["status"] == "stopped"
    assert alice.run("rm", "web").returncode == 0                       # stopped: no --force needed
    assert alice.json("ls") == []
    assert alice.run("key", "rm", key["id"]).returncode == 0


def test_cp_100_mb_both_ways_and_a_resumed_download(app, alice, tmp_path):
    alice.ok("ns", "create", "backups")
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(MB))
    up = alice.json("cp", str(src), "backups/")
    assert up["size"] == 100 * MB and up["name"] == "big.bin"
    assert [f["size"] for f in alice.json("files", "ls", "backups")] == [100 * MB]
    down = alice.json("cp", "backups/big.bin", str(tmp_path / "copy.bin"))
    assert _sha(tmp_path / "copy.bin") == _sha(src) and down["resumed_from"] == 0
    # Cut after ~30 MB: the client says to run it again, and the rest comes with Range + If-Range.
    proxy = CuttingProxy(app.http_port, 30 * MB)
    cut = User(tmp_path / "cut")
    cut.config.write_text(alice.config.read_text().replace(app.url, proxy.url))
    target = tmp_path / "resumed.bin"
    broken = cut.run("cp", "backups/big.bin", str(target))
    proxy.close()
    assert broken.returncode == 1 and "resume" in broken.stderr, broken.stderr
    part = tmp_path / "resumed.bin.part"
    assert 0 < part.stat().st_size < 100 * MB and not target.exists()
    had = part.stat().st_size
    resumed = alice.json("cp", "backups/big.bin", str(target))
    assert resumed["resumed_from"] == had
    assert _sha(target) == _sha(src) and not part.exists()


def test_a_partial_download_of_a_replaced_file_starts_over(alice, tmp_path):
    (tmp_path / "v1").write_bytes(b"1" * 5000)
    (tmp_path / "v2").write_bytes(b"2" * 7000)
    alice.ok("cp", str(tmp_path / "v1"), "backups/v")
    target = tmp_path / "v"
    (tmp_path / "v.part").write_bytes(b"1" * 2000)
    (tmp_path / "v.part.etag").write_text(alice.json("cp", "backups/v", str(tmp_path / "probe"))["etag"])
    alice.ok("cp", str(tmp_path / "v2"), "backups/v")        # replaced: a new ETag, If-Range fails
    again = alice.json("cp", "backups/v", str(target))
    assert again["resumed_from"] == 0 and target.read_bytes() == b"2" * 7000


def test_progress_bar_only_on_a_terminal(alice, tmp_path):
    (tmp_path / "five").write_bytes(os.urandom(5 * MB))
    plain = alice.run("cp", str(tmp_path / "five"), "backups/five")
    assert plain.returncode == 0 and plain.stderr == ""
    on_tty = subprocess.run(["script", "-qec", f"{CLIENT} cp backups/five {tmp_path / 'back'}", "/dev/null"],
                            env=alice.env, capture_output=True, text=True, timeout=60)
    assert on_tty.returncode == 0 and "5.2/5.2 MB" in on_tty.stdout, on_tty.stdout   # rich's bar, on the pty
    assert (tmp_path / "back").read_bytes() == (tmp_path / "five").read_bytes()


def test_cp_stdin_and_stdout(alice):
    alice.ok("cp", "-", "backups/piped.txt", input="from a pipe\n")
    assert alice.ok("cp", "backups/piped.txt", "-") == "from a pipe\n"
    assert alice.ok("files", "url", "backups/piped.txt").strip().endswith("/storage/backups/piped.txt")
    alice.ok("files", "rm", "backups/piped.txt")
    assert alice.run("cp", "backups/piped.txt", "-").returncode == 3


def test_cp_into_a_device_or_a_fifo_writes_it_in_place(alice, tmp_path):
    """`cp NS/NAME /dev/null` once renamed NAME.part over /dev/null, making it a regular file."""
    data = os.urandom(3 * MB)
    (tmp_path / "src").write_bytes(data)
    alice.ok("ns", "create", "devices")
    alice.ok("cp", str(tmp_path / "src"), "devices/dev")
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))   # a /dev/null of our own
    alice.ok("cp", "devices/dev", str(null))
    assert stat.S_ISCHR(null.stat().st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["null", "src"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:
        got = pool.submit(fifo.read_bytes)
        alice.ok("cp", "devices/dev", str(fifo))
        assert got.result(timeout=60) == data
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_tokens(app, alice, tmp_path):
    made = alice.json("token", "create", "ci", "--scope", "compute:read", "--expires", "30d")
    assert made["token"].startswith("ecloud_") and made["expires_at"]
    assert [t["name"] for t in alice.json("token", "ls")] == ["ci"]
    robot = User(tmp_path / "robot")
    robot.ok("login", app.url, "--token", made["token"])
    assert robot.json("ls") == []
    denied = robot.run("ns", "create", "nope")                  # storage is not in its scopes
    assert denied.returncode == 4
    assert robot.run("token", "ls").returncode == 4             # tokens need a password login
    alice.ok("token", "rm", made["id"])
    assert robot.run("ls").returncode == 4                      # deleted: refused at once
    assert alice.json("token", "ls") == []


def test_admin_users(admin):
    made = admin.json("admin", "user", "add", "carol", "--display-name", "Carol C", "--password-stdin",
                      input="pw-carol-1\n")
    assert made["display_name"] == "Carol C" and made["is_admin"] is False
    assert "carol" in [u["username"] for u in admin.json("admin", "user", "ls")]
    admin.ok("admin", "user", "rm", "carol")
    assert admin.run("admin", "user", "rm", "carol").returncode == 3


def test_logout_revokes_the_session(app, tmp_path):
    person = User(tmp_path / "p")
    person.login(app, "admin", app.admin_password)
    token = json.loads(person.config.read_text())["remotes"]["127.0.0.1"]["token"]
    person.ok("logout")
    assert person.run("ls").returncode == 4
    assert requests.get(app.url + "/api/session", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_host_commands_keep_working(app):
    """`appliance user list` on the host, through the console script, as before."""
    r = subprocess.run([CLIENT, "user", "list"], env=app.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "\tadmin\t" in r.stdout, r.stderr
    bad = subprocess.run([CLIENT, "user", "frob"], env=app.env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


HOST_MODULES = ["grpc", "tornado", "paramiko", "libvirt", "peewee", "google.protobuf", "argon2", "aiohttp"]
WHEEL_CACHE = Path(os.environ.get("APPLIANCE_CLIENT_WHEELS", "/var/cache/appliance/client-wheels"))


def _base_wheels(repo: Path, pip: list[str]) -> Path:
    """Wheels of the base package's requirements (setup.cfg install_requires), built once per set
    of requirements and kept, so that installing needs no index."""
    cfg = configparser.ConfigParser()
    cfg.read(repo / "setup.cfg")
    reqs = sorted(r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip())
    path = WHEEL_CACHE / hashlib.sha256("\n".join(reqs).encode()).hexdigest()[:16]
    if not (path / ".complete").exists():
        subprocess.run([*pip, "wheel", "-w", str(path), *reqs], check=True, capture_output=True, timeout=600)
        (path / ".complete").write_text("\n".join(reqs) + "\n")
    return path


def test_the_base_package_alone_is_a_working_client(app, tmp_path):
    """A laptop's install: the wheel without extras, in a venv of its own (the requirements'
    wheels built once and kept: no index needed); none of the host's packages."""
    repo = Path(__file__).resolve().parents[2]
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(repo)],
                   check=True, capture_output=True, timeout=300)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-compile", "--no-index",
                    "--find-links", str(wheels), "--find-links", str(_base_wheels(repo, pip)), "appliance"],
                   check=True, capture_output=True, timeout=300)
    found = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util as u, sys; "
                            f"print([m for m in {HOST_MODULES!r} if u.find_spec(m.split('.')[0])])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"
    laptop = User(tmp_path / "laptop")
    laptop.env["PATH"] = f"{venv / 'bin'}:{laptop.env['PATH']}"
    client = str(venv / "bin" / "appliance")

    def run(*args, input=None):
        return subprocess.run([client, *args], env=laptop.env, input=input, capture_output=True, text=True,
                              timeout=60)

    assert run("--help").returncode == 0
    assert run("login", app.url, "-u", "admin", "--password-stdin", input=app.admin_password + "\n").returncode == 0
    listed = run("ls", "--json")
    assert listed.returncode == 0 and isinstance(json.loads(listed.stdout), list), listed.stderr
    for host_command in (["up"], ["ssh"], ["user", "list"]):
        refused = run(*host_command)
        assert refused.returncode == 1 and "pip install 'appliance[server]'" in refused.stderr, refused.stderr
