"""Real appliance processes on free ports, driven the way a user drives them."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def wait_for_sshd(ip: str, timeout: float = 20.0, port: int = 22) -> float:
    """Seconds until an sshd at ip:port sends its banner; TimeoutError after *timeout*."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with socket.create_connection((ip, port), timeout=0.5) as s:
                s.settimeout(1.0)
                if s.recv(64).startswith(b"SSH-"):
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.002)
    raise TimeoutError(f"sshd on {ip}:{port} did not answer within {timeout}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bindable(port: int) -> bool:
    """True if this host could listen on TCP ``port`` on every address."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def free_port_in(lo: int, hi: int) -> int:
    """The first port of ``lo``-``hi`` that is free on every address."""
    for port in range(lo, hi + 1):
        if bindable(port):
            return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


# argon2id at the cost a production host pays (64 MiB, 3 passes: ~0.3 s of CPU per login, 1 s
# on a busy machine), for the tests that prove what that cost does to logins under attack.
# The suite makes and signs in ~2000 users: every other appliance hashes cheaply (CHEAP_HASHES).
PRODUCTION_HASHES = {"password_hash_memory_kib": 65536, "password_hash_time_cost": 3}
CHEAP_HASHES = {"password_hash_memory_kib": 1024, "password_hash_time_cost": 1}


class Appliance:
    """A core and an HTTP gateway as subprocesses over one data dir."""

    def __init__(self, data_dir: Path, admin_password: str = "admin-pass-1", **settings):
        self.data_dir = Path(data_dir)
        settings = {**CHEAP_HASHES, **settings}
        self.admin_password = admin_password
        self.http_port = int(settings.pop("http_port", 0)) or free_port()
        if settings.get("guest_driver") == "fake":
            # Fake guests take nothing: a host with room for any test's containers, unless the
            # test sets its own (placement: tests/unit/test_placement.py, test_cluster_hosts.py).
            settings = {"host_cpus": 1024, "host_memory_mb": 1 << 22, **settings}
        self.env = {
            **os.environ,
            "APPLIANCE_CONFIG": "/dev/null",
            "APPLIANCE_DATA_DIR": str(self.data_dir),
            "APPLIANCE_HTTP_PORT": str(self.http_port),
            "APPLIANCE_ADMIN_PASSWORD": admin_password,
            "APPLIANCE_LOG_LEVEL": "INFO",
            **{f"APPLIANCE_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.url = f"http://127.0.0.1:{self.http_port}"

    def cli(self, *args, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=self.env, cwd=self.data_dir.parent,
                              input=input, capture_output=True, text=True, timeout=120)

    def start(self, *names: str) -> Appliance:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.procs:
            out = self.cli("user", "list")
            assert out.returncode == 0, out.stderr
            if "\tadmin\t" not in out.stdout:
                r = self.cli("user", "add", "admin", "--admin", input=self.admin_password + "\n")
                assert r.returncode == 0, r.stderr
        for name in names or ("core", "http"):
            log = open(self.data_dir / f"{name}.log", "ab")
            # cwd: `python -m` puts the working directory first on sys.path, ahead
            # of PYTHONPATH, so a checkout there would shadow a PYTHONPATH baseline.
            self.procs[name] = subprocess.Popen([sys.executable, "-m", "appliance.cli", name], cwd=self.data_dir.parent,
                                                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            self.wait_healthy()
        except BaseException:
            self.close()  # leave no daemon behind a failed start
            raise
        return self

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}: {self.log(name)[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).text == "ok":
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError("appliance did not become healthy")

    def log(self, name: str) -> str:
        return (self.data_dir / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def kill(self, name: str) -> None:
        self.stop(name, signal.SIGKILL)

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    # -- a user's view ----------------------------------------------------------
    def login(self, username: str, password: str) -> Client:
        r = requests.post(self.url + "/api/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return Client(self.url, r.json()["token"], r.json())

    def admin(self) -> Client:
        return self.login("admin", self.admin_password)


class Client(requests.Session):
    """requests.Session bound to the appliance URL with a bearer token."""

    def __init__(self, base: str, token: str | None = None, info: dict | None = None):
        super().__init__()
        self.base = base
        self.info = info or {}
        self.token = token
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    @property
    def user_id(self) -> str:
        return self.info["user_id"]

    def request(self, method, url, *args, **kwargs):
        if url.startswith("/"):
            url = self.base + url
        return super().request(method, url, *args, **kwargs)

    def with_token(self, token: str) -> Client:
        return Client(self.base, token, self.info)
