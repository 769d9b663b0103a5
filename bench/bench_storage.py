"""Storage throughput: the appliance vs nginx (Debian's nginx-light) vs dd, one run.

Everything lives in one temporary directory, so the appliance's file store,
nginx's root and dd's output are on the same disk. Measured with curl (a
real HTTP client, body to /dev/null or from a file):

- download: GET of the same cached file from nginx (sendfile) and from the
  appliance;
- upload: nginx DAV PUT (writes a temp file and renames, no fsync) vs the
  appliance's multipart POST and raw PUT (fsync before the 200);
- the appliance twice: with the gateway doing the file I/O the core
  authorized (``storage_local_io``, the default) and with every byte over the
  core's gRPC stream (``storage_local_io = false``);
- dd: ``dd bs=1M conv=fsync`` of the same bytes, the disk's write speed;
- peak RSS (VmHWM) of every appliance process, sampled throughout too.

Every timed transfer starts from a clean state: ``sync`` first, outside the
timing, so no run pays for the dirty pages another one left (nginx's PUT does
not fsync); and every write goes to a new name, nothing written is deleted
before the end. Deleting a 1 GiB file on a filesystem mounted with
``discard`` (this machine's root) stalls the writes that follow it, so an
overwrite or dd's usual cleanup made whichever run came next look 2-3x
slower, whatever it was.

Targets (issue 3): download >= 0.5 x nginx, upload >= 0.3 x dd, RSS < 150 MB.

    python -m bench.bench_storage [--size-mb 1024] [--dir /var/tmp] [--repeat 3]
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import Appliance, free_port  # noqa: E402

MB = 1_000_000

NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_max_body_size 0;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {www};
    location /upload/ {{ dav_methods PUT; create_full_put_path on; }}
  }}
}}
"""


def vm_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes(app: Appliance) -> dict[str, int]:
    """name -> pid of each appliance process, gateway workers included."""
    out = {}
    for name, proc in list(app.procs.items()):
        out[name] = proc.pid
        try:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            kids = []
        for i, kid in enumerate(sorted(kids)):
            out[f"{name} w{i + 1}"] = int(kid)
    return out


class RssWatch:
    """Samples VmRSS of the appliance's processes every 20 ms; keeps the peak."""

    def __init__(self, app: Appliance):
        self.app = app
        self.peak: dict[str, int] = {}
        self.hwm: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.02)

    def sample(self) -> None:
        for name, pid in processes(self.app).items():
            self.peak[name] = max(self.peak.get(name, 0), vm_kb(pid, "VmRSS"))
            self.hwm[name] = max(self.hwm.get(name, 0), vm_kb(pid, "VmHWM"))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.sample()
        self._stop.set()
        self._thread.join()


def curl(*args: str) -> float:
    """Run curl; return its time_total, failing on a non-2xx answer."""
    os.sync()  # not timed: start with nobody else's dirty pages
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", *args],
                         capture_output=True, text=True, check=True).stdout.split()
    if not out[0].startswith("2"):
        raise RuntimeError(f"curl {' '.join(args)} -> HTTP {out[0]}")
    return float(out[1])


def make_source(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def dd_write(src: Path, dst: Path) -> float:
    os.sync()
    start = time.perf_counter()
    subprocess.run(["dd", f"if={src}", f"of={dst}", "bs=1M", "conv=fsync", "status=none"], check=True)
    return time.perf_counter() - start


def start_nginx(root: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    www = root / "www"
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (www / "upload").mkdir(parents=True, exist_ok=True)
    # nginx's workers run as an unprivileged user: let them read and PUT.
    for d in (root.parent, root, www):
        d.chmod(0o755)
    (www / "upload").chmod(0o777)
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, www=www, port=port))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(root)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc, port
        except requests.RequestException:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nginx did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024 = 1 GiB)")
    ap.add_argument("--dir", default="/var/tmp", help="where the temporary tree goes (one disk)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best run of each is kept")
    args = ap.parse_args()
    if shutil.which("nginx") is None:
        sys.exit("nginx not found: apt-get install nginx-light")
    size = args.size_mb << 20
    base = Path(tempfile.mkdtemp(prefix="bench-storage-", dir=args.dir))
    app = nginx = None
    try:
        src = base / "src.bin"
        make_source(src, size)
        src.chmod(0o644)
        fresh = (f"w{i}.bin" for i in itertools.count())  # a new name for every write
        nginx, nport = start_nginx(base / "nginx")
        os.link(src, base / "nginx" / "www" / "src.bin")
        ngx_url = f"http://127.0.0.1:{nport}"

        # Every write is a new file of the admin's: a quota and an upload limit
        # that fit them (the checks still run on every upload).
        app = Appliance(base / "appliance", log_level="WARNING", storage_quota_bytes=1 << 40,
                        max_upload_bytes=max(size, 4 << 30)).start()
        token = app.admin().token
        auth = ["-H", f"Authorization: Bearer {token}"]
        idle = {name: vm_kb(pid, "VmRSS") for name, pid in processes(app).items()}
        curl(*auth, "-T", str(src), f"{app.url}/storage/default/src.bin")  # what GET reads
        runs = {
            "dd": lambda: dd_write(src, base / next(fresh)),
            "ngx_down": lambda: curl(f"{ngx_url}/src.bin"),
            "ngx_up": lambda: curl("-T", str(src), f"{ngx_url}/upload/{next(fresh)}"),
            "multipart": lambda: curl(*auth, "-H", f"X-File-Size: {size}", "-F",
                                      f"file=@{src};filename={next(fresh)}",
                                      f"{app.url}/storage/upload?namespace=default"),
            "raw": lambda: curl(*auth, "-T", str(src), f"{app.url}/storage/default/{next(fresh)}"),
            "down": lambda: curl(*auth, f"{app.url}/storage/default/src.bin"),
        }
        times: dict = {}
        with RssWatch(app) as rss:
            # Interleaved rounds, so the disk's drift hits baselines and appliance alike.
            for _ in range(args.repeat):
                for mode in ("local", "grpc"):
                    # Same build; "grpc": every byte over the core's gRPC stream.
                    app.stop("http")
                    app.env["APPLIANCE_STORAGE_LOCAL_IO"] = "true" if mode == "local" else "false"
                    app.start("http")
                    for kind in ("dd", "ngx_up", "ngx_down") if mode == "local" else ():
                        times.setdefault(kind, []).append(runs[kind]())
                    for kind in ("multipart", "raw", "down"):
                        times.setdefault((mode, kind), []).append(runs[kind]())
                    rss.sample()
        check = subprocess.run(["curl", "-sS", *auth, f"{app.url}/storage/default/src.bin"],
                               capture_output=True, check=True).stdout
        assert check == src.read_bytes(), "downloaded bytes differ from the source"
        results = {key: min(t) for key, t in times.items()}
        dd, ngx_down, ngx_up = results["dd"], results["ngx_down"], results["ngx_up"]
    finally:
        if app is not None:
            app.close()
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
        shutil.rmtree(base, ignore_errors=True)

    rate = lambda t: size / t / MB  # noqa: E731
    print(f"storage benchmark: {args.size_mb} MiB file, best of {args.repeat} interleaved rounds, dir {args.dir}")
    print(f"{'':<44}{'MB/s':>9}{'ratio':>9}")
    print(f"{'dd bs=1M conv=fsync (disk write)':<44}{rate(dd):>9.0f}")
    print(f"{'nginx GET (sendfile)':<44}{rate(ngx_down):>9.0f}")
    print(f"{'nginx DAV PUT (no fsync)':<44}{rate(ngx_up):>9.0f}")
    label = {"local": "gateway does file I/O", "grpc": "all bytes over gRPC"}
    for mode in ("local", "grpc"):
        down, mp, raw = results[mode, "down"], results[mode, "multipart"], results[mode, "raw"]
        print(f"appliance, {label[mode]}:")
        print(f"{'  GET':<44}{rate(down):>9.0f}{ngx_down / down:>9.2f}  x nginx (target >= 0.5)")
        print(f"{'  POST multipart upload (fsync)':<44}{rate(mp):>9.0f}{dd / mp:>9.2f}  x dd (target >= 0.3)")
        print(f"{'  PUT raw upload (fsync)':<44}{rate(raw):>9.0f}{dd / raw:>9.2f}  x dd")
        print(f"{'  multipart upload vs nginx DAV PUT':<44}{'':>9}{ngx_up / mp:>9.2f}  x nginx")
    print("peak RSS of appliance processes (MB; target < 150):")
    for name in sorted(rss.peak):
        print(f"  {name:<10} idle {idle.get(name, 0) / 1024:6.1f}   peak sampled {rss.peak[name] / 1024:6.1f}"
              f"   VmHWM {rss.hwm[name] / 1024:6.1f}")


if __name__ == "__main__":
    main()
