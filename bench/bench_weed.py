"""The weed processes of a SeaweedFS set (appliance/host/seaweedfs.py): start-up
time by phase, stop time, RSS of each process idle and its peak while a 1 GiB
object streams up to the filer and back down, with GOMEMLIMIT (the default the
appliance sets) and without. Real ``weed`` on loopback, temp dirs; the object is
streamed (chunked upload, streamed download), never held in memory here.

    python -m bench bench_weed        # or: python bench/bench_weed.py --size-mib 1024 --volumes 1
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from appliance.host import seaweedfs_health

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

MIB = 1024 * 1024


class PeakRss:
    """Samples VmRSS and RssAnon of each process every 50 ms; the highest seen per name."""

    def __init__(self, procs):
        self.procs = procs
        self.peak = {p.name: 0 for p in procs}
        self.anon = {p.name: 0 for p in procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for p in self.procs:
                self.peak[p.name] = max(self.peak[p.name], p.rss_bytes())
                self.anon[p.name] = max(self.anon[p.name], p.anon_bytes())
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class Body:
    """*size* bytes of a repeated random block, read as a file (requests sends Content-Length)."""

    def __init__(self, size: int, block: bytes):
        self.size, self.block, self.sent = size, block, 0

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        at = self.sent % len(self.block)   # the same bytes whatever sizes the reader asks for
        k = min(len(self.block) - at, self.size - self.sent, n if n > 0 else len(self.block))
        self.sent += k
        return self.block[at:at + k]


def _s3_gateway(weed, memory_limit_mb: int):
    """`weed s3` in front of the set's filer, anonymous (no identities configured)."""
    from appliance.host.seaweedfs import WeedProcess, free_ports
    ports = free_ports(weed.ip, ["s3", "iceberg/lance"])
    http, grpc = ports["s3"]
    return WeedProcess("s3", "s3", weed.ip, http, grpc, weed.root / "s3", [
        f"-filer={weed.filer.address}.{weed.filer.grpc_port}", f"-localSocket={weed.root / 's3.sock'}",
        f"-port.iceberg={ports['iceberg/lance'][0]}", f"-port.lance={ports['iceberg/lance'][1]}"],
        weed.conf_dir, {"GOMEMLIMIT": f"{memory_limit_mb}MiB"} if memory_limit_mb else {},
        weed.root / "log" / "weed-s3.log", None, None)


def run(volumes: int, memory_limit_mb: int, size: int, streams: int = 1, s3: bool = False) -> dict:
    from seaweed_support import make_set, stop_quickly
    replication = "000" if volumes == 1 else "010"
    with tempfile.TemporaryDirectory(prefix="bench-weed-", dir="/var/tmp") as tmp:
        weed = make_set(Path(tmp), volumes, replication, memory_limit_mb=memory_limit_mb,
                        volume_size_limit_mb=1024, max_volumes=64)
        weed.write_config()
        phases = {}
        t0 = time.monotonic()
        weed.master.start()
        weed._wait(weed.master_ready, t0 + 60, "master")
        phases["master leads"] = time.monotonic() - t0
        for v in weed.volumes:
            v.start()
        weed.filer.start()
        weed._wait(lambda: len(weed.volume_servers()) == volumes, t0 + 60, "volumes")
        phases["volume servers registered"] = time.monotonic() - t0
        weed._wait(weed.filer_ready, t0 + 60, "filer")
        phases["filer healthy (set ready)"] = time.monotonic() - t0
        gateway = _s3_gateway(weed, memory_limit_mb) if s3 else None
        procs = weed.processes + ([gateway] if gateway else [])
        try:
            if gateway:   # the same object through the S3 gateway instead of the filer's HTTP API
                gateway.start()
                weed._wait(lambda: seaweedfs_health.get(f"{gateway.url}/")[0] != 0, time.monotonic() + 30, "s3")
                assert requests.put(f"{gateway.url}/bench", timeout=30).status_code == 200
                url, ok_code = f"{gateway.url}/bench/bench?", 200
            else:
                query = f"replication={replication}&collection=appliance"
                url, ok_code = f"{weed.filer_url}/appliance/blobs/be/bench?{query}", 201
            ok = requests.put(url.replace("bench?", "warm?"), data=b"w", headers=weed.auth(), timeout=60)
            assert ok.status_code == ok_code, ok.text
            time.sleep(2)
            idle = {p.name: (p.rss_bytes(), p.anon_bytes()) for p in procs}
            block = os.urandom(MIB)
            part = size // streams
            urls = [url.replace("bench?", f"bench{i}?") for i in range(streams)]
            with PeakRss(procs) as up:
                t = time.monotonic()
                with ThreadPoolExecutor(streams) as pool:
                    codes = list(pool.map(lambda u: requests.put(u, data=Body(part, block), headers=weed.auth(600),
                                                                 timeout=600).status_code, urls))
                up_s = time.monotonic() - t
            assert codes == [ok_code] * streams, codes
            expected = hashlib.sha256()
            body = Body(part, block)
            while piece := body.read():
                expected.update(piece)

            def fetch(u: str) -> tuple[int, str]:
                got, digest = 0, hashlib.sha256()
                with requests.get(u.split("?")[0], headers=weed.auth(600), stream=True, timeout=600) as r:
                    assert r.status_code == 200, r.text
                    for piece in r.iter_content(MIB):
                        got += len(piece)
                        digest.update(piece)
                return got, digest.hexdigest()

            with PeakRss(procs) as down:
                t = time.monotonic()
                with ThreadPoolExecutor(streams) as pool:
                    results = list(pool.map(fetch, urls))
                down_s = time.monotonic() - t
            assert results == [(part, expected.hexdigest())] * streams
            after = {p.name: (p.rss_bytes(), p.anon_bytes()) for p in procs}
        finally:
            if gateway:
                gateway.stop()
            t = time.monotonic()
            stopped = weed.stop()
            stop_s = time.monotonic() - t
            stop_quickly(weed)
        return {"phases": phases, "idle": idle, "up": (up.peak, up.anon), "down": (down.peak, down.anon),
                "after": after,
                "up_mb_s": size / MIB / up_s, "down_mb_s": size / MIB / down_s, "stop_s": stop_s,
                "stopped": stopped}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--volumes", type=int, default=1, help="1 (replication 000) or 3 (010, three racks)")
    ap.add_argument("--streams", type=int, default=1, help="parallel uploads (then downloads) sharing the size")
    ap.add_argument("--s3", action="store_true", help="through the S3 gateway (weed s3) instead of the filer")
    ap.add_argument("--limits", default="256,0", help="GOMEMLIMIT values in MiB to compare (0: none)")
    args = ap.parse_args()
    for limit in (int(x) for x in args.limits.split(",")):
        res = run(args.volumes, limit, args.size_mib * MIB, args.streams, args.s3)
        label = f"GOMEMLIMIT={limit}MiB" if limit else "no GOMEMLIMIT"
        print(f"\n{args.volumes} volume server(s), {label}, {args.size_mib} MiB in {args.streams} stream(s)"
              f" through {'the S3 gateway' if args.s3 else 'the filer'}")
        print("  start: " + ", ".join(f"{k} {v:.2f} s" for k, v in res["phases"].items()))
        print(f"  up {res['up_mb_s']:.0f} MB/s, down {res['down_mb_s']:.0f} MB/s; "
              f"stop {res['stop_s']:.2f} s ({', '.join(res['stopped'])})")
        print(f"  {'process':<12} {'idle':>11} {'peak up':>11} {'peak down':>11} {'after':>11}"
              "   (MiB: VmRSS/RssAnon; the difference is the shared weed binary)")
        for name in res["idle"]:
            cells = [res["idle"][name], (res["up"][0][name], res["up"][1][name]),
                     (res["down"][0][name], res["down"][1][name]), res["after"][name]]
            print(f"  {name:<12} " + " ".join(f"{f'{rss / MIB:.0f}/{anon / MIB:.0f}':>11}" for rss, anon in cells))


if __name__ == "__main__":
    main()
