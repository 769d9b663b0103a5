"""A real SeaweedFS for the benchmark: the appliance's own set
(appliance/host/seaweedfs.py through tests/seaweed_support.py: master, one
volume server per rack, filer, JWT on the filer and the volume servers,
GOMEMLIMIT, loopback) plus an S3 gateway (``weed s3``) over that filer,
reading the same security.toml. And ``Watch``: peak RSS of process groups.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
from seaweed_support import TestWeedSet, seaweed_set

from appliance.host.seaweedfs import free_ports, weed_binary

S3_KEY, S3_SECRET = "benchkey", "benchsecret-" + secrets.token_hex(8)
S3_CONFIG = ('{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],'
             '"actions":["Admin","Read","Write","List","Tagging"]}]}')


@contextlib.contextmanager
def bench_set(root: Path, volumes: int, replication: str) -> Iterator[tuple[TestWeedSet, str, dict[str, int]]]:
    """(the set, the S3 gateway's URL, {name: pid} of every weed process, S3 included)."""
    # 1 GiB objects: volumes of 1 GiB, room for a dozen of them per server.
    with seaweed_set(root, volumes, replication, volume_size_limit_mb=1024, max_volumes=64,
                     memory_limit_mb=512) as weed:
        (port, grpc), = free_ports("127.0.0.1", ["s3"]).values()
        config = weed.root / "s3.json"
        config.write_text(S3_CONFIG % (S3_KEY, S3_SECRET))
        with open(weed.root / "weed-s3.log", "ab") as log:
            s3 = subprocess.Popen(
                [weed_binary(), f"-config_dir={weed.conf_dir}", "s3", "-ip.bind=127.0.0.1", f"-port={port}",
                 f"-port.grpc={grpc}", "-port.iceberg=0", "-port.lance=0",
                 f"-filer={weed.filer.address}.{weed.filer.grpc_port}", f"-config={config}"],
                cwd=weed.root, env={**os.environ, "GOMEMLIMIT": "512MiB"}, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if s3.poll() is not None:
                    raise RuntimeError(f"weed s3 exited: {(weed.root / 'weed-s3.log').read_text()[-2000:]}")
                with contextlib.suppress(requests.RequestException):
                    if requests.get(url, timeout=1).status_code in (200, 403):
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("the S3 gateway did not answer")
                time.sleep(0.1)
            pids = {p.name: p.pid for p in weed.processes if p.pid}
            yield weed, url, {**pids, "s3": s3.pid}
        finally:
            s3.terminate()
            try:
                s3.wait(10)
            except subprocess.TimeoutExpired:
                s3.kill()
                s3.wait()


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
