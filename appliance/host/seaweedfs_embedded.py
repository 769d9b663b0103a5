"""The SeaweedFS set ``appliance up`` runs for a host alone (``storage_backend =
"seaweedfs"``, ``seaweedfs_embedded = true``): a master, one volume server and a
filer under ``<data_dir>/seaweedfs``, on loopback, replication ``000``, the
filer's JWT key generated once into ``<data_dir>/seaweedfs_jwt_key`` (0600)
unless ``seaweedfs_jwt_key_file`` names one. ``appliance down`` stops them.

API::

    wanted(cfg) -> bool             the backend is seaweedfs and embedded
    embedded_set(cfg) -> WeedSet    its processes (pid files in <data_dir>/run, logs in <data_dir>/log)
    settings(cfg) -> dict           seaweedfs_filer / _master / _jwt_key_file / _replication as the
                                    core and gateways must see them (configured values win)
    start(cfg) -> dict[str, str]    start (or find running) and wait until ready; APPLIANCE_SEAWEEDFS_*
                                    for the daemons' environment ({} when not wanted)
    stop(cfg) -> list[str]          the weed processes that were running, stopped
    processes(cfg) -> list          its WeedProcess handles ([] if it never started here)

The ports stay the same from one ``up`` to the next (``<data_dir>/seaweedfs/ports.json``):
a filer or master address set in the configuration fixes its HTTP port;
the rest are picked free once.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

from appliance.config import Config
from appliance.host.seaweedfs import WeedProcess, WeedSet, free_ports

LOOPBACK = "127.0.0.1"


def wanted(cfg: Config) -> bool:
    return cfg.storage_backend == "seaweedfs" and cfg.seaweedfs_embedded


def root(cfg: Config) -> Path:
    return cfg.data_path / "seaweedfs"


def jwt_key_file(cfg: Config) -> Path:
    return Path(cfg.seaweedfs_jwt_key_file) if cfg.seaweedfs_jwt_key_file else cfg.data_path / "seaweedfs_jwt_key"


def _rack(cfg: Config) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in cfg.node_name) or "local"


def _configured_port(address: str) -> int | None:
    """The port of "http://host:port" or "host:port", if any."""
    if not address:
        return None
    first = address.split(",")[0].strip()
    parsed = urlsplit(first if "//" in first else f"//{first}")
    return parsed.port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as weed binds: TIME_WAIT is no obstacle
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


def _ports(cfg: Config, names: list[str]) -> dict[str, tuple[int, int]]:
    """Those recorded in ports.json, the configured HTTP ports, fresh ones for the rest."""
    path = root(cfg) / "ports.json"
    try:
        recorded = {name: (int(pair[0]), int(pair[1])) for name, pair in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError, IndexError):
        recorded = {}
    fixed = {"filer": _configured_port(cfg.seaweedfs_filer), "master": _configured_port(cfg.seaweedfs_master)}
    fresh = free_ports(LOOPBACK, names)
    ports = {}
    for name in names:
        http, grpc = recorded.get(name) or fresh[name]
        ports[name] = (fixed.get(name) or http, grpc)
    if ports != recorded:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ports, indent=1) + "\n")
    return ports


def embedded_set(cfg: Config) -> WeedSet:
    rack = _rack(cfg)
    return WeedSet(root(cfg), jwt_key_file(cfg), racks=[rack], replication=cfg.seaweedfs_replication or "000",
                   ip=LOOPBACK, ports=_ports(cfg, ["master", f"volume-{rack}", "filer"]),
                   log_dir=cfg.log_dir, log_rotation=(cfg.log_file_max_bytes, cfg.log_file_backups),
                   pid_dir=cfg.run_dir)


def settings(cfg: Config, weed: WeedSet | None = None) -> dict[str, str]:
    weed = weed or embedded_set(cfg)
    return {
        "seaweedfs_filer": cfg.seaweedfs_filer or weed.filer_url,
        "seaweedfs_master": cfg.seaweedfs_master or weed.master_address,
        "seaweedfs_jwt_key_file": str(jwt_key_file(cfg)),
        "seaweedfs_replication": weed.replication,
    }


def start(cfg: Config, timeout: float = 60.0) -> dict[str, str]:
    if not wanted(cfg):
        return {}
    if cfg.seaweedfs_replication not in ("", "000"):
        raise ValueError(f"seaweedfs_replication {cfg.seaweedfs_replication!r} needs more than the one volume "
                         "server of an embedded SeaweedFS: use '000' (or an external SeaweedFS)")
    weed = embedded_set(cfg)
    for proc in weed.processes:   # a port taken by someone else: say so, not a timeout
        if not proc.running and not (_bindable(proc.port) and _bindable(proc.grpc_port)):
            raise OSError(f"SeaweedFS {proc.name}: port {proc.port} or {proc.grpc_port} on {LOOPBACK} is in use "
                          f"(recorded in {root(cfg) / 'ports.json'})")
    weed.start(timeout)
    return {f"APPLIANCE_{name.upper()}": value for name, value in settings(cfg, weed).items()}


def processes(cfg: Config) -> list[WeedProcess]:
    """The embedded set's processes, running or not; none if it never started here."""
    return embedded_set(cfg).processes if (root(cfg) / "ports.json").exists() else []


def stop(cfg: Config) -> list[str]:
    if not processes(cfg):
        return []
    return [f"weed-{name}" for name in embedded_set(cfg).stop()]
