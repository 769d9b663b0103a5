"""Is a SeaweedFS set serving? Plain HTTP probes of its master(s) and filer, for
WeedSet.wait_ready / status (appliance/host/seaweedfs.py) and for anyone holding
only the addresses (``seaweedfs_master``, ``seaweedfs_filer``).

    master_leader(masters) -> str       the leader "ip:port" any of the comma-separated masters names, or ""
    volume_servers(masters) -> list     "ip:port" of the volume servers the leader sees now
    filer_healthy(filer_url) -> bool    GET /healthz: its store answers (no JWT needed)
    probe(masters, filer_url) -> dict   {"master": bool, "filer": bool, "volume_servers": [...]}
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def _json(url: str) -> dict:
    status, body = get(url)
    if status != 200:
        return {}
    try:
        found = json.loads(body)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def http_address(address: str) -> str:
    """"ip:port" of weed's "ip:port.grpcport" (or of "ip:port" as it is)."""
    host, _, port = address.strip().rpartition(":")
    return f"{host}:{port.split('.')[0]}" if host else address.strip()


def master_leader(masters: str) -> str:
    for master in (http_address(m) for m in masters.split(",") if m.strip()):
        leader = _json(f"http://{master}/cluster/status").get("Leader") or ""
        if leader:
            return http_address(leader)
    return ""


def volume_servers(masters: str) -> list[str]:
    leader = master_leader(masters)
    topology = _json(f"http://{leader}/dir/status").get("Topology") if leader else None
    if not isinstance(topology, dict):
        return []
    return [node["Url"] for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []]


def filer_healthy(filer_url: str) -> bool:
    return get(f"{filer_url.rstrip('/')}/healthz")[0] == 200


def probe(masters: str, filer_url: str) -> dict:
    return {"master": bool(master_leader(masters)), "filer": filer_healthy(filer_url),
            "volume_servers": volume_servers(masters)}
