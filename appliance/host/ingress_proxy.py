"""HAProxy for the shared ingress ports 80 (Host) and 443 (TLS SNI).

The configuration is fixed for a given set of settings; the routes live in
two map files (``<data_dir>/ingress/{http,tls}.map``: ``<id>.<domain>
<guest ip>:<port>``). A rule change rewrites the maps and replaces them in
the running process through HAProxy's runtime API (``prepare map`` / ``add
map @ver`` / ``commit map @ver``, one atomic swap per map, over the admin
socket ``<data_dir>/run/haproxy.sock``, mode 0600). No reload, so no new
process: holding connections while rules change cannot pile up processes.

A reload (``-sf``) happens only when the configuration text changes
(settings changed at a core restart) or the runtime API fails; then
``hard-stop-after`` ends the old process after
``Config.ingress_hard_stop_after`` seconds at the latest.

The frontend looks the name up in the map and sets the connection's
destination to the guest (``set-dst``/``set-dst-port`` on a server
``0.0.0.0:0``); a name that is not in the map is refused (404 JSON on 80,
closed on 443), never forwarded to the original destination.

Limits (settings, docs/access.md): idle timeouts
(``ingress_idle_timeout``), concurrent connections per client address on
80 and 443 together (``ingress_max_conns_per_source``, a ``conn_cur``
stick table of ``type ipv6``: IPv4 clients are keyed on their address,
IPv6 clients on their /64; over the limit a new connection is closed at once).
"""
from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from appliance.config import Config
from appliance.errors import Internal

log = logging.getLogger("appliance.host.ingress")

HTTP_PORT, HTTPS_PORT = 80, 443


class RuntimeApiError(RuntimeError):
    pass


def _bind(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def map_entries(config: Config, routes, port: int) -> list[tuple[str, str]]:
    domain = config.compute_domain.lower()
    return [(f"{r.container_id}.{domain}".lower(), f"{r.ip}:{r.target_port}") for r in routes if r.port == port]


def map_text(entries: list[tuple[str, str]]) -> str:
    return "".join(f"{k} {v}\n" for k, v in entries)


def haproxy_config(config: Config, http_map: Path, tls_map: Path, admin_socket: Path) -> str:
    user = ""
    try:
        pwd.getpwnam("haproxy")
        user = "    user haproxy\n    group haproxy\n"
    except KeyError:
        pass
    idle = max(1, int(config.ingress_idle_timeout))
    limit = max(1, int(config.ingress_max_conns_per_source))
    # IPv4 sources map into the ipv6 table (::ffff:a.b.c.d); an IPv6 client counts per /64,
    # the smallest block a host is usually given (it could rotate through 2^64 addresses)
    per_source = ("    tcp-request connection track-sc0 src,ipmask(32,64) table per_source\n"
                  f"    tcp-request connection reject if {{ sc0_conn_cur gt {limit} }}\n")
    return "".join([
        "# Written by the appliance core (appliance/host/ingress_proxy.py). Routes are in the maps,\n"
        "# replaced at run time through the admin socket; this file changes only with the settings.\n",
        "global\n", user,
        f"    stats socket {admin_socket} mode 600 level admin\n",
        f"    hard-stop-after {max(1, int(config.ingress_hard_stop_after))}s\n",
        "defaults\n    timeout connect 5s\n"
        f"    timeout client {idle}s\n    timeout server {idle}s\n    timeout tunnel {idle}s\n"
        "    timeout http-request 15s\n    timeout http-keep-alive 15s\n"
        "    timeout client-fin 10s\n    timeout server-fin 10s\n",
        "backend per_source\n    stick-table type ipv6 size 200k expire 60s store conn_cur\n",
        # 80: HTTP routed by the Host header (port and case ignored)
        f"frontend http_in\n    mode http\n    bind {_bind(config.ingress_listen, config.ingress_http_port)}\n",
        per_source,
        "    option forwardfor\n"
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower\n"
        f"    http-request set-var(txn.guest) var(txn.host),map_str({http_map})\n"
        "    http-request return status 404 content-type application/json string "
        "\"{\\\"error\\\":\\\"no container serves this host\\\"}\" unless { var(txn.guest) -m found }\n"
        "    http-request set-dst var(txn.guest),word(1,:)\n"
        "    http-request set-dst-port var(txn.guest),word(2,:)\n"
        "    default_backend guests_http\n",
        "backend guests_http\n    mode http\n    server guest 0.0.0.0:0\n",
        # 443: TLS passed through, routed by the SNI
        f"frontend tls_in\n    mode tcp\n    bind {_bind(config.ingress_listen, config.ingress_https_port)}\n",
        per_source,
        "    tcp-request inspect-delay 5s\n"
        "    tcp-request content accept if { req.ssl_hello_type 1 }\n"
        "    default_backend guests_tls\n",
        "backend guests_tls\n    mode tcp\n"
        f"    tcp-request content set-var(txn.guest) req.ssl_sni,lower,map_str({tls_map})\n"
        "    tcp-request content reject unless { var(txn.guest) -m found }\n"
        "    tcp-request content set-dst var(txn.guest),word(1,:)\n"
        "    tcp-request content set-dst-port var(txn.guest),word(2,:)\n"
        "    server guest 0.0.0.0:0\n",
    ])


def runtime_command(path: Path, command: str, timeout: float = 5.0) -> str:
    """One command (or ``;``-separated commands) on HAProxy's admin socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(command.encode() + b"\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace")


class Haproxy:
    """One HAProxy process per appliance data dir, started, updated and
    stopped by the core (pid file ``<data_dir>/run/haproxy.pid``)."""

    def __init__(self, config: Config):
        self.config = config
        self.dir = config.data_path / "ingress"
        self.cfg = self.dir / "haproxy.cfg"
        self.maps = {HTTP_PORT: self.dir / "http.map", HTTPS_PORT: self.dir / "tls.map"}
        self.pidfile = config.run_dir / "haproxy.pid"
        self.socket = config.run_dir / "haproxy.sock"
        self.reloads = 0  # reloads/starts by this object (tests, debugging)

    def config_text(self) -> str:
        return haproxy_config(self.config, self.maps[HTTP_PORT], self.maps[HTTPS_PORT], self.socket)

    def pids(self) -> list[int]:
        """The current process (from the pid file), if alive."""
        try:
            pids = [int(p) for p in self.pidfile.read_text().split()]
        except (FileNotFoundError, ValueError):
            return []
        return [p for p in pids if self._ours(p)]

    def processes(self) -> list[int]:
        """Every process running our config, old ones finishing included."""
        return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and self._ours(int(d.name))]

    def _ours(self, pid: int) -> bool:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"haproxy" in cmd and str(self.cfg).encode() in cmd.split(b"\0") and not _zombie(pid)

    def apply(self, routes) -> None:
        entries = {port: map_entries(self.config, routes, port) for port in self.maps}
        self.dir.mkdir(parents=True, exist_ok=True)
        for port, path in self.maps.items():
            _write_atomic(path, map_text(entries[port]))
        if not any(entries.values()):
            self.stop()
            return
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(binary):
            raise Internal("ingress on 80/443 needs HAProxy (apt-get install haproxy)")
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        text = self.config_text()
        old = self.pids()
        if old and self.cfg.exists() and self.cfg.read_text() == text:
            try:
                for port, path in self.maps.items():
                    self._replace_map(path, entries[port])
                return
            except (OSError, RuntimeApiError) as e:
                log.warning("ingress: runtime map update failed (%s); reloading HAProxy", e)
        self._start(binary, text, old)

    def _replace_map(self, path: Path, entries: list[tuple[str, str]]) -> None:
        answer = runtime_command(self.socket, f"prepare map {path}")
        words = answer.split()
        if "version" not in answer or not words or not words[-1].isdigit():
            raise RuntimeApiError(f"prepare map: {answer.strip()[:200]}")
        version = words[-1]
        if entries:
            adds = ";".join(f"add map @{version} {path} {k} {v}" for k, v in entries)
            answer = runtime_command(self.socket, adds)
            if answer.strip():
                raise RuntimeApiError(f"add map: {answer.strip()[:200]}")
        answer = runtime_command(self.socket, f"commit map @{version} {path}")
        if answer.strip():
            raise RuntimeApiError(f"commit map: {answer.strip()[:200]}")

    def _start(self, binary: str, text: str, old: list[int]) -> None:
        tmp = self.cfg.with_suffix(".new")
        tmp.write_text(text)
        check = subprocess.run([binary, "-c", "-q", "-f", str(tmp)], capture_output=True, text=True)
        if check.returncode != 0:
            raise Internal(f"haproxy rejected the ingress config: {check.stderr.strip()[-500:]}")
        os.replace(tmp, self.cfg)
        argv = [binary, "-D", "-f", str(self.cfg), "-p", str(self.pidfile)]
        if old:
            argv += ["-sf", *map(str, old)]
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise Internal(f"haproxy did not start: {proc.stderr.strip()[-500:]}")
        self.reloads += 1

    def stop(self) -> None:
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
            time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_suffix(path.suffix + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
