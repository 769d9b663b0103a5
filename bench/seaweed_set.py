"""A real SeaweedFS for the benchmark: master, 1 or 3 volume servers (one
rack each, so 010 places its second copy on another server), a filer
(leveldb store, JWT required on reads and writes, as the appliance runs it)
and an S3 gateway over that filer; all on loopback, free ports, explicit
gRPC ports, GOMEMLIMIT. Plus ``Watch``: peak RSS of groups of processes.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import requests

from harness import free_port

WEED = shutil.which("weed") or str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "weed")
GOMEMLIMIT = "256MiB"
S3_KEY, S3_SECRET = "benchkey", "benchsecret-" + secrets.token_hex(8)

SECURITY = """\
[jwt.filer_signing]
key = "{key}"
expires_after_seconds = 60
[jwt.filer_signing.read]
key = "{key}"
expires_after_seconds = 60
"""
S3_CONFIG = ('{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],'
             '"actions":["Admin","Read","Write","List","Tagging"]}]}')


class SeaweedSet:
    def __init__(self, root: Path, volume_servers: int = 1, replication: str = "000"):
        self.root = Path(root)
        self.servers = volume_servers
        self.replication = replication
        self.procs: dict[str, subprocess.Popen] = {}
        self.key = secrets.token_hex(32)
        self.key_file = self.root / "jwt.key"
        mport = free_port()
        self.master = f"127.0.0.1:{mport}.{free_port()}"
        self.filer_port = free_port()
        self.filer_url = f"http://127.0.0.1:{self.filer_port}"
        self.s3_url = f"http://127.0.0.1:{free_port()}"

    def token(self) -> str:
        return jwt.encode({"exp": int(time.time() + 3600)}, self.key, algorithm="HS256")

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "ab")
        env = {**os.environ, "GOMEMLIMIT": GOMEMLIMIT}
        # cwd: weed reads security.toml from its working directory.
        self.procs[name] = subprocess.Popen([WEED, *args], cwd=self.root, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)

    def __enter__(self) -> SeaweedSet:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "security.toml").write_text(SECURITY.format(key=self.key))
        self.key_file.write_text(self.key + "\n")
        self.key_file.chmod(0o600)
        (self.root / "s3.json").write_text(S3_CONFIG % (S3_KEY, S3_SECRET))
        bind = ("-ip=127.0.0.1", "-ip.bind=127.0.0.1")
        mport, mgrpc = self.master.split(":")[1].split(".")
        (self.root / "m").mkdir(exist_ok=True)
        try:
            self._spawn("master", "master", *bind, f"-port={mport}", f"-port.grpc={mgrpc}", "-mdir=m",
                        "-volumeSizeLimitMB=1024")
            for i in range(1, self.servers + 1):
                (self.root / f"v{i}").mkdir(exist_ok=True)
                self._spawn(f"volume{i}", "volume", *bind, f"-port={free_port()}", f"-port.grpc={free_port()}",
                            f"-dir=v{i}", "-max=100", f"-rack=rack{i}", f"-master={self.master}",
                            "-preStopSeconds=0")
            (self.root / "f").mkdir(exist_ok=True)
            self._spawn("filer", "filer", *bind, f"-port={self.filer_port}", f"-port.grpc={free_port()}",
                        f"-master={self.master}", "-defaultStoreDir=f",
                        # S3 writes take the filer's default: the same replication as the filer's PUTs.
                        f"-defaultReplicaPlacement={self.replication}")
            self._wait_filer()
            s3port = self.s3_url.rsplit(":", 1)[1]
            self._spawn("s3", "s3", "-ip.bind=127.0.0.1", f"-port={s3port}", f"-port.grpc={free_port()}",
                        "-port.iceberg=0", "-port.lance=0", f"-filer=127.0.0.1:{self.filer_port}.{self._filer_grpc()}",
                        "-config=s3.json")
            self._wait(lambda: requests.get(self.s3_url, timeout=1).status_code in (200, 403), "the S3 gateway")
        except BaseException:
            self.close()
            raise
        return self

    def _filer_grpc(self) -> str:
        return next(a.split("=", 1)[1] for a in self.procs["filer"].args if str(a).startswith("-port.grpc="))

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"weed {name} exited: {(self.root / f'{name}.log').read_text()[-2000:]}")
            try:
                if ready():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{what} did not become ready")

    def _wait_filer(self) -> None:
        """Until a write with every server's replication succeeds (all volume servers registered)."""
        replication = self.replication
        headers = {"Authorization": f"Bearer {self.token()}"}
        url = f"{self.filer_url}/bench/ready?replication={replication}&collection=bench"
        self._wait(lambda: requests.put(url, data=b"ready", headers=headers, timeout=5).status_code == 201,
                   "the filer")

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items() if p.poll() is None}

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def __exit__(self, *exc) -> None:
        self.close()


class Watch:
    """Peak VmRSS of named process groups (each a callable -> {name: pid}), every 20 ms."""

    def __init__(self):
        self.groups: dict[str, Callable[[], dict[str, int]]] = {}
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, group: str, pids: Callable[[], dict[str, int]]) -> None:
        self.groups[group] = pids

    def sample(self) -> None:
        from bench.bench_storage import vm_kb
        for group, pids in list(self.groups.items()):
            for name, pid in pids().items():
                key = f"{group} {name}"
                self.peak[key] = max(self.peak.get(key, 0), vm_kb(pid, "VmRSS"))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.02)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()
